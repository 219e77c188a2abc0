"""Liveness, readiness and Prometheus metrics."""

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from chunkcast.api.deps import OperationsDep

router = APIRouter(tags=["operations"])


class Liveness(BaseModel):
    status: Literal["ok"]


class DependencyCheck(BaseModel):
    ok: bool
    ms: float
    reason: str | None = None


class Readiness(BaseModel):
    ready: bool
    dependencies: dict[str, DependencyCheck]


@router.get("/healthz")
async def healthz() -> Liveness:
    """Liveness: the process is up and serving. Touches no dependency, so a catalogue or
    bus outage does not get a process restarted or taken out of a balancer (its viewers'
    WebSockets and cached playlists are still served)."""
    return Liveness(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {
    "model": Readiness, "description": "A dependency cannot be reached; each failed one has "
    "a ``reason``."}})
async def readyz(operations: OperationsDep) -> JSONResponse:
    """Readiness: the catalogue, storage and the bus, each checked at once and for at most
    about 2 s. 200 with ``ready: true`` when all three answer, else 503 with ``ready:
    false``; ``ms`` is how long each took."""
    checks = await operations.readiness()
    ready = all(check.ok for check in checks.values())
    body = Readiness(ready=ready, dependencies={
        name: DependencyCheck(ok=c.ok, ms=c.ms, reason=c.reason) for name, c in checks.items()})
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if ready else 503,
                        headers={"Cache-Control": "no-store"})


@router.get("/metrics")
async def metrics(operations: OperationsDep) -> Response:
    return Response(await operations.metrics_text(), media_type=CONTENT_TYPE_LATEST)
