"""The catalogue: videos, renditions, segments and transcode progress."""

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from chunkcast.domain.ladder import Rendition
from chunkcast.domain.videos import (
    Chunk,
    RenditionInfo,
    Segment,
    Video,
    VideoKind,
    VideoStatus,
)


class VideoRepository(Protocol):
    """Every write is idempotent so a redelivered event changes nothing."""

    async def add_video(self, video: Video) -> None:
        """Insert a new video."""

    async def set_private(self, video_id: str, private: bool) -> None:
        """Make a video private (signed playback) or public."""

    async def set_stream_key(self, video_id: str, digest: str) -> None:
        """Replace a stream's key digest (key rotation)."""

    async def add_chunk(self, chunk: Chunk, *, at: datetime) -> bool:
        """Record a live chunk reported at ``at``; False when it was already recorded."""

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

    async def finish_job(self, video_id: str, seq: int, group: str) -> int:
        """Mark chunk ``seq`` done for worker ``group`` (idempotent); returns how many
        jobs of the video are done."""

    async def jobs_done(self, video_id: str, groups: Collection[str] | None = None) -> int:
        """How many chunk transcodes of the video are finished (only those of ``groups``
        when given: the groups that have renditions of it)."""

    async def delete_video(self, video_id: str) -> None:
        """Remove the video and everything recorded about it."""

    async def count_by_status(self) -> dict[str, int]:
        """Number of videos per status, for metrics."""

    async def close(self) -> None:
        """Dispose of connections."""
