"""A real uvicorn in the test's own event loop."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import uvicorn
from starlette.types import Receive, Scope, Send

App = Callable[[Scope, Receive, Send], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(app: App, *, deflate: bool = False) -> AsyncIterator[int]:
    """uvicorn (websockets sans-I/O, no compression, as ``chunkcast up``) in this loop, on a
    socket that listens before the server starts: clients may connect at once. ``deflate``:
    offer permessage-deflate."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="error", ws_per_message_deflate=deflate,
                            lifespan="off", ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield port
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
