"""Reaching a viewer's connection: ``/ws/{video_id}/{rendition}`` goes to the hub with the
server's own ASGI ``send``, and :func:`direct_wire` finds the server's connection behind it
when the fast outbox (:mod:`chunkcast.api.delivery.framed`) can write to it.

The one place that knows a server's internals: uvicorn's websockets sans-I/O protocol object
(the bound ``send`` of a connection), its transport and its state flags, and what
:func:`settle` lets go of once a viewer's handshake is done (a held connection's memory is
what limits the viewers one API process holds). Anything else gets the portable outbox;
``tests/unit/test_wire.py`` pins what is read here against the installed uvicorn.
"""

import asyncio
import re
from collections import deque
from typing import Any, Protocol, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send
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
    """What the fast outbox uses of a server's WebSocket connection: its transport and state
    flags, and its own ASGI ``receive`` and ``send``."""

    transport: asyncio.Transport
    close_sent: bool
    disconnected: bool
    conn: Any  # websockets.server.ServerProtocol

    async def receive(self) -> Message: ...

    async def send(self, message: Message) -> None: ...


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


class Inbox:
    """What a settled connection queues for its ``receive`` (uvicorn's ``queue``): the
    ``put_nowait``, ``get``, ``empty`` and ``qsize`` of the ``asyncio.Queue`` it replaces, for
    the connection's one reader, in ~100 bytes instead of four deques (~2.6 KB)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self, items: list[Any]) -> None:
        self._items = items
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class Gate:
    """A settled connection's ``writable`` flag: the ``set``, ``clear``, ``is_set`` and
    ``wait`` of the ``asyncio.Event`` it replaces, without the Event's deque (~0.8 KB); its
    waiters (the server's ``send`` while the transport is paused) only exist while paused."""

    __slots__ = ("_open", "_waiters")

    def __init__(self, is_set: bool) -> None:
        self._open = is_set
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        self._open = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> bool:
        if self._open:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


def settle(wire: Wire) -> None:
    """Once a viewer's handshake is done: let go of what uvicorn keeps of the handshake for
    the whole connection but never reads again (the request and the response with their
    headers, the scope's list of headers; the request's headers are emptied in place), and
    replace its receive queue and writable event
    (~3.4 KB of deques for a connection that receives nothing) with an :class:`Inbox` and a
    :class:`Gate`. About 7 KB a connection; anything unexpected is left as it is."""
    proto = cast(Any, wire)
    if not getattr(proto, "handshake_complete", False) or wire.close_sent:
        return
    request = getattr(proto, "request", None)
    headers: Any = getattr(request, "headers", None)
    if callable(getattr(headers, "clear", None)):
        headers.clear()  # websockets' handshake parser holds the request too, while it lives
    for name in ("request", "response"):
        if hasattr(proto, name):
            setattr(proto, name, None)
    scope = getattr(proto, "scope", None)
    if isinstance(scope, dict) and "headers" in scope:
        scope["headers"] = []
    queue = getattr(proto, "queue", None)
    if type(queue) is asyncio.Queue:  # exactly: a subclass may behave otherwise
        waiting: deque[Any] = getattr(queue, "_getters", deque())
        if not waiting:  # nobody is reading yet: its messages move to the inbox
            items: list[Any] = []
            while not queue.empty():
                items.append(queue.get_nowait())
            proto.queue = Inbox(items)
    writable = getattr(proto, "writable", None)
    if type(writable) is asyncio.Event and not getattr(writable, "_waiters", None):
        proto.writable = Gate(writable.is_set())


def viewer_path(path: str) -> dict[str, str] | None:
    """``video_id`` and ``rendition`` of a viewer's path, None for any other path."""
    found = WS_PATH.match(path)
    return None if found is None else found.groupdict()


class ViewerSockets:
    """ASGI middleware that hands ``/ws/{video_id}/{rendition}`` straight to the hub with the
    server's own ``send`` (the frameworks' wrappers around it would hide the connection)."""

    def __init__(self, app: ASGIApp, endpoint: Any) -> None:
        self._app = app
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = viewer_path(scope["path"]) if scope["type"] == "websocket" else None
        if params is None:
            await self._app(scope, receive, send)
            return
        # Set in place, as Starlette's router does: held for the connection's lifetime, a
        # copy of the scope would be one more dict per viewer.
        scope["path_params"] = params
        await self._endpoint(WebSocket(scope, receive, send), send)
