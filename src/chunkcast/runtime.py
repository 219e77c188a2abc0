"""Wiring: open the configured backends and build the services and consumers on them.
Only the app factory, the worker entry point and the CLI call this."""

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chunkcast.adapters.media.ffmpeg import FfmpegEncoder
from chunkcast.adapters.media.probe import PyavProber
from chunkcast.config import (
    BUS_BACKENDS,
    DATABASE_BACKENDS,
    STORAGE_BACKENDS,
    Settings,
    load_backend,
)
from chunkcast.domain import events
from chunkcast.domain.events import Event
from chunkcast.domain.signing import playback_secret
from chunkcast.media.process import ffmpeg_path
from chunkcast.metrics import Metrics
from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import VideoRepository
from chunkcast.ports.storage import ObjectStore
from chunkcast.services.audience import Audience
from chunkcast.services.ingest import Splitter
from chunkcast.services.ingest_stats import IngestReporter, IngestStats, follow_publishers
from chunkcast.services.lifecycle import Lifecycle
from chunkcast.services.live import WINDOW_SEGMENTS, LiveFeed
from chunkcast.services.operations import Operations
from chunkcast.services.outages import OutageLog, failed_dependency
from chunkcast.services.outbox import OutboxRelay
from chunkcast.services.playback import Playback, Signer
from chunkcast.services.streams import Streams
from chunkcast.services.transcoding import TranscodeConfig, Transcoder
from chunkcast.services.videos import Videos
from chunkcast.worker.consumer import Consumer, GiveUp, RetryBudget

if TYPE_CHECKING:
    from chunkcast.ingest.role import IngestRole

SPLITTER_GROUP = "splitter"
log = logging.getLogger(__name__)


class Role(Protocol):
    """What a process runs until it stops: a consumer, or the ingest's listeners."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


async def run_consumers(consumers: list[Role], stop: asyncio.Event, grace_s: float, *,
                        restart_after_s: float = 1.0) -> None:
    """Run ``consumers`` until ``stop`` is set, then let the events in hand finish for up to
    ``grace_s`` seconds; what is still running after that is cancelled (and so released:
    unacked, it is handed out again after the ack timeout). A consumer that stops on its own
    (a bug it did not survive) is started again after ``restart_after_s``: a role never
    goes on without one of its consumers."""
    running = {asyncio.create_task(c.run()): c for c in consumers}
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            await asyncio.wait([stopping, *running], return_when=asyncio.FIRST_COMPLETED)
            for task in [t for t in running if t.done()]:
                consumer = running.pop(task)
                if stop.is_set():
                    continue
                error = None if task.cancelled() else task.exception()
                log.error("a consumer stopped; starting it again", exc_info=error)
                running[asyncio.create_task(_restart(consumer, restart_after_s))] = consumer
        for consumer in consumers:
            consumer.stop()
        tasks = list(running)
        _, pending = await asyncio.wait(tasks, timeout=grace_s) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        stopping.cancel()


async def _restart(consumer: Role, after_s: float) -> None:
    await asyncio.sleep(after_s)
    await consumer.run()


@dataclass
class Platform:
    settings: Settings
    store: ObjectStore
    bus: EventBus
    repo: VideoRepository
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        s = self.settings
        self.lifecycle = Lifecycle(self.repo, self.bus)
        signer = Signer(playback_secret(s.secret_key), s.playback_url_seconds)
        self.playback = Playback(self.repo, self.store, signer, s.media_base_url, s.public_url,
                                 s.segment_seconds, live_window=s.live_window_segments,
                                 part_seconds=s.part_seconds)
        self.videos = Videos(self.repo, self.store, self.bus, self.lifecycle, self.metrics,
                             upload_url_seconds=s.upload_url_seconds,
                             max_upload_bytes=s.max_upload_bytes)
        self.streams = Streams(self.repo, self.store, self.bus, self.lifecycle, self.playback,
                               s.groups, chunk_url_seconds=s.upload_url_seconds,
                               idle_timeout_s=s.live_idle_timeout_seconds,
                               seq_window=s.live_seq_window,
                               max_chunk_bytes=s.max_chunk_bytes,
                               public_url=s.public_url)
        # This process on the bus (consumers, audience reports): unique in the cluster.
        self.process_name = f"{socket.gethostname()}-{os.getpid()}"
        # The viewers of the other API processes, from their reports.
        self.audience = Audience(self.process_name)
        # The publishers of every ingest process (this one's too), from their reports.
        self.ingest_stats = IngestStats()
        # The API process's live feed (channels and viewers); only API processes run it.
        self.feed = LiveFeed(self.repo, s.media_base_url,
                             gap_timeout_s=s.live_gap_timeout_seconds,
                             window_segments=max(WINDOW_SEGMENTS, s.live_window_segments),
                             on_privacy=self.playback.privacy_changed,
                             elsewhere=self.audience.others)
        # Publishes the events writers could not (every API process runs it).
        self.relay = OutboxRelay(self.repo, self.bus, self.metrics)
        self.operations = Operations(
            self.repo, self.bus, self.store, self.metrics,
            [(events.SOURCES, SPLITTER_GROUP)]
            + [(topic, g) for topic in events.CHUNK_TOPICS for g in s.groups])

    async def start(self) -> None:
        """What must exist before the first request: the bucket, and the consumer groups of
        the configured workers, so an event published before any worker has started (a new
        group only sees what comes after it) still reaches them."""
        await self.store.ensure_ready()
        await self.bus.ensure_group(events.SOURCES, SPLITTER_GROUP)
        for group in self.settings.groups:
            for topic in events.CHUNK_TOPICS:
                await self.bus.ensure_group(topic, group)

    async def follow_ingest(self) -> None:
        """Until cancelled (every API process): keep :attr:`ingest_stats` from the ingest
        processes' reports."""
        await follow_publishers(self.bus, self.ingest_stats)

    async def close(self) -> None:
        await self.bus.close()
        await self.repo.close()
        await self.store.close()

    def consumers(self, groups: list[str] | None = None) -> list[Role]:
        """The splitter and one transcoder consumer per rendition group; without ``groups``
        (the embedded process) every group, and the ingest role when a port is set."""
        s = self.settings
        out: list[Role] = []
        if groups is None and (s.rtmp_port or s.srt_port):
            out.append(self.ingest_role())
        name = self.process_name
        prober = PyavProber()
        encoder = FfmpegEncoder(ffmpeg_path(s.ffmpeg), preset=s.x264_preset,
                                part_seconds=s.part_seconds)
        splitter = Splitter(self.repo, self.store, self.bus, self.lifecycle, s.groups,
                            prober=prober, chunk_seconds=s.vod_chunk_seconds,
                            segment_seconds=s.segment_seconds,
                            max_source_seconds=s.max_source_seconds)
        out += [self._consumer(events.SOURCES, SPLITTER_GROUP, name,
                              {events.SourceUploaded: splitter.handle}, splitter.give_up,
                              concurrency=1)]
        for group in groups or list(s.groups):
            transcoder = Transcoder(
                self.repo, self.store, self.bus, self.lifecycle, self.playback, self.metrics,
                TranscodeConfig(group, s.groups, s.segment_seconds,
                                timeout_per_media_s=s.transcode_timeout_factor),
                prober=prober, encoder=encoder,
            )
            # Live chunks and an upload's chunks each get their own slots.
            out += [self._consumer(topic, group, name, {events.ChunkUploaded: transcoder.handle},
                                   transcoder.give_up, concurrency=s.worker_concurrency)
                    for topic in events.CHUNK_TOPICS]
        return out

    def ingest_role(self) -> "IngestRole":
        """The RTMP and SRT ingest on this platform's services (``chunkcast ingest``, and
        inside ``up``), reporting its publishers on the platform's bus."""
        from chunkcast.ingest.registry import Ingest, IngestConfig
        from chunkcast.ingest.role import IngestRole, Listen, Reporting

        s = self.settings
        ingest = Ingest(self.streams, self.metrics, IngestConfig(
            ffmpeg_path(s.ffmpeg), chunk_seconds=s.ingest_chunk_seconds,
            retry_s=s.live_retry_seconds, max_publishers=s.ingest_max_publishers))
        return IngestRole(ingest, Listen(s.ingest_host, s.rtmp_port, s.srt_port),
                          Reporting(self.bus, IngestReporter(self.process_name)))

    def _consumer(self, topic: str, group: str, name: str, handlers: dict[type[Event], Any],
                  give_up: GiveUp, *, concurrency: int) -> Consumer:
        """``give_up`` is the service's own: a live chunk given up becomes a gap (never a
        failed stream), an upload fails."""
        s = self.settings
        return Consumer(
            self.bus, topic, group, name, handlers, events.TOPIC_EVENTS[topic],
            metrics=self.metrics, give_up=give_up, concurrency=concurrency,
            max_attempts=s.max_attempts, ack_timeout_s=s.ack_timeout_seconds,
            budget=RetryBudget(live_s=s.live_retry_seconds, vod_s=s.vod_retry_seconds),
        )


async def run_worker(platform: Platform, groups: list[str] | None, stop: asyncio.Event) -> None:
    """The worker role, on the same wiring as the API: the splitter and the transcoders of
    ``groups`` (all by default) until ``stop`` is set, then a graceful stop."""
    try:
        if await _start_when_ready(platform, stop):
            await run_consumers(platform.consumers(groups or list(platform.settings.groups)),
                                stop, platform.settings.stop_grace_seconds)
    finally:
        await platform.close()


async def _start_when_ready(platform: Platform, stop: asyncio.Event) -> bool:
    """Start the platform, waiting for dependencies that are down (a worker started during
    an outage waits for it to end, it does not exit); False if stopped meanwhile."""
    outage = OutageLog(log, "worker start")
    delay = 0.5
    while not stop.is_set():
        try:
            await platform.start()
        except Exception as exc:
            if failed_dependency(exc) is None:
                raise
            outage.failed(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)
        else:
            outage.ok()
            return True
    return False


def open_platform(settings: Settings) -> Platform:
    """Open every backend named by the settings' URLs."""
    return Platform(
        settings=settings,
        store=load_backend(STORAGE_BACKENDS, settings.storage_url)(settings.storage_url,
                                                                    settings),
        bus=load_backend(BUS_BACKENDS, settings.bus_url)(settings.bus_url, settings),
        repo=load_backend(DATABASE_BACKENDS, settings.database_url)(settings.database_url,
                                                                     settings),
    )


async def run_ingest(platform: Platform, stop: asyncio.Event) -> None:
    """The ingest role on its own (``chunkcast ingest``): RTMP and SRT publishers until
    ``stop`` is set, then every publication closes and delivers its last chunk."""
    try:
        if await _start_when_ready(platform, stop):
            await run_consumers([platform.ingest_role()], stop,
                                platform.settings.stop_grace_seconds)
    finally:
        await platform.close()
