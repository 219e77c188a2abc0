"""The fast path of the fan-out: one frame per message, written to every viewer's socket.

A server's WebSocket frames are neither masked nor (without permessage-deflate) compressed,
so a text message is the same bytes on every connection. When the server is uvicorn with
its websockets sans-I/O protocol, :func:`direct_wire` reaches a connection's transport, and
:class:`Frames` builds the frame of a message once per event; delivering it to a viewer is
one ``transport.write``, as ``websockets.broadcast`` does, instead of the ASGI send path with
its layers per viewer. Anything else (another server, a compressed connection) gets ``None``
and the ordinary ASGI send.
"""

import asyncio
import re
from typing import Any, Protocol, cast

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from websockets.frames import Frame, Opcode
from websockets.protocol import State

WS_PATH = re.compile(r"^/ws/(?P<video_id>[^/]+)/(?P<rendition>[^/]+)$")


class Wire(Protocol):
    """What the fast path uses of uvicorn's WebSocket protocol object."""

    transport: asyncio.Transport
    close_sent: bool
    disconnected: bool
    conn: Any  # websockets.server.ServerProtocol


def direct_wire(send: Send) -> Wire | None:
    """The server's protocol object behind an ASGI ``send``, when it can take frames
    directly (uvicorn's websockets sans-I/O implementation, no compression)."""
    proto = getattr(send, "__self__", None)
    conn = getattr(proto, "conn", None)
    if proto is None or conn is None or not hasattr(proto, "transport") \
            or not hasattr(proto, "close_sent") or not hasattr(proto, "disconnected") \
            or getattr(conn, "extensions", None) != []:
        return None
    return cast(Wire, proto)


def is_open(wire: Wire) -> bool:
    return (not wire.close_sent and not wire.disconnected and wire.conn.state is State.OPEN
            and not wire.transport.is_closing())


class Frames:
    """The frame of the latest message: a fan-out delivers the same string object to every
    viewer, so it is framed once."""

    def __init__(self) -> None:
        self._text = ""
        self._frame = Frame(Opcode.TEXT, b"").serialize(mask=False)

    def of(self, text: str) -> bytes:
        if text is not self._text:
            self._frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
            self._text = text
        return self._frame


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
        await self._endpoint(WebSocket(scope, receive, send), direct_wire(send))
