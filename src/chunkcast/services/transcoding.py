"""Transcode workers: one chunk, every rendition of one worker group, from one decode."""

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from chunkcast.domain import events, keys
from chunkcast.domain.errors import MediaError
from chunkcast.domain.ladder import Rendition, busy_groups, choose_ladder, renditions_for_group
from chunkcast.domain.videos import RenditionInfo, Segment, Video, VideoKind, VideoStatus
from chunkcast.media.hls import WrittenSegment
from chunkcast.media.inputs import ALLOWED_CONTAINERS, LIVE_CHUNK_FORMAT, MediaInput
from chunkcast.metrics import Metrics
from chunkcast.ports.bus import EventBus
from chunkcast.ports.media import ChunkWindow, EncodedRendition, MediaEncoder, Prober
from chunkcast.ports.repository import VideoRepository
from chunkcast.ports.storage import ObjectStore
from chunkcast.services.lifecycle import Lifecycle
from chunkcast.services.playback import Playback

log = logging.getLogger(__name__)

# A chunk whose output falls this much short of its length means the source ends early.
SHORTFALL_TOLERANCE_S = 0.5


@dataclass(frozen=True)
class TranscodeConfig:
    group: str
    groups: dict[str, tuple[str, ...]]
    segment_seconds: int = 2
    work_dir: Path | None = None
    # An encode may run this long per chunk: a base plus so many seconds per second of media,
    # so a chunk that is far more work than its length says cannot hold a worker for hours.
    timeout_base_s: float = 60.0
    timeout_per_media_s: float = 20.0

    def timeout_for(self, media_seconds: float) -> float:
        return self.timeout_base_s + self.timeout_per_media_s * media_seconds


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Transcoder:
    """Transcodes the chunks of one rendition group: the encoder writes the segments, this
    stores them, records them and announces them."""

    def __init__(self, repo: VideoRepository, store: ObjectStore, bus: EventBus,
                 lifecycle: Lifecycle, playback: Playback, metrics: Metrics,
                 config: TranscodeConfig, *, prober: Prober, encoder: MediaEncoder) -> None:
        self._repo = repo
        self._store = store
        self._bus = bus
        self._prober = prober
        self._encoder = encoder
        self._lifecycle = lifecycle
        self._playback = playback
        self._metrics = metrics
        self._cfg = config
        self._inits: set[str] = set()  # init segments known to be stored: no HEAD per chunk

    async def handle(self, event: events.ChunkUploaded) -> None:
        video = await self._repo.get_video(event.video_id)
        if video is None or video.status in (VideoStatus.FAILED, VideoStatus.READY):
            return
        infos = await self._repo.renditions(video.id)
        if not infos and event.kind == "live":
            try:
                video, infos = await self._plan_live(video, event)
            except MediaError as exc:
                await self._confirm_bad_media(event)
                # A first chunk that is not a usable MPEG-TS stream plans nothing: it is a
                # gap like any bad live chunk, and the next one decides the ladder.
                log.warning("stream %s: chunk %d skipped before the ladder: %s", video.id,
                            event.seq, exc.message)
                await self._gap(video.id, event.seq)
                return
        mine = renditions_for_group([i.rendition for i in infos], self._cfg.groups,
                                    self._cfg.group)
        if not mine:
            return
        try:
            segments = await self._transcode(video, event, mine, infos)
        except MediaError as exc:
            await self._confirm_bad_media(event)
            if video.kind is VideoKind.VOD:
                # An upload fails for good, so its media is blamed only when a second try,
                # storage answering, fails too: ffmpeg reading from storage that went away
                # and came back fails like a damaged or truncated file.
                try:
                    segments = await self._transcode(video, event, mine, infos)
                except MediaError as again:
                    await self._confirm_bad_media(event)
                    await self._lifecycle.fail(video.id, f"chunk {event.seq}: {again.message}")
                    return
            else:
                # A bad live chunk is skipped: viewers get a gap marker, the stream goes on.
                log.warning("stream %s: chunk %d skipped: %s", video.id, event.seq,
                            exc.message)
                segments = []
        await self._repo.upsert_segments(segments)
        # Recorded before the segments are announced, so that an embedded process's fan-out
        # to viewers does not share the moment with this bookkeeping.
        await self._repo.finish_job(video.id, event.seq, self._cfg.group)
        ready_at = iso_now()
        for s in segments:
            await self._bus.publish(events.SEGMENTS, events.SegmentReady(
                s.video_id, s.rendition, s.seq, s.key, keys.init_segment(s.video_id, s.rendition),
                s.pts_start, s.duration, s.captured_at, ready_at, s.parts))
        await finish_if_complete(self._repo, self._lifecycle, self._playback, video.id,
                                 self._cfg.groups)

    async def give_up(self, event: events.ChunkUploaded, reason: str) -> None:
        """Settle a chunk the worker stops trying (a dependency stayed down past the chunk's
        retry budget, or handling it kept crashing the worker): a live chunk becomes a gap,
        its job recorded with no segments so that the stream can still end and its replay
        complete; an upload fails with ``reason``."""
        video = await self._repo.get_video(event.video_id)
        if video is None or video.status in (VideoStatus.FAILED, VideoStatus.READY):
            return
        if video.kind is VideoKind.VOD:
            await self._lifecycle.fail(video.id, f"chunk {event.seq}: {reason}")
            return
        log.warning("stream %s: chunk %d given up, a gap: %s", video.id, event.seq, reason)
        await self._gap(video.id, event.seq)

    async def _gap(self, video_id: str, seq: int) -> None:
        """A live chunk left out: its job is done with no segments (viewers get a gap)."""
        await self._repo.finish_job(video_id, seq, self._cfg.group)
        await finish_if_complete(self._repo, self._lifecycle, self._playback, video_id,
                                 self._cfg.groups)

    async def _confirm_bad_media(self, event: events.ChunkUploaded) -> None:
        """After the probe or ffmpeg failed on the chunk: they read it from storage, so the
        failure may be storage's. Raises (and the chunk is retried, not blamed on its media)
        when storage cannot be reached now; a chunk whose object is there, or gone, is bad
        media."""
        await self._store.stat(event.key)

    async def _plan_live(self, video: Video, event: events.ChunkUploaded
                         ) -> tuple[Video, Sequence[RenditionInfo]]:
        """The first chunk of a stream decides its ladder (every worker decides the same)."""
        info = await self._prober.probe_live_chunk(await self._store.input_url(event.key))
        await self._repo.set_source_info(
            video.id, duration=0.0, width=info.width, height=info.height, fps=info.fps,
            has_audio=info.has_audio, source_size=0, audio_passthrough=info.audio_passthrough)
        await self._repo.set_plan(video.id, choose_ladder(info.width, info.height, info.fps), 0)
        refreshed = await self._repo.get_video(video.id)
        return refreshed or video, await self._repo.renditions(video.id)

    async def _transcode(self, video: Video, event: events.ChunkUploaded,
                         renditions: list[Rendition], infos: Sequence[RenditionInfo]
                         ) -> list[Segment]:
        # A live chunk is one segment numbered like the chunk; a VOD chunk holds whole
        # segments, numbered from its start time.
        live = event.kind == "live"
        segment_seconds = self._cfg.segment_seconds
        first_seq = event.seq if live else round(event.pts_start / segment_seconds)
        source = await self._input(event)
        with tempfile.TemporaryDirectory(prefix="chunkcast-", dir=self._cfg.work_dir) as tmp:
            started_at = iso_now()
            started = time.monotonic()
            encoded = await self._encoder.encode(
                source, renditions, Path(tmp), kind=event.kind,
                window=ChunkWindow(event.pts_start, event.duration), first_seq=first_seq,
                segment_seconds=segment_seconds, has_audio=bool(video.has_audio),
                copy_audio=video.audio_passthrough,
                timeout_s=self._cfg.timeout_for(event.duration))
            elapsed = time.monotonic() - started
            self._metrics.observe_transcode(self._cfg.group, event.duration, elapsed)
            # One line per chunk: what bench/latency.py splits into queue wait and transcode.
            log.info("chunk timing %s", json.dumps({
                "video_id": video.id, "seq": event.seq, "group": self._cfg.group,
                "reported_at": event.reported_at, "started_at": started_at,
                "transcode_s": round(elapsed, 4)}))
            codecs = {i.rendition.name: i.codecs for i in infos}
            segments: list[Segment] = []
            for out in encoded:
                self._check_complete(event, out.segments)
                await self._store_init(video.id, out, known_codecs=codecs.get(out.rendition))
                segments += await self._store_segments(video.id, out, event, first_seq)
            return segments

    async def _input(self, event: events.ChunkUploaded) -> MediaInput:
        """The chunk as it must be read: a live chunk as MPEG-TS, a VOD source as the
        container its probe found (an event from before that was recorded is probed
        again)."""
        url = await self._store.input_url(event.key)
        if event.kind == "live":
            return MediaInput(url, LIVE_CHUNK_FORMAT)
        if event.container in ALLOWED_CONTAINERS:
            return MediaInput(url, event.container)
        return MediaInput(url, (await self._prober.probe_source(url)).container)

    @staticmethod
    def _check_complete(event: events.ChunkUploaded, written: Sequence[WrittenSegment]
                        ) -> None:
        produced = sum(w.duration for w in written)
        if produced < event.duration - SHORTFALL_TOLERANCE_S or not written:
            at = event.pts_start + produced
            raise MediaError(f"the source ends at {at:.1f} s although it should last until "
                             f"{event.pts_start + event.duration:.1f} s (truncated or damaged)")

    async def _store_init(self, video_id: str, out: EncodedRendition, *,
                          known_codecs: str | None) -> None:
        """One init segment per rendition: the first chunk to finish stores it, and records
        its codecs."""
        key = keys.init_segment(video_id, out.rendition)
        if key not in self._inits:
            if await self._store.stat(key) is None:
                await self._store.put_file(key, out.init)
            if len(self._inits) > 10_000:  # a long-lived worker: keep the memo bounded
                self._inits.clear()
            self._inits.add(key)
        if known_codecs is None:
            await self._repo.set_codecs(video_id, out.rendition, out.codecs)

    async def _store_segments(self, video_id: str, out: EncodedRendition,
                              event: events.ChunkUploaded, first_seq: int) -> list[Segment]:
        stored = []
        pts = out.start
        for i, w in enumerate(out.segments):
            seq = first_seq + i
            key = keys.segment(video_id, out.rendition, seq)
            await self._store.put_file(key, w.path)
            stored.append(Segment(video_id, out.rendition, seq, key, round(pts, 6), w.duration,
                                  event.captured_at, w.parts))
            pts += w.duration
        return stored


async def finish_if_complete(repo: VideoRepository, lifecycle: Lifecycle, playback: Playback,
                             video_id: str, groups: dict[str, tuple[str, ...]]) -> None:
    """When every chunk transcode of a finished upload or an ended stream is done, write the
    static playlists; an upload then becomes ready, an ended stream is announced as ended.
    Only the groups with renditions of the video count (a group without any may have noted
    a chunk it could do nothing with)."""
    video = await repo.get_video(video_id)
    if video is None or video.status not in (VideoStatus.PROCESSING, VideoStatus.ENDED):
        return
    if video.kind is VideoKind.LIVE and video.status is not VideoStatus.ENDED:
        return
    ladder = [i.rendition for i in await repo.renditions(video.id)]
    if await repo.jobs_done(video.id, busy_groups(ladder, groups)) < video.jobs_total:
        return
    played = await playback.write_static(video)
    if video.kind is VideoKind.LIVE:  # a stream's length is known once its replay is
        await repo.set_duration(video.id, played)
    if video.kind is VideoKind.VOD:
        await lifecycle.move(video.id, VideoStatus.READY, only_from=(VideoStatus.PROCESSING,))
    else:
        await lifecycle.announce(video.id, VideoStatus.ENDED)
