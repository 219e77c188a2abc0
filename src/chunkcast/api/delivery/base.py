"""The port between the hub and one viewer's WebSocket: an :class:`Outbox`."""

import contextlib
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

SLOW_CLIENT = 4008  # application close codes: the viewer could not keep up,
FORBIDDEN = 4403  # a private video without a valid signed link,
EXPIRED = 4410  # or with an expired one


class Outbox(Protocol):
    """How messages reach one viewer. Before the viewer joins its channel, :meth:`send`
    writes what it missed, waiting for the socket; once it has joined, :meth:`push` takes
    live messages without ever waiting, and a viewer that falls more than its bound behind
    is closed with :data:`SLOW_CLIENT`. Nothing is written after :meth:`close`."""

    @property
    def closed(self) -> bool:
        """Closed, by us or by the viewer: nothing more is written."""

    async def send(self, text: str) -> None:
        """Write a message, waiting until the socket takes it (does nothing once closed)."""

    def push(self, text: str) -> None:
        """Write or queue a live message at once; past the bound, close as too slow."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (the close frame goes out after what was
        already written)."""

    async def serve(self) -> None:
        """Until the viewer is gone or closed: read (viewers say nothing; reading sees them
        leave) and write what is queued."""


GONE = (WebSocketDisconnect, RuntimeError, OSError)  # what a closed socket raises


class SocketOutbox:
    """An outbox over the app's WebSocket (the portable one): the closed flag, and
    :meth:`send` (waiting for the socket). The fast outbox speaks to the server's connection
    instead and keeps nothing else (:mod:`chunkcast.api.delivery.framed`)."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, text: str) -> None:
        if self._closed:
            return
        try:
            await self._websocket.send_text(text)
        except GONE:
            self._closed = True


async def read_until_closed(websocket: WebSocket) -> None:
    """Read until the viewer leaves, or our close of the connection."""
    with contextlib.suppress(*GONE):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
