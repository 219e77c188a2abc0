"""Liveness and Prometheus metrics."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from chunkcast.api.deps import PlatformDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(platform: PlatformDep) -> Response:
    await platform.update_gauges()
    return Response(platform.metrics.render(), media_type=CONTENT_TYPE_LATEST)
