"""The services wired as ``chunkcast up`` wires them (:class:`chunkcast.runtime.Platform`),
on the memory bus, a local store and SQLite in a temp dir, with the fake prober and encoder
of :mod:`tests.fakes` instead of PyAV and ffmpeg. No server, no child process."""

import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chunkcast.adapters.bus.memory import MemoryBus
from chunkcast.adapters.db.repository import SqlVideoRepository, make_engine
from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.domain import events, keys
from chunkcast.domain.events import Event
from chunkcast.domain.videos import Video
from chunkcast.metrics import Metrics
from chunkcast.services.ingest import Splitter
from chunkcast.services.lifecycle import Lifecycle
from chunkcast.services.playback import Playback, Signer
from chunkcast.services.streams import Streams
from chunkcast.services.transcoding import TranscodeConfig, Transcoder
from chunkcast.services.videos import Videos
from tests.fakes import FakeEncoder, FakeProber, fake_media

from .faulty import Outages

ALL = {"all": ("240p", "360p", "480p", "720p", "1080p")}
SPLIT = {"hi": ("720p", "1080p"), "lo": ("240p", "360p", "480p")}
SECRET = "s" * 64
CDN = "http://cdn.test"
API = "http://api.test"
OBSERVER = "test-observer"
TOPICS = (events.SOURCES, *events.CHUNK_TOPICS, events.SEGMENTS, events.VIDEOS)


class Clock:
    """A wall clock the test moves (signed links)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Limits:
    chunk_seconds: int = 4
    segment_seconds: int = 2
    max_upload_bytes: int = 1_000_000
    max_chunk_bytes: int = 10_000
    max_source_seconds: float = 3600.0
    seq_window: int = 10
    live_window: int = 3
    idle_timeout_s: float = 30.0
    playback_url_seconds: int = 4 * 3600


@dataclass
class World:
    root: Path
    repo: SqlVideoRepository
    groups: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(ALL))
    limits: Limits = field(default_factory=Limits)
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        lim = self.limits
        self.store = LocalObjectStore(self.root / "objects", b"k" * 32, API)
        self.bus = MemoryBus()
        self.metrics = Metrics()
        self.prober = FakeProber()
        self.encoder = FakeEncoder()
        # The services reach the store and the catalogue through switches a test can turn
        # off (tests.services.faulty); tests look at the real ones.
        self.outages = Outages()
        store, repo = self.outages.store(self.store), self.outages.repo(self.repo)
        self.lifecycle = Lifecycle(repo, self.bus)
        self.signer = Signer(SECRET, lim.playback_url_seconds, self.clock)
        self.playback = Playback(repo, store, self.signer, CDN, API,
                                 lim.segment_seconds, live_window=lim.live_window)
        self.videos = Videos(repo, store, self.bus, self.lifecycle, self.metrics,
                             upload_url_seconds=3600, max_upload_bytes=lim.max_upload_bytes)
        self.streams = Streams(repo, store, self.bus, self.lifecycle, self.playback,
                               self.groups, chunk_url_seconds=60,
                               idle_timeout_s=lim.idle_timeout_s, seq_window=lim.seq_window,
                               max_chunk_bytes=lim.max_chunk_bytes)
        self.splitter = Splitter(repo, store, self.bus, self.lifecycle, self.groups,
                                 prober=self.prober, chunk_seconds=lim.chunk_seconds,
                                 segment_seconds=lim.segment_seconds,
                                 max_source_seconds=lim.max_source_seconds)
        self.transcoders = {
            group: Transcoder(repo, store, self.bus, self.lifecycle, self.playback,
                              self.metrics,
                              TranscodeConfig(group, self.groups, lim.segment_seconds,
                                              work_dir=self.root / "work"),
                              prober=self.prober, encoder=self.encoder)
            for group in self.groups}
        (self.root / "work").mkdir(exist_ok=True)

    async def start(self) -> None:
        """The groups the platform creates at start, and one that records every event."""
        await self.bus.ensure_group(events.SOURCES, "splitter")
        for group in self.groups:
            for topic in events.CHUNK_TOPICS:
                await self.bus.ensure_group(topic, group)
        for topic in TOPICS:
            await self.bus.ensure_group(topic, OBSERVER)

    async def close(self) -> None:
        await self.bus.close()
        await self.repo.close()

    # -- driving -----------------------------------------------------------------------

    async def work(self, *, groups: tuple[str, ...] | None = None) -> int:
        """Hand every waiting event to the splitter and the transcoders of ``groups`` (all
        by default) through their consumer groups, as the workers do, until none is left;
        returns how many were handled."""
        routes: list[tuple[str, str, Callable[[Any], Awaitable[None]]]] = [
            (events.SOURCES, "splitter", self.splitter.handle)]
        routes += [(topic, g, t.handle) for topic in events.CHUNK_TOPICS
                   for g, t in self.transcoders.items() if groups is None or g in groups]
        handled = 0
        while True:
            before = handled
            for topic, group, handler in routes:
                for delivery in await self.bus.read(topic, group, "w", count=50, block_s=0):
                    await handler(delivery.event)
                    await self.bus.ack(delivery)
                    handled += 1
            if handled == before:
                return handled

    async def published(self, topic: str) -> list[Event]:
        """Events published to ``topic`` since the last call."""
        out = []
        while deliveries := await self.bus.read(topic, OBSERVER, "o", count=100, block_s=0):
            for delivery in deliveries:
                out.append(delivery.event)
                await self.bus.ack(delivery)
        return out

    async def upload(self, title: str = "clip", media: bytes | None = None) -> Video:
        """Create a video, PUT ``media`` (a fake clip by default) where its upload URL
        points, and complete it."""
        video, _ = await self.videos.create(title)
        await self.store.put_bytes(keys.source(video.id),
                                   fake_media() if media is None else media)
        return await self.videos.complete(video.id)

    async def statuses(self) -> list[tuple[str, str, str | None]]:
        """``(video, status, error)`` of every status event since the last call."""
        return [(e.video_id, e.status, e.error) for e in await self.published(events.VIDEOS)
                if isinstance(e, events.VideoStatusChanged)]


def copy_database(template: Path, folder: Path) -> SqlVideoRepository:
    """A catalogue in ``folder``, copied from an already migrated one."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, folder / template.name)
    return SqlVideoRepository(make_engine(f"sqlite+aiosqlite:///{folder / template.name}"))
