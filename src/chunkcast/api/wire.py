"""Reaching a viewer's connection: ``/ws/{video_id}/{rendition}`` goes to the hub with the
server's own ASGI ``send``, and :func:`direct_wire` finds the server's connection behind it
when the fast outbox (:mod:`chunkcast.api.delivery.framed`) can write to it.

The one place that knows a server's internals: uvicorn's websockets sans-I/O protocol object
(the bound ``send`` of a connection), its transport and its state flags. Anything else gets
the portable outbox; ``tests/unit/test_wire.py`` pins what is read here against the
installed uvicorn.
"""

import asyncio
import re
from typing import Any, Protocol, cast

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from websockets.protocol import State

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # an older uvicorn: every connection gets the portable outbox
    _FRAMEABLE: tuple[type, ...] = ()
else:
    _FRAMEABLE = (WebSocketsSansIOProtocol,)

WS_PATH = re.compile(r"^/ws/(?P<video_id>[^/]+)/(?P<rendition>[^/]+)$")


class Wire(Protocol):
    """What the fast outbox uses of a server's WebSocket connection."""

    transport: asyncio.Transport
    close_sent: bool
    disconnected: bool
    conn: Any  # websockets.server.ServerProtocol


def direct_wire(send: Send) -> Wire | None:
    """The server's connection behind an ASGI ``send``, when frames may be written to it
    directly: uvicorn's websockets sans-I/O implementation, without compression."""
    proto = getattr(send, "__self__", None)
    if not isinstance(proto, _FRAMEABLE):
        return None
    wire = cast(Wire, proto)
    return None if wire.conn.extensions else wire


def is_open(wire: Wire) -> bool:
    return (not wire.close_sent and not wire.disconnected and wire.conn.state is State.OPEN
            and not wire.transport.is_closing())


class ViewerSockets:
    """ASGI middleware that hands ``/ws/{video_id}/{rendition}`` straight to the hub with the
    server's own ``send`` (the frameworks' wrappers around it would hide the connection)."""

    def __init__(self, app: ASGIApp, endpoint: Any) -> None:
        self._app = app
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = WS_PATH.match(scope["path"]) if scope["type"] == "websocket" else None
        if found is None:
            await self._app(scope, receive, send)
            return
        scope = {**scope, "path_params": found.groupdict()}
        await self._endpoint(WebSocket(scope, receive, send), send)
