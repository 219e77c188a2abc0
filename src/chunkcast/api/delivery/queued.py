"""The portable outbox: a bounded queue per viewer, drained by the connection's own task
through the ordinary ASGI ``send``. Any ASGI server, compressed connections included."""

import asyncio
import contextlib
from collections import deque

from starlette.websockets import WebSocket

from chunkcast.api.delivery.base import GONE, SLOW_CLIENT, SocketOutbox, read_until_closed


class QueuedOutbox(SocketOutbox):
    """Live messages wait in a queue of at most ``limit``; a viewer whose queue is full when
    one more comes is closed as too slow."""

    def __init__(self, websocket: WebSocket, limit: int) -> None:
        super().__init__(websocket)
        self._limit = limit
        # Live messages not written yet. Eviction: written by serve(); when ``limit`` are
        # waiting the viewer is closed and they are dropped.
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None  # a close for serve() to send

    def push(self, text: str) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._limit:
            self.close(SLOW_CLIENT, "too slow: messages were piling up")
            return
        self._queue.append(text)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._closing = (code, reason)
        self._wake.set()

    async def serve(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(self._read())
            await self._drain()
            reader.cancel()

    async def _read(self) -> None:
        await read_until_closed(self._websocket)
        self._closed = True  # the viewer is gone: nothing more to write
        self._wake.set()

    async def _drain(self) -> None:
        while True:
            if self._closing is not None:
                code, reason = self._closing
                with contextlib.suppress(*GONE):
                    await self._websocket.close(code, reason)
                return
            if self._closed:
                return
            if self._queue:
                try:
                    await self._websocket.send_text(self._queue.popleft())
                except GONE:
                    self._closed = True
                continue
            self._wake.clear()
            await self._wake.wait()
