"""The catalogue: videos, renditions, segments and transcode progress, and the outbox of
events recorded with the writes they announce."""

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from chunkcast.domain.events import Event
from chunkcast.domain.ladder import Rendition
from chunkcast.domain.videos import (
    Chunk,
    RenditionInfo,
    Segment,
    Video,
    VideoKind,
    VideoStatus,
)

Announcement = tuple[str, Event]
"""An event and its topic, to publish once the write it announces is committed."""


@dataclass(frozen=True)
class PendingEvent:
    """An event in the outbox: recorded with its write, not yet known to be published."""

    id: int  # grows with each event recorded: the order to publish in
    topic: str
    event: Event
    created_at: datetime


class VideoRepository(Protocol):
    """Every write is idempotent so a redelivered event changes nothing. A write that must be
    announced records its events in the outbox in the same transaction (so a state change is
    never committed without them); they stay there until :meth:`delete_pending` or
    :meth:`relay_pending` removes them once published."""

    async def add_video(self, video: Video) -> None:
        """Insert a new video."""

    async def set_private(self, video_id: str, private: bool) -> None:
        """Make a video private (signed playback) or public."""

    async def set_stream_key(self, video_id: str, digest: str) -> None:
        """Replace a stream's key digest (key rotation)."""

    async def add_chunk(self, chunk: Chunk, *, at: datetime) -> bool:
        """Record a live chunk reported at ``at``; False when it was already recorded."""

    async def record_chunk(self, chunk: Chunk, announce: Announcement, *, at: datetime,
                           went_live: Announcement) -> Sequence[PendingEvent]:
        """:meth:`add_chunk`, and in the same transaction: a stream still idle made live
        (``went_live``, its status event, recorded in the outbox) and ``announce`` recorded
        in the outbox. Returns the events recorded, in order: none when the chunk was
        already recorded (only its report time is updated then)."""

    async def get_chunk(self, video_id: str, seq: int) -> Chunk | None:
        """Chunk ``seq`` of the video, None when it was never recorded."""

    async def chunk_extent(self, video_id: str) -> tuple[int, float] | None:
        """The highest chunk seq recorded for the video and the latest end of its chunks
        (``pts_start + duration``); None before its first chunk."""

    async def quiet_streams(self, before: datetime) -> Sequence[str]:
        """Ids of live streams whose last chunk was reported before ``before``."""

    async def set_jobs_total(self, video_id: str, jobs_total: int) -> None:
        """How many chunk transcodes complete the video (known when a stream ends)."""

    async def get_video(self, video_id: str) -> Video | None:
        """The video, or None."""

    async def list_videos(self, *, limit: int, offset: int, public_only: bool = False,
                          statuses: Collection[VideoStatus] = (), kind: VideoKind | None = None
                          ) -> Sequence[Video]:
        """Newest first; with ``public_only`` private videos are left out; ``statuses`` and
        ``kind``, when given, keep only videos in one of those statuses, of that kind."""

    async def set_status(
        self,
        video_id: str,
        status: VideoStatus,
        *,
        error: str | None = None,
        only_from: Collection[VideoStatus] | None = None,
    ) -> bool:
        """Set the status (and error); with ``only_from``, only when the current status is
        one of those. Returns whether the row changed."""

    async def move_status(self, video_id: str, status: VideoStatus,
                          announce: Sequence[Announcement], *,
                          only_from: Collection[VideoStatus], error: str | None = None
                          ) -> Sequence[PendingEvent]:
        """:meth:`set_status`, and when the row changed, ``announce`` (not empty) recorded in
        the outbox in the same transaction. Returns the events recorded, in order: none
        when the status did not change."""

    async def set_source_info(
        self,
        video_id: str,
        *,
        duration: float,
        width: int,
        height: int,
        fps: float,
        has_audio: bool,
        source_size: int,
        audio_passthrough: bool = False,
    ) -> None:
        """Record what the probe found."""

    async def set_duration(self, video_id: str, duration: float) -> None:
        """Record how long the video plays (an ended stream's replay)."""

    async def set_plan(
        self, video_id: str, renditions: Sequence[Rendition], jobs_total: int
    ) -> None:
        """Record the chosen ladder and how many chunk transcodes complete the video."""

    async def renditions(self, video_id: str) -> Sequence[RenditionInfo]:
        """The video's renditions, lowest first."""

    async def set_codecs(self, video_id: str, rendition: str, codecs: str) -> None:
        """Record the RFC 6381 codec string of a rendition."""

    async def add_chunks(self, chunks: Sequence[Chunk]) -> None:
        """Record chunks (idempotent: a chunk already recorded is kept as it is)."""

    async def chunks(self, video_id: str) -> Sequence[Chunk]:
        """The video's chunks in seq order."""

    async def last_chunk_seq(self, video_id: str) -> int | None:
        """The highest chunk seq recorded for the video, None before its first chunk."""

    async def upsert_segments(self, segments: Sequence[Segment]) -> None:
        """Insert or replace segments (keyed by video, rendition, seq)."""

    async def segments(self, video_id: str, rendition: str, *, after: int | None = None,
                       before: int | None = None, first: int | None = None,
                       last: int | None = None) -> Sequence[Segment]:
        """A rendition's segments in seq order: those with ``after < seq < before`` (either
        bound optional), and of these only the ``first`` or the ``last`` so many. A live
        stream's history grows without end: readers ask for the range they need."""

    async def finish_job(self, video_id: str, seq: int, group: str) -> None:
        """Mark chunk ``seq`` done for worker ``group`` (idempotent). One statement on the
        live path: the count is :meth:`jobs_done`'s, asked only when it is needed."""

    async def jobs_done(self, video_id: str, groups: Collection[str] | None = None) -> int:
        """How many chunk transcodes of the video are finished (only those of ``groups``
        when given: the groups that have renditions of it)."""

    async def delete_video(self, video_id: str) -> None:
        """Remove the video and everything recorded about it."""

    async def count_by_status(self) -> dict[str, int]:
        """Number of videos per status, for metrics."""

    async def pending(self, video_id: str) -> Sequence[PendingEvent]:
        """The video's events still in the outbox, in the order they were recorded."""

    async def delete_pending(self, ids: Collection[int]) -> None:
        """Remove published events from the outbox (ids already gone are ignored)."""

    async def relay_pending(self, publish: Callable[[PendingEvent], Awaitable[None]], *,
                            recorded_before: datetime, limit: int) -> int:
        """Hand up to ``limit`` events recorded before ``recorded_before`` to ``publish`` in
        the order they were recorded, and remove each that it took. The first one it raises
        on stops the round (it and those after it stay, in order) and the error is raised
        again. On a database server, processes relaying at once take different events
        (one that another process holds is skipped). Returns how many were published."""

    async def outbox_backlog(self) -> tuple[int, datetime | None]:
        """How many events wait in the outbox, and when the oldest was recorded."""

    async def ping(self) -> None:
        """A trivial query: raises when the catalogue cannot be reached."""

    async def close(self) -> None:
        """Dispose of connections."""
