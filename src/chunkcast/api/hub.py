"""WebSocket viewers: one connection per (video, rendition), fed by the live feed.

A message is written to each viewer's connection directly when it can take it (see
:class:`Viewer`); a viewer that cannot keep up is disconnected rather than buffered without
bound. Messages are strings serialised once per event by the feed and shared by every
viewer; on uvicorn they are also framed once (:mod:`chunkcast.api.wire`). A viewer of a
private video gets them with its own token in the URLs (:class:`SignedViewer`).
"""

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from chunkcast.api.wire import Frames, Wire, is_open
from chunkcast.domain.errors import ChunkcastError
from chunkcast.domain.ids import check_rendition, check_video_id
from chunkcast.domain.videos import RenditionInfo
from chunkcast.ports.repository import VideoRepository
from chunkcast.services.live import SIGNATURE_SLOT, Channel, LiveFeed, with_token
from chunkcast.services.playback import Signer

log = logging.getLogger(__name__)

SLOW_CLIENT = 4008  # application close codes: the viewer could not keep up,
FORBIDDEN = 4403  # a private video without a valid signed link,
EXPIRED = 4410  # or with an expired one
VIEWERS_INTERVAL_S = 1.0
WRITE_BUFFER_PER_MESSAGE = 1024  # bytes a viewer's socket may hold per queued message
INIT_WAIT_S = 30.0  # how long a viewer of a rendition with no segment yet waits for one


class Viewer:
    """One viewer's socket. A message is sent at once, inside :meth:`deliver`, when the
    connection can take it: the ASGI send coroutine is driven by hand and, when the socket is
    writable, completes without suspending, so a fan-out to N viewers costs no task and no
    queue per viewer. Only a send that has to wait (the client is reading slowly) continues in
    a task, and messages arriving meanwhile wait in a bounded backlog; a viewer whose backlog
    fills up is disconnected."""

    def __init__(self, websocket: WebSocket, limit: int, wire: Wire | None = None,
                 frames: Frames | None = None) -> None:
        self.websocket = websocket
        self._limit = limit
        self._wire = wire
        self._frames = frames or Frames()
        self._backlog: deque[str] = deque()
        self._busy = False
        self.closed = False

    def own(self, text: str) -> str:
        """A shared message as this viewer is sent it."""
        return text

    def deliver(self, text: str) -> None:
        if self.closed:
            return
        if self._wire is not None:
            self._write(self._wire, text)
            return
        if self._busy:
            if len(self._backlog) >= self._limit:
                self._give_up()
            else:
                self._backlog.append(text)
            return
        self._start(text)

    def _write(self, wire: Wire, text: str) -> None:
        """The fast path: the shared frame straight into the socket's write buffer, which
        is then this viewer's queue, bounded in bytes."""
        if not is_open(wire):
            self.closed = True  # the reader sees the connection go and cleans up
        elif wire.transport.get_write_buffer_size() > self._limit * WRITE_BUFFER_PER_MESSAGE:
            self._give_up()
        else:
            wire.transport.write(self._frames.of(text))

    def _start(self, text: str) -> None:
        coro = self.websocket.send({"type": "websocket.send", "text": text})
        try:
            waiting = coro.send(None)
        except StopIteration:
            return  # sent
        except Exception:
            self.closed = True  # the connection is gone; the reader sees it and cleans up
            return
        self._busy = True
        asyncio.get_running_loop().create_task(self._finish(coro, waiting))

    async def _finish(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        """Resume a suspended send until it completes, then send the backlog."""
        try:
            while True:
                try:
                    if waiting is None:  # a bare yield (sleep(0)): just let the loop run
                        await asyncio.sleep(0)
                    else:
                        await waiting
                except BaseException as exc:  # pass the outcome on, as a Task would
                    waiting = coro.throw(exc)
                else:
                    waiting = coro.send(None)
        except StopIteration:
            pass
        except Exception:
            self.closed = True
            return
        try:
            while self._backlog and not self.closed:
                await self.websocket.send_text(self._backlog.popleft())
        except Exception:
            self.closed = True
            return
        self._busy = False

    def _give_up(self) -> None:
        self.closed = True
        self._backlog.clear()
        asyncio.get_running_loop().create_task(self._close_slow())

    async def _close_slow(self) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close(SLOW_CLIENT, "too slow: messages were piling up")


class TokenFill:
    """Private videos' messages with a viewer's token filled in. The latest one is
    remembered: a fan-out hands the same message to viewer after viewer, and those holding
    the same token (links minted within the same few minutes) then get the same string,
    which the fast path frames once for all of them."""

    def __init__(self) -> None:
        self._text = self._query = self._filled = ""

    def fill(self, text: str, query: str) -> str:
        if text is self._text and query == self._query:
            return self._filled
        if SIGNATURE_SLOT not in text:  # status, viewers, gap: nothing to sign
            return text
        self._text, self._query, self._filled = text, query, with_token(text, query)
        return self._filled


class SignedViewer(Viewer):
    """A viewer of a private video: its messages' URLs carry its own token, so they expire
    with the link it came with (however long ago the channel was loaded, and however long
    it stays connected)."""

    def __init__(self, websocket: WebSocket, limit: int, query: str, tokens: TokenFill,
                 wire: Wire | None = None, frames: Frames | None = None) -> None:
        super().__init__(websocket, limit, wire, frames)
        self._query = query
        self._tokens = tokens

    def own(self, text: str) -> str:
        return self._tokens.fill(text, self._query)

    def deliver(self, text: str) -> None:
        super().deliver(self._tokens.fill(text, self._query))


class _FirstItem:
    """A listener that only notes that something was delivered."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()

    def deliver(self, text: str) -> None:
        self.arrived.set()


class Hub:
    def __init__(self, feed: LiveFeed, repo: VideoRepository, *, queue_limit: int,
                 start_segments: int, signer: Signer | None = None) -> None:
        self.feed = feed
        self._signer = signer
        self._repo = repo
        self._renditions: dict[tuple[str, str], RenditionInfo] = {}  # codecs known
        self._limit = queue_limit
        self._start = start_segments
        self._counts: dict[str, int] = {}
        self._frames = Frames()
        self._tokens = TokenFill()
        self._count_tasks: dict[str, asyncio.Task[None]] = {}

    async def endpoint(self, websocket: WebSocket, wire: Wire | None = None) -> None:
        """``/ws/{video_id}/{rendition}?since=SEQ``: segment-ready pushes for one rendition,
        in seq order (ARCHITECTURE §3). A plain Starlette endpoint: a connection carries no
        more per-viewer state than it needs."""
        video_id = websocket.path_params["video_id"]
        rendition = websocket.path_params["rendition"]
        try:
            check_video_id(video_id)
            check_rendition(rendition)
            raw_since = websocket.query_params.get("since")
            since = int(raw_since) if raw_since is not None else None
        except (ChunkcastError, ValueError):
            await websocket.close(1008, "malformed video id, rendition or since")
            return
        init = await self._init_message(video_id, rendition)
        if init is None:
            await websocket.close(1008, "no such video or rendition")
            return
        channel = await self.feed.channel(video_id, rendition)
        query = None  # a private video's viewer: its own token, which its URLs carry
        if self.feed.is_private(video_id) and self._signer is not None:
            token = websocket.query_params.get("e"), websocket.query_params.get("st")
            try:
                query = self._signer.query(video_id, self._signer.check(video_id, token))
            except ChunkcastError as exc:
                # Accepted first: a socket closed during the handshake is an HTTP 403 that
                # browsers do not show; the close code tells expired from forbidden.
                await websocket.accept()
                await websocket.close(FORBIDDEN if exc.status == 403 else EXPIRED, exc.message)
                return
        if (video_id, rendition) not in self._renditions and not channel.items:
            # The ladder is known but no segment of this rendition is stored yet: its codecs
            # come with the first one, which a player needs before it can start.
            await self._first_segment(channel)
            init = await self._init_message(video_id, rendition) or init
        await self.serve(websocket, channel, init, since, wire, query=query)

    @staticmethod
    async def _first_segment(channel: Channel) -> None:
        """Wait (at most :data:`INIT_WAIT_S`) until a channel delivers its first item."""
        waiter = _FirstItem()
        channel.listeners.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.arrived.wait(), INIT_WAIT_S)
        finally:
            channel.listeners.discard(waiter)

    async def _init_message(self, video_id: str, rendition: str) -> str | None:
        """The ``init`` message. The rendition comes from the catalogue until its codecs are
        known (its first segment is stored), then from memory; the message is made for each
        viewer (a private video's has the slot for the viewer's token)."""
        key = (video_id, rendition)
        info = self._renditions.get(key)
        if info is None:
            infos = {i.rendition.name: i for i in await self._repo.renditions(video_id)}
            info = infos.get(rendition)
            if info is None:
                return None
            if info.codecs is not None:
                self._renditions[key] = info
        await self.feed.channel(video_id, rendition)  # knows whether the video is private
        r = info.rendition
        return self.feed.init_message(video_id, rendition, info.codecs, r.width, r.height)

    async def serve(self, websocket: WebSocket, channel: Channel, init: str,
                    since: int | None, wire: Wire | None = None, *,
                    query: str | None = None) -> None:
        """Send init, the replay and the status, then live messages until the viewer
        leaves. ``query``: the token of a private video's viewer, for its URLs."""
        await websocket.accept()
        viewer = Viewer(websocket, self._limit, wire, self._frames) if query is None else \
            SignedViewer(websocket, self._limit, query, self._tokens, wire, self._frames)
        await websocket.send_text(viewer.own(init))
        await self._replay(websocket, viewer, channel, since)
        # No await between the last replay check (inside _replay) and joining: nothing is
        # delivered in between, so the viewer misses nothing and gets nothing twice.
        channel.listeners.add(viewer)
        self.feed.status_listeners.setdefault(channel.video_id, set()).add(viewer)
        status = self.feed.status(channel.video_id)
        if status:  # after the replay: "ended" means every segment has been sent
            viewer.deliver(self.feed.status_message(status))
        self._change_count(channel.video_id, +1)
        try:
            await self._read_until_closed(websocket)
        finally:
            channel.listeners.discard(viewer)
            self.feed.status_listeners.get(channel.video_id, set()).discard(viewer)
            self._change_count(channel.video_id, -1)

    async def _replay(self, websocket: WebSocket, viewer: Viewer, channel: Channel,
                      since: int | None) -> None:
        batch = channel.since(since, self._start)
        while batch:
            for item in batch:
                await websocket.send_text(viewer.own(item.text))
            batch = channel.since(batch[-1].seq, self._start)

    @staticmethod
    async def _read_until_closed(websocket: WebSocket) -> None:
        """Viewers have nothing to say; reading sees them go (or our close of a slow one)."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return

    def viewers(self, video_id: str) -> int:
        """How many viewers of ``video_id`` are connected to this process (any rendition)."""
        return self._counts.get(video_id, 0)

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
