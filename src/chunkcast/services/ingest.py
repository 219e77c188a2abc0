"""The splitter: probe an uploaded source, choose its ladder and cut it into chunks."""

import math

from chunkcast.domain import events
from chunkcast.domain.errors import InvalidInput, MediaError
from chunkcast.domain.ladder import busy_groups, choose_ladder
from chunkcast.domain.videos import Chunk, VideoStatus
from chunkcast.ports.bus import EventBus
from chunkcast.ports.media import Prober
from chunkcast.ports.repository import VideoRepository
from chunkcast.ports.storage import ObjectStore
from chunkcast.services.lifecycle import Lifecycle

# A tail shorter than this joins the chunk before it rather than becoming a chunk of its own.
MIN_TAIL_SECONDS = 0.5
# However long a source is allowed to be, it is never cut into more chunks than this.
MAX_CHUNKS = 20_000


def plan_chunks(duration: float, chunk_seconds: float) -> list[tuple[float, float]]:
    """``(start, length)`` of each chunk covering ``[0, duration)``; MediaError beyond
    :data:`MAX_CHUNKS` chunks."""
    if not math.isfinite(duration) or duration <= 0:
        raise MediaError("the video has no usable duration")
    count = max(1, math.ceil(duration / chunk_seconds - 1e-9))
    if count > MAX_CHUNKS:
        raise MediaError(f"the video is too long to process: it would make {count} chunks, "
                         f"the limit is {MAX_CHUNKS}")
    spans = [(i * chunk_seconds, chunk_seconds) for i in range(count)]
    start, _ = spans[-1]
    tail = duration - start
    if tail < MIN_TAIL_SECONDS and count > 1:
        spans.pop()
        start, _ = spans[-1]
        tail = duration - start
    spans[-1] = (start, tail)
    return spans


class Splitter:
    """VOD chunks are time ranges of the source: each worker seeks into the stored source
    accurately, so no intermediate copy of the video is written."""

    def __init__(self, repo: VideoRepository, store: ObjectStore, bus: EventBus,
                 lifecycle: Lifecycle, groups: dict[str, tuple[str, ...]], *,
                 prober: Prober, chunk_seconds: int, segment_seconds: int,
                 max_source_seconds: float = 24 * 3600) -> None:
        self._repo = repo
        self._store = store
        self._bus = bus
        self._prober = prober
        self._lifecycle = lifecycle
        self._groups = groups
        self._max_seconds = max_source_seconds
        # Chunks hold whole segments, so segment numbers follow from chunk starts.
        self._chunk_seconds = max(segment_seconds,
                                  chunk_seconds // segment_seconds * segment_seconds)

    async def handle(self, event: events.SourceUploaded) -> None:
        video = await self._repo.get_video(event.video_id)
        # PROCESSING too: a redelivered event re-publishes chunks; transcodes are idempotent.
        if video is None or not video.status.is_splittable:
            return
        try:
            await self._split(event)
        except MediaError as exc:
            await self._lifecycle.fail(event.video_id, exc.message)

    async def give_up(self, event: events.SourceUploaded, reason: str) -> None:
        """Settle a source the worker stops trying (a dependency stayed down past its retry
        budget, or splitting it kept crashing the worker): the upload fails with
        ``reason``."""
        if await self._repo.get_video(event.video_id) is not None:
            await self._lifecycle.fail(event.video_id, reason)

    async def _split(self, event: events.SourceUploaded) -> None:
        stored = await self._store.stat(event.key)
        if stored is None or stored.size == 0:
            raise MediaError("the uploaded file is missing or empty")
        try:
            info = await self._prober.probe_source(await self._store.input_url(event.key))
        except MediaError:
            # The probe reads the source from storage: if storage cannot be reached now,
            # this raises and the source is retried instead of failed as unreadable. Storage
            # that went away and came back during the probe looks like a damaged file, so
            # the source is blamed only when a second probe, storage answering, fails too.
            await self._store.stat(event.key)
            info = await self._prober.probe_source(await self._store.input_url(event.key))
        if info.duration > self._max_seconds:
            raise MediaError(f"the video lasts {info.duration / 3600:.1f} hours; the limit is "
                             f"{self._max_seconds / 3600:g} hours")
        try:
            renditions = choose_ladder(info.width, info.height, info.fps)
        except InvalidInput as exc:  # a picture too small to encode: the file is the problem
            raise MediaError(exc.message) from exc
        busy = busy_groups(renditions, self._groups)
        spans = plan_chunks(info.duration, self._chunk_seconds)
        await self._repo.set_source_info(
            event.video_id, duration=info.duration, width=info.width, height=info.height,
            fps=info.fps, has_audio=info.has_audio, source_size=stored.size,
        )
        await self._repo.set_plan(event.video_id, renditions, len(spans) * len(busy))
        chunks = [Chunk(event.video_id, seq, event.key, start, length)
                  for seq, (start, length) in enumerate(spans)]
        await self._repo.add_chunks(chunks)
        await self._lifecycle.move(event.video_id, VideoStatus.PROCESSING,
                                   only_from=(VideoStatus.UPLOADED,))
        for c in chunks:
            await self._bus.publish(events.VOD_CHUNKS, events.ChunkUploaded(
                c.video_id, "vod", c.seq, c.key, c.pts_start, c.duration,
                container=info.container))

