"""The live feed of one API process: every ``segments`` event, put in seq order per
(video, rendition), serialised once, kept for replay and for playlists, and handed to the
listeners (WebSocket viewers) of that rendition.

Segments finished out of order by parallel workers are held until the ones before them
arrive; a seq that does not arrive within the gap timeout (a chunk that failed for good) is
skipped with a ``gap`` message so viewers never stall forever.

A private video's messages are shared too: their URLs carry :data:`SIGNATURE_SLOT` where
the token goes, and each viewer gets them with the slot filled with its own token
(:func:`with_token`), so the URLs expire with the link the viewer came with.
"""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chunkcast.domain import events, keys
from chunkcast.domain.videos import Segment, VideoKind, VideoStatus
from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import VideoRepository
from chunkcast.services.playback import Signer, object_url

log = logging.getLogger(__name__)

COMPLETE = (VideoStatus.READY, VideoStatus.ENDED, VideoStatus.FAILED)
# Where a viewer's token (``e=…&st=…``) goes in the URLs of a private video's messages. Left
# unfilled it is no valid token: such a URL is refused, never served.
SIGNATURE_SLOT = "{signature}"


def with_token(text: str, query: str) -> str:
    """A private video's message as one viewer gets it: its URLs signed with ``query``."""
    return text.replace(SIGNATURE_SLOT, query)


class Listener(Protocol):
    def deliver(self, text: str) -> None:
        """Queue one serialised message; must not block (a full queue drops the listener)."""


@dataclass(frozen=True)
class FeedItem:
    seq: int
    text: str
    segment: Segment | None  # None: a gap marker


def _json(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


@dataclass
class Channel:
    """One (video, rendition): the delivered items in seq order and the listeners."""

    video_id: str
    rendition: str
    next_seq: int = 0
    items: list[FeedItem] = field(default_factory=list)
    pending: dict[int, tuple[Segment, float, str | None]] = field(default_factory=dict)
    listeners: set[Listener] = field(default_factory=set)

    def since(self, seq: int | None, start_items: int) -> list[FeedItem]:
        """Items after ``seq``; without ``seq`` the last ``start_items`` (the live edge)."""
        if seq is None:
            return self.items[-start_items:] if start_items else []
        first = self.items[0].seq if self.items else 0
        return self.items[max(0, seq + 1 - first):]

    def segments(self) -> list[Segment]:
        return [i.segment for i in self.items if i.segment is not None]


class LiveFeed:
    def __init__(self, repo: VideoRepository, base_url: str, *, gap_timeout_s: float,
                 signer: Signer | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``signer``: playback of private videos is signed, so their messages carry
        :data:`SIGNATURE_SLOT` for each viewer's token (which the hub checks and fills)."""
        self._repo = repo
        self._base = base_url
        self._signer = signer
        self._private: dict[str, bool] = {}
        self._vod: set[str] = set()  # uploads among the videos followed
        self._gap_timeout = gap_timeout_s
        self._clock = clock
        self._channels: dict[tuple[str, str], Channel] = {}
        self._status: dict[str, str] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.status_listeners: dict[str, set[Listener]] = {}

    # -- channels --------------------------------------------------------------------------

    async def channel(self, video_id: str, rendition: str) -> Channel:
        """The channel, loaded from the catalogue the first time it is needed."""
        key = (video_id, rendition)
        if key in self._channels:
            return self._channels[key]
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key not in self._channels:
                self._channels[key] = await self._load(video_id, rendition)
        return self._channels[key]

    async def _load(self, video_id: str, rendition: str) -> Channel:
        """History from the catalogue. Segments after a hole wait like live ones (parallel
        workers may still be filling it); once a stream is over, holes are gaps at once."""
        channel = Channel(video_id, rendition)
        video = await self._repo.get_video(video_id)
        if video is not None:
            self._private[video_id] = video.private
            if video.kind is VideoKind.VOD:
                self._vod.add(video_id)
        now = self._clock()
        for segment in await self._repo.segments(video_id, rendition):
            channel.pending[segment.seq] = (segment, now, None)
        self._flush(channel)
        if video is not None:
            self._status.setdefault(video_id, video.status.value)
            if video.status in COMPLETE:  # nothing more will come: a hole is for good
                self._skip_gaps(channel, force=True)
        return channel

    def is_private(self, video_id: str) -> bool:
        """Whether a video this process follows is private (its URLs are signed)."""
        return self._private.get(video_id, False)

    def _url(self, video_id: str, key: str) -> str:
        signed = self._signer is not None and self.is_private(video_id)
        return object_url(self._base, key, SIGNATURE_SLOT if signed else None)

    def status(self, video_id: str) -> str | None:
        """The latest status this process has seen for a video it follows."""
        return self._status.get(video_id)

    async def segments(self, video_id: str, rendition: str) -> list[Segment]:
        """Delivered segments in seq order (gaps left out): what live playlists list."""
        return (await self.channel(video_id, rendition)).segments()

    def segment_message(self, s: Segment, ready_at: str | None = None) -> str:
        return _json({"type": "segment", "seq": s.seq, "url": self._url(s.video_id, s.key),
                      "duration": s.duration, "pts_start": s.pts_start,
                      "captured_at": s.captured_at, "ready_at": ready_at})

    def init_message(self, video_id: str, rendition: str, codecs: str | None, width: int,
                     height: int) -> str:
        return _json({"type": "init", "rendition": rendition,
                      "init_url": self._url(video_id, keys.init_segment(video_id, rendition)),
                      "codecs": codecs, "width": width, "height": height})

    @staticmethod
    def status_message(status: str) -> str:
        return _json({"type": "status", "status": status})

    # -- events ----------------------------------------------------------------------------

    async def on_segment(self, event: events.SegmentReady) -> None:
        channel = await self.channel(event.video_id, event.rendition)
        if event.seq < channel.next_seq or event.seq in channel.pending:
            return  # already delivered or waiting: a redelivered event
        segment = Segment(event.video_id, event.rendition, event.seq, event.key,
                          event.pts_start, event.duration, event.captured_at)
        channel.pending[event.seq] = (segment, self._clock(), event.ready_at)
        self._flush(channel)

    async def on_status(self, event: events.VideoStatusChanged) -> None:
        if event.status in {s.value for s in COMPLETE}:
            # Nothing more will come: deliver what is held, skipping what is missing, before
            # viewers hear the stream is over.
            for (video_id, _), channel in list(self._channels.items()):
                if video_id == event.video_id:
                    await self._recover(channel)
                    self._skip_gaps(channel, force=True)
        self._status[event.video_id] = event.status
        text = self.status_message(event.status)
        for listener in list(self.status_listeners.get(event.video_id, ())):
            listener.deliver(text)

    async def sweep(self) -> None:
        """Skip seqs that have been missing for longer than the gap timeout, unless the
        catalogue has them (their event was lost, e.g. while the bus reconnected)."""
        for channel in list(self._channels.values()):
            # An upload's chunks are transcoded in parallel and may take their time; one
            # that fails for good fails the video, which completes its channels.
            if channel.video_id in self._vod:
                continue
            if channel.pending and self._overdue(channel):
                await self._recover(channel)
                self._skip_gaps(channel, force=False)

    def _overdue(self, channel: Channel) -> bool:
        oldest = min(t for _, t, _ in channel.pending.values())
        return self._clock() - oldest >= self._gap_timeout

    async def _recover(self, channel: Channel) -> None:
        """Take missing segments from the catalogue."""
        if not channel.pending or min(channel.pending) == channel.next_seq:
            return
        now = self._clock()
        for segment in await self._repo.segments(channel.video_id, channel.rendition):
            if channel.next_seq <= segment.seq and segment.seq not in channel.pending:
                channel.pending[segment.seq] = (segment, now, None)
        self._flush(channel)

    def _skip_gaps(self, channel: Channel, *, force: bool) -> None:
        while channel.pending:
            first = min(channel.pending)
            waited = self._clock() - min(t for _, t, _ in channel.pending.values())
            if not force and waited < self._gap_timeout:
                return
            while channel.next_seq < first:
                self._deliver(channel, FeedItem(channel.next_seq, _json(
                    {"type": "gap", "seq": channel.next_seq}), None))
            self._flush(channel)

    def _flush(self, channel: Channel) -> None:
        while channel.next_seq in channel.pending:
            segment, _, ready_at = channel.pending.pop(channel.next_seq)
            self._deliver(channel, FeedItem(segment.seq, self.segment_message(segment, ready_at),
                                            segment))

    def _deliver(self, channel: Channel, item: FeedItem) -> None:
        channel.items.append(item)
        channel.next_seq = item.seq + 1
        for listener in list(channel.listeners):
            listener.deliver(item.text)  # the same string for every viewer

    # -- running ---------------------------------------------------------------------------

    async def run(self, bus: EventBus) -> None:
        """Follow the bus until cancelled (one of these per API process)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._follow_segments(bus))
            tasks.create_task(self._follow_status(bus))
            tasks.create_task(self._sweeper())

    async def _follow_segments(self, bus: EventBus) -> None:
        async def take(event: events.Event) -> None:
            if isinstance(event, events.SegmentReady):
                await self.on_segment(event)

        await self._follow(bus, events.SEGMENTS, take)

    async def _follow_status(self, bus: EventBus) -> None:
        async def take(event: events.Event) -> None:
            if isinstance(event, events.VideoStatusChanged):
                await self.on_status(event)

        await self._follow(bus, events.VIDEOS, take)

    @staticmethod
    async def _follow(bus: EventBus, topic: str,
                      take: Callable[[events.Event], Awaitable[None]]) -> None:
        """Feed every event of ``topic`` to ``take``; if the bus connection breaks,
        subscribe again (the gap sweeper and ``since`` replays from the catalogue cover
        what was published meanwhile)."""
        while True:
            try:
                async for event in bus.subscribe(topic):
                    try:
                        await take(event)
                    except Exception:
                        log.exception("live feed: could not take %s", event)
            except Exception:
                log.exception("live feed: lost the %s subscription; subscribing again", topic)
                await asyncio.sleep(1.0)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(min(0.25, self._gap_timeout / 4))
            try:
                await self.sweep()
            except Exception:
                log.exception("live feed: sweep failed")
