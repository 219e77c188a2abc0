"""The fast outbox: a message framed once per event and written straight to every viewer's
transport, as ``websockets.broadcast`` does, instead of the ASGI send path with its layers per
viewer. A server's WebSocket frames are neither masked nor (without permessage-deflate)
compressed, so a text message is the same bytes on every connection.

The transport's write buffer is the viewer's queue, bounded in bytes. Everything else (the
replay's waiting sends, the close, reading until the viewer leaves) goes through the server's
own ASGI ``send`` and ``receive`` of the connection: an outbox is held for as long as its
viewer watches, so it keeps nothing but the connection."""

import asyncio
import contextlib

from starlette.websockets import WebSocket
from websockets.frames import Frame, Opcode

from chunkcast.api.delivery.base import GONE, SLOW_CLIENT
from chunkcast.api.wire import Wire, is_open

WRITE_BUFFER_PER_MESSAGE = 1024  # bytes a viewer's socket may hold per message of its bound


class Frames:
    """The frame of the latest message: a fan-out hands the same string object to every
    viewer, so it is framed once."""

    def __init__(self) -> None:
        self._text = ""
        self._frame = Frame(Opcode.TEXT, b"").serialize(mask=False)

    def of(self, text: str) -> bytes:
        if text is not self._text:
            self._frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
            self._text = text
        return self._frame


class FramedOutbox:
    """``wire``: the server's connection (see :func:`chunkcast.api.wire.direct_wire`);
    ``limit``: messages' worth of bytes (:data:`WRITE_BUFFER_PER_MESSAGE` each) its write
    buffer may hold before the viewer is closed as too slow. ``websocket`` (the connection
    as the app sees it) is not kept: the outbox speaks to ``wire`` alone."""

    __slots__ = ("_bound", "_closed", "_closing", "_frames", "_transport", "_wire")

    def __init__(self, websocket: WebSocket | None, wire: Wire, limit: int,
                 frames: Frames) -> None:
        self._closed = False
        self._wire = wire
        self._transport = wire.transport
        self._bound = limit * WRITE_BUFFER_PER_MESSAGE
        self._frames = frames
        self._closing: asyncio.Task[None] | None = None  # our close, through the server

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, text: str) -> None:
        if self._closed:
            return
        try:
            await self._wire.send({"type": "websocket.send", "text": text})
        except GONE:
            self._closed = True

    def push(self, text: str) -> None:
        if self._closed:
            return
        if not is_open(self._wire):
            self._closed = True  # the reader sees the connection go
        elif self._transport.get_write_buffer_size() > self._bound:
            self.close(SLOW_CLIENT, "too slow: messages were piling up")
        else:
            self._transport.write(self._frames.of(text))

    def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(*GONE):
            await self._wire.send({"type": "websocket.close", "code": code, "reason": reason})

    async def serve(self) -> None:
        """Read until the viewer leaves, or our close of the connection (viewers say
        nothing: reading sees them go). Plain ``try``: this frame is held while they watch."""
        try:
            while (await self._wire.receive())["type"] != "websocket.disconnect":
                pass
        except GONE:  # as good as the disconnect
            return
        finally:
            self._closed = True
