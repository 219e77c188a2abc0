"""Liveness and Prometheus metrics."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from chunkcast.api.deps import OperationsDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(operations: OperationsDep) -> Response:
    return Response(await operations.metrics_text(), media_type=CONTENT_TYPE_LATEST)
