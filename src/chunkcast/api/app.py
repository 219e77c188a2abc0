"""The FastAPI app factory: the one place the API wires its dependencies."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from chunkcast import __version__
from chunkcast.api import errors
from chunkcast.api.delivery import Outboxes
from chunkcast.api.headers import SecurityHeaders
from chunkcast.api.hub import Hub
from chunkcast.api.limits import BodyLimit
from chunkcast.api.routes import live, ops, plan, play, videos, web
from chunkcast.api.routes.edge import edge_router
from chunkcast.api.wire import ViewerSockets
from chunkcast.config import ORIGIN_ROUTES, load_backend
from chunkcast.domain.signing import edge_secret, token_digest
from chunkcast.runtime import Platform, run_consumers
from chunkcast.services.live_follow import leave_audience, run_feed
from chunkcast.services.outages import OutageLog
from chunkcast.services.planning import RESULTS_DIR

log = logging.getLogger(__name__)


def create_app(platform: Platform, *, run_workers: bool = False) -> FastAPI:
    """An API process on ``platform`` (the one wiring of services, see
    :func:`chunkcast.runtime.open_platform`, also behind the worker role). With
    ``run_workers`` (embedded mode) the splitter and the transcode workers of every rendition
    group run inside it too. Its settings must be prepared (secret key and admin token known)
    and the database migrated."""
    settings = platform.settings
    feed = platform.feed
    hub = Hub(feed, platform.playback.signer, outboxes=Outboxes(settings.ws_queue_limit),
              start_segments=settings.live_start_segments)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await platform.start()
        stop_workers = asyncio.Event()
        workers = asyncio.create_task(run_consumers(
            platform.consumers() if run_workers else [], stop_workers,
            settings.stop_grace_seconds))
        tasks = [asyncio.create_task(run_feed(feed, platform.bus, platform.audience,
                                              platform.metrics), name="live-feed")]
        tasks.append(asyncio.create_task(_end_quiet_streams(platform), name="stream-watchdog"))
        tasks.append(asyncio.create_task(platform.relay.run(), name="outbox-relay"))
        tasks.append(asyncio.create_task(platform.follow_ingest(), name="ingest-reports"))
        try:
            yield
        finally:
            stop_workers.set()
            await workers
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await leave_audience(platform.audience, platform.bus)
            await platform.close()

    # No /docs or /redoc: they load scripts from a public CDN on the origin where the admin
    # token is typed. The schema stays at /openapi.json for any OpenAPI tool.
    app = FastAPI(title="chunkcast", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.platform = platform
    app.state.admin_digest = token_digest(settings.admin_token)
    errors.install(app)
    app.include_router(videos.router)
    app.include_router(play.router)
    app.include_router(ops.router)
    app.include_router(live.router)
    app.include_router(plan.router(RESULTS_DIR))  # capacity files of the working dir
    app.include_router(edge_router(edge_secret(settings.secret_key)))
    web.install(app)
    app.add_middleware(ViewerSockets, endpoint=hub.endpoint)  # /ws/{video_id}/{rendition}
    # Players on other sites (and this one behind a CDN on another host) fetch playlists and
    # segments with fetch(); the API authenticates with bearer tokens, never cookies.
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"],
                       allow_headers=["*"], expose_headers=["ETag", "Content-Length"],
                       max_age=3600)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit)  # outermost: nothing reads a body before it is capped
    # The storage's own origin routes (local files served here; S3 redirects), chosen by
    # the storage URL's scheme like the store itself.
    app.include_router(load_backend(ORIGIN_ROUTES, settings.storage_url)(platform))
    return app


async def _end_quiet_streams(platform: Platform) -> None:
    """End streams whose broadcaster went silent (every API process runs this; ending is
    idempotent)."""
    outage = OutageLog(log, "stream watchdog")
    while True:
        await asyncio.sleep(1.0)
        try:
            for video_id in await platform.streams.end_quiet():
                log.info("stream %s ended: no chunk for the idle timeout", video_id)
        except Exception as exc:
            outage.failed(exc)
        else:
            outage.ok()
