"""WebSocket viewers: one connection per (video, rendition), fed by the live feed.

Each viewer has a bounded queue; a viewer whose queue fills up (a slow client) is
disconnected rather than buffered without bound. Messages are strings serialised once per
event by the feed and shared by every viewer.
"""

import asyncio
import contextlib
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from chunkcast.services.live import Channel, LiveFeed

log = logging.getLogger(__name__)

SLOW_CLIENT = 4008  # application close code: the viewer could not keep up
VIEWERS_INTERVAL_S = 1.0


class Viewer:
    def __init__(self, websocket: WebSocket, limit: int) -> None:
        self.websocket = websocket
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(limit)
        self.too_slow = False

    def deliver(self, text: str) -> None:
        if self.too_slow:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.too_slow = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)  # wakes the writer, which closes the connection

    async def write(self) -> None:
        while (text := await self.queue.get()) is not None:
            await self.websocket.send_text(text)
        await self.websocket.close(SLOW_CLIENT, "too slow: messages were piling up")


class Hub:
    def __init__(self, feed: LiveFeed, *, queue_limit: int, start_segments: int) -> None:
        self.feed = feed
        self._limit = queue_limit
        self._start = start_segments
        self._counts: dict[str, int] = {}
        self._count_tasks: dict[str, asyncio.Task[None]] = {}

    def viewers(self, video_id: str) -> int:
        return self._counts.get(video_id, 0)

    async def serve(self, websocket: WebSocket, channel: Channel, init: str,
                    since: int | None) -> None:
        """Send init, status and the replay, then live messages until the viewer leaves."""
        await websocket.accept()
        viewer = Viewer(websocket, self._limit)
        status = self.feed.status(channel.video_id)
        await websocket.send_text(init)
        if status:
            await websocket.send_text(self.feed.status_message(status))
        await self._replay(websocket, channel, since)
        # No await between the last replay check (inside _replay) and joining: nothing is
        # delivered in between, so the viewer misses nothing and gets nothing twice.
        channel.listeners.add(viewer)
        self.feed.status_listeners.setdefault(channel.video_id, set()).add(viewer)
        self._change_count(channel.video_id, +1)
        try:
            writer = asyncio.create_task(viewer.write())
            reader = asyncio.create_task(self._read_until_closed(websocket))
            done, pending = await asyncio.wait({writer, reader},
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                    task.result()
        finally:
            channel.listeners.discard(viewer)
            self.feed.status_listeners.get(channel.video_id, set()).discard(viewer)
            self._change_count(channel.video_id, -1)

    async def _replay(self, websocket: WebSocket, channel: Channel, since: int | None) -> None:
        batch = channel.since(since, self._start)
        while batch:
            for item in batch:
                await websocket.send_text(item.text)
            batch = channel.since(batch[-1].seq, self._start)

    @staticmethod
    async def _read_until_closed(websocket: WebSocket) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()  # viewers have nothing to say; this sees them go

    def _change_count(self, video_id: str, delta: int) -> None:
        self._counts[video_id] = self._counts.get(video_id, 0) + delta
        if video_id not in self._count_tasks:  # at most one viewers message per interval
            self._count_tasks[video_id] = asyncio.create_task(self._announce(video_id))

    async def _announce(self, video_id: str) -> None:
        try:
            await asyncio.sleep(VIEWERS_INTERVAL_S)
        finally:
            self._count_tasks.pop(video_id, None)
        text = json.dumps({"type": "viewers", "count": self._counts.get(video_id, 0)})
        for listener in list(self.feed.status_listeners.get(video_id, ())):
            listener.deliver(text)
