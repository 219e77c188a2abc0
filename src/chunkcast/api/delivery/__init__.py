"""How messages reach viewers' WebSockets: one port (:class:`Outbox`), two implementations.

- :class:`FramedOutbox`: each message framed once and written to every viewer's transport,
  on uvicorn's websockets connection without compression (what ``chunkcast`` runs).
- :class:`QueuedOutbox`: a bounded queue drained by the connection's own task, on any ASGI
  server or connection.

:class:`Outboxes` picks one per connection.
"""

from starlette.types import Send
from starlette.websockets import WebSocket

from chunkcast.api.delivery.base import EXPIRED, FORBIDDEN, SLOW_CLIENT, Outbox
from chunkcast.api.delivery.framed import WRITE_BUFFER_PER_MESSAGE, FramedOutbox, Frames
from chunkcast.api.delivery.queued import QueuedOutbox
from chunkcast.api.wire import direct_wire, settle

__all__ = ["EXPIRED", "FORBIDDEN", "SLOW_CLIENT", "WRITE_BUFFER_PER_MESSAGE", "FramedOutbox",
           "Frames", "Outbox", "Outboxes", "QueuedOutbox"]


class Outboxes:
    """The outbox of each new connection. ``limit``: messages a viewer may fall behind
    (a queue's length, or that many KiB of a transport's write buffer); ``portable``: always
    the queue."""

    def __init__(self, limit: int, *, portable: bool = False) -> None:
        self._limit = limit
        self._portable = portable
        self._frames = Frames()  # shared: a message is framed once for every viewer

    def __call__(self, websocket: WebSocket, send: Send) -> Outbox:
        """``send``: the server's own ASGI send for the connection, which has been
        accepted."""
        wire = None if self._portable else direct_wire(send)
        if wire is None:
            return QueuedOutbox(websocket, self._limit)
        settle(wire)  # once accepted: what uvicorn keeps of the handshake goes
        return FramedOutbox(websocket, wire, self._limit, self._frames)
