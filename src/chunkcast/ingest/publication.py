"""One publisher live on one stream: its chunk cutter, and the delivery of each chunk it
cuts, in order, through the streams service (the broadcaster's rules: seq window, never
overwritten, outbox publish)."""

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from chunkcast.domain.clock import iso_from_epoch, iso_now
from chunkcast.domain.errors import ChunkcastError, InvalidInput, TooLarge, Unavailable
from chunkcast.ingest.cutter import ChunkCutter, CutChunk, CutterFailed
from chunkcast.ingest.urls import KEYFRAME_ADVICE
from chunkcast.metrics import Metrics
from chunkcast.services.ingest_stats import PublisherStats
from chunkcast.services.outages import failed_dependency
from chunkcast.services.streams import Streams

log = logging.getLogger(__name__)

BACKOFF_CAP_S = 2.0  # an outage is noticed within this long of its end
FINISH_GRACE_S = 5.0  # the cutter gets this long to close its last chunk
KEYFRAME_WARN_S = 2.5  # keyframes further apart than this make chunks long: warn
DELIVERIES = 4  # chunks of one publication being stored at once


class Refused(Exception):
    """A publisher the ingest will not take, or stops taking; the message is for people."""

    def __init__(self, message: str, reason: str = "refused") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # a metric label: key, busy, ended, duplicate, codec, media…


@dataclass
class PublisherFigures:
    """What the dashboard (through the ``ingest`` reports: :meth:`stats`) and /metrics show
    of a live publisher."""

    protocol: str
    peer: str
    video_id: str
    bytes_in: int = 0
    chunks_cut: int = 0
    chunks_stored: int = 0
    chunks_skipped: int = 0
    connected_at: str = field(default_factory=iso_now)
    keyframe_interval_s: float | None = None  # measured (RTMP), else the longest recent chunk
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    def received(self, size: int) -> None:
        self.bytes_in += size
        self.recent.append((time.monotonic(), self.bytes_in))

    @property
    def bitrate_bps(self) -> float:
        """Over the last few seconds of arrivals."""
        if len(self.recent) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self.recent[0], self.recent[-1]
        return (b1 - b0) * 8 / (t1 - t0) if t1 > t0 else 0.0

    @property
    def keyframes_too_far(self) -> bool:
        return (self.keyframe_interval_s or 0.0) > KEYFRAME_WARN_S

    @property
    def keyframe_warning(self) -> str | None:
        """For people, when keyframes are too far apart (None when they are not)."""
        if not self.keyframes_too_far:
            return None
        return (f"keyframes arrive {self.keyframe_interval_s:.1f} s apart (more than "
                f"{KEYFRAME_WARN_S} s), so chunks and the delay grow as long: "
                f"{KEYFRAME_ADVICE}")

    def stats(self) -> PublisherStats:
        """What this ingest process reports of the publisher to the API processes."""
        return PublisherStats(
            protocol=self.protocol, bitrate_kbps=round(self.bitrate_bps / 1000, 1),
            keyframe_interval_s=self.keyframe_interval_s,
            keyframe_warning=self.keyframe_warning, chunks_cut=self.chunks_cut,
            chunks_skipped=self.chunks_skipped, connected_at=self.connected_at)


class Publication:
    """Chunks are numbered on from where the stream stopped (``first_seq``) and delivered
    one at a time; a chunk that cannot be stored through an outage within ``retry_s`` of
    being cut is skipped (viewers get a gap). A refusal by the catalogue (the key rotated,
    the stream ended, a chunk already stored by another publisher) ends the publication."""

    def __init__(self, streams: Streams, video_id: str, stream_key: str, cutter: ChunkCutter,
                 figures: PublisherFigures, metrics: Metrics, *, first_seq: int,
                 timeline_start: float, retry_s: float) -> None:
        self._streams = streams
        self._metrics = metrics
        self._video_id = video_id
        self._key = stream_key
        self._cutter = cutter
        self.figures = figures
        self._next_seq = first_seq
        self._timeline_start = timeline_start
        self._retry_s = retry_s
        self._durations: deque[float] = deque(maxlen=8)
        self._measured_keyframes = False
        self.ended: Refused | None = None  # why it stopped taking media, once it did

    @property
    def video_id(self) -> str:
        return self._video_id

    async def feed(self, data: bytes) -> None:
        """More of the publisher's stream; Refused once the publication has ended."""
        if self.ended is not None:
            raise self.ended
        self.figures.received(len(data))
        self._metrics.ingest_bytes.labels(self.figures.protocol).inc(len(data))
        try:
            await self._cutter.write(data)
        except CutterFailed:
            tail = " / ".join(self._cutter.tail)
            log.warning("stream %s: the chunk cutter stopped: %s", self._video_id, tail)
            self.ended = Refused("the stream could not be read (not H.264/AAC media, or "
                                 "damaged)", "media")
            raise self.ended from None

    def keyframe_interval(self, seconds: float) -> None:
        """Measured by a front-end that sees the keyframes (RTMP)."""
        self._measured_keyframes = True
        self.figures.keyframe_interval_s = round(seconds, 3)
        self._metrics.ingest_keyframe_interval.labels(self._video_id).set(seconds)

    async def run(self) -> None:
        """Deliver what the cutter closes until it exits: up to :data:`DELIVERIES` chunks at
        once (numbered in order), so one slow write does not hold back the next chunks."""
        slots = asyncio.Semaphore(DELIVERIES)
        running: set[asyncio.Task[None]] = set()  # owned here; each task removes itself

        async def deliver(seq: int, chunk: CutChunk) -> None:
            try:
                await self._deliver(seq, chunk)
            finally:
                slots.release()

        try:
            async for chunk in self._cutter.chunks():
                seq, self._next_seq = self._next_seq, self._next_seq + 1
                self.figures.chunks_cut += 1
                await slots.acquire()
                task = asyncio.create_task(deliver(seq, chunk))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
        finally:
            self._cutter.kill()  # stopped early (refused, cancelled): nothing more is read
            for task in list(running):
                task.cancel()

    async def finish(self) -> None:
        """The publisher left: let the cutter close its last chunk."""
        code = await self._cutter.finish(FINISH_GRACE_S)
        if code not in (0, None) and self.ended is None:
            log.warning("stream %s: the chunk cutter exited with %s: %s", self._video_id,
                        code, " / ".join(self._cutter.tail))

    async def _deliver(self, seq: int, chunk: CutChunk) -> None:
        try:
            if self.ended is not None:
                return
            self._durations.append(chunk.duration)
            if not self._measured_keyframes:
                self.figures.keyframe_interval_s = round(max(self._durations), 3)
                self._metrics.ingest_keyframe_interval.labels(self._video_id).set(
                    self.figures.keyframe_interval_s)
            self._metrics.ingest_bitrate.labels(self._video_id).set(self.figures.bitrate_bps)
            stored = await self._store(seq, chunk)
            if stored:
                self.figures.chunks_stored += 1
            else:
                self.figures.chunks_skipped += 1
            self._metrics.ingest_chunks.labels("stored" if stored else "skipped").inc()
        finally:
            chunk.path.unlink(missing_ok=True)

    async def _store(self, seq: int, chunk: CutChunk) -> bool:
        deadline = chunk.cut_at + self._retry_s
        delay = 0.25
        while True:
            try:
                await self._streams.store_chunk(
                    self._video_id, self._key, seq, chunk.path, duration=round(chunk.duration, 6),
                    pts_start=round(chunk.start + self._timeline_start, 6),
                    captured_at=iso_from_epoch(chunk.captured_at))
                return True
            except (InvalidInput, TooLarge) as exc:  # this chunk only: a gap
                log.warning("stream %s: chunk %d skipped: %s", self._video_id, seq, exc.message)
                return False
            except Unavailable:
                pass  # retried below
            except ChunkcastError as exc:  # the stream or the key: no more chunks
                log.warning("stream %s: ingest stopped: %s", self._video_id, exc.message)
                self.ended = Refused(exc.message, "refused")
                return False
            except Exception as exc:
                if failed_dependency(exc) is None:
                    raise
            if time.monotonic() + delay > deadline:
                log.warning("stream %s: chunk %d skipped: storage or catalogue unreachable "
                            "for %.0f s", self._video_id, seq, self._retry_s)
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP_S)
