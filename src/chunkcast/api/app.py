"""The FastAPI app factory: the one place the API wires its dependencies."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from chunkcast import __version__
from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.api import errors
from chunkcast.api.routes import ops, play, videos
from chunkcast.api.routes.media import media_router
from chunkcast.config import Settings
from chunkcast.domain.signing import token_digest
from chunkcast.runtime import open_platform

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, run_workers: bool = False) -> FastAPI:
    """An API process. With ``run_workers`` (embedded mode) the splitter and the transcode
    workers of every rendition group run inside it too. ``settings`` must be prepared
    (secret key and admin token known) and the database migrated."""
    platform = open_platform(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(c.run(), name="consumer")
                 for c in (platform.consumers() if run_workers else [])]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await platform.close()

    app = FastAPI(title="chunkcast", version=__version__, lifespan=lifespan)
    app.state.platform = platform
    app.state.admin_digest = token_digest(settings.admin_token)
    errors.install(app)
    app.include_router(videos.router)
    app.include_router(play.router)
    app.include_router(ops.router)
    if isinstance(platform.store, LocalObjectStore):
        app.include_router(media_router(platform.store, settings.secret_key.encode(),
                                        settings.max_upload_bytes))
    return app
