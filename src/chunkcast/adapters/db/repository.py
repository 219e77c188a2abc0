"""The catalogue on SQL (SQLite via aiosqlite, PostgreSQL via asyncpg)."""

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from chunkcast.adapters.db.models import (
    ChunkJobRow,
    ChunkRow,
    OutboxRow,
    RenditionRow,
    SegmentRow,
    VideoRow,
)
from chunkcast.config import Settings
from chunkcast.domain import events
from chunkcast.domain.clock import as_utc, utc_now
from chunkcast.domain.ladder import Rendition
from chunkcast.domain.videos import (
    Chunk,
    RenditionInfo,
    Segment,
    Video,
    VideoKind,
    VideoStatus,
)
from chunkcast.ports.repository import Announcement, PendingEvent

log = logging.getLogger(__name__)

# A database server that stops answering must not hold a request for long: connecting, each
# statement and waiting for a pooled connection give up after a few seconds (PostgreSQL).
CONNECT_TIMEOUT_S = 3.0
COMMAND_TIMEOUT_S = 5.0
POOL_TIMEOUT_S = 5.0


def make_engine(url: str, *, bounded: bool = False) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so workers and API can share it.
    With ``bounded``, a PostgreSQL engine gives up on a dead server after a few seconds
    (migrations, which may wait for each other, are not bounded)."""
    options: dict[str, Any] = {"pool_pre_ping": not url.startswith("sqlite")}
    if bounded and url.startswith("postgresql"):
        options |= {"pool_timeout": POOL_TIMEOUT_S, "connect_args": {
            "timeout": CONNECT_TIMEOUT_S, "command_timeout": COMMAND_TIMEOUT_S}}
    engine = create_async_engine(url, **options)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cursor = conn.cursor()
            for pragma in ("journal_mode=WAL", "busy_timeout=10000", "foreign_keys=ON",
                           "synchronous=NORMAL"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

    return engine


# Rows per multi-row INSERT: asyncpg takes at most 32767 bind parameters per statement.
_BATCH_ROWS = 1000


# Every time is written in UTC (as_utc): SQLite keeps the wall-clock digits and drops the
# offset, and asyncpg refuses naive times, so this is what makes both backends agree.


def _batches(rows: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), _BATCH_ROWS):
        yield rows[start:start + _BATCH_ROWS]


def _video(row: VideoRow) -> Video:
    return Video(
        id=row.id, kind=VideoKind(row.kind), title=row.title, status=VideoStatus(row.status),
        created_at=as_utc(row.created_at), error=row.error, duration=row.duration, width=row.width,
        height=row.height, fps=row.fps, has_audio=row.has_audio, source_size=row.source_size,
        jobs_total=row.jobs_total, stream_key_digest=row.stream_key_digest,
        last_chunk_at=as_utc(row.last_chunk_at) if row.last_chunk_at else None,
        audio_passthrough=bool(row.audio_passthrough), private=bool(row.private),
    )


def _decoded(rows: Iterable[OutboxRow]) -> Iterator[PendingEvent]:
    """The events of outbox rows; one this version cannot read (written by a newer one) is
    left where it is for a process that can."""
    for row in rows:
        try:
            event = events.decode(row.payload)
        except (ValueError, KeyError, TypeError):
            log.error("outbox event %s cannot be read; left in the outbox", row.id)
            continue
        yield PendingEvent(row.id, row.topic, event, as_utc(row.created_at))


class SqlVideoRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._session = async_sessionmaker(engine, expire_on_commit=False)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def add_video(self, video: Video) -> None:
        async with self._session.begin() as s:
            s.add(VideoRow(
                id=video.id, kind=video.kind.value, title=video.title, status=video.status.value,
                error=video.error, jobs_total=video.jobs_total,
                created_at=as_utc(video.created_at), updated_at=as_utc(video.created_at),
                stream_key_digest=video.stream_key_digest, private=video.private,
            ))

    async def set_private(self, video_id: str, private: bool) -> None:
        async with self._session.begin() as s:
            await s.execute(update(VideoRow).where(VideoRow.id == video_id).values(
                private=private, updated_at=utc_now()))

    async def set_stream_key(self, video_id: str, digest: str) -> None:
        async with self._session.begin() as s:
            await s.execute(update(VideoRow).where(VideoRow.id == video_id).values(
                stream_key_digest=digest, updated_at=utc_now()))

    async def add_chunk(self, chunk: Chunk, *, at: datetime) -> bool:
        async with self._session.begin() as s:
            return await self._add_chunk(s, chunk, at)

    async def _add_chunk(self, s: AsyncSession, chunk: Chunk, at: datetime) -> bool:
        result = await s.execute(self._insert(ChunkRow).values(
            video_id=chunk.video_id, seq=chunk.seq, key=chunk.key,
            pts_start=chunk.pts_start, duration=chunk.duration,
            captured_at=chunk.captured_at,
        ).on_conflict_do_nothing())
        await s.execute(update(VideoRow).where(VideoRow.id == chunk.video_id).values(
            last_chunk_at=as_utc(at)))
        return bool(getattr(result, "rowcount", 0))

    async def record_chunk(self, chunk: Chunk, announce: Announcement, *, at: datetime,
                           went_live: Announcement) -> Sequence[PendingEvent]:
        async with self._session.begin() as s:
            if not await self._add_chunk(s, chunk, at):
                return []
            recorded = []
            moved = await s.execute(update(VideoRow).where(
                VideoRow.id == chunk.video_id, VideoRow.status == VideoStatus.IDLE.value,
            ).values(status=VideoStatus.LIVE.value, error=None, updated_at=utc_now()))
            if getattr(moved, "rowcount", 0):
                recorded.append(await self._record(s, chunk.video_id, went_live))
            recorded.append(await self._record(s, chunk.video_id, announce))
            return recorded

    async def get_chunk(self, video_id: str, seq: int) -> Chunk | None:
        async with self._session() as s:
            r = await s.get(ChunkRow, (video_id, seq))
            return Chunk(r.video_id, r.seq, r.key, r.pts_start, r.duration,
                         r.captured_at) if r else None

    async def chunk_extent(self, video_id: str) -> tuple[int, float] | None:
        async with self._session() as s:
            row = (await s.execute(
                select(func.max(ChunkRow.seq), func.max(ChunkRow.pts_start + ChunkRow.duration))
                .where(ChunkRow.video_id == video_id))).one()
        return None if row[0] is None else (int(row[0]), float(row[1]))

    async def quiet_streams(self, before: datetime) -> Sequence[str]:
        async with self._session() as s:
            rows = await s.scalars(select(VideoRow.id).where(
                VideoRow.kind == VideoKind.LIVE.value,
                VideoRow.status == VideoStatus.LIVE.value,
                VideoRow.last_chunk_at < as_utc(before),
            ))
            return list(rows)

    async def set_jobs_total(self, video_id: str, jobs_total: int) -> None:
        async with self._session.begin() as s:
            await s.execute(update(VideoRow).where(VideoRow.id == video_id).values(
                jobs_total=jobs_total, updated_at=utc_now()))

    async def get_video(self, video_id: str) -> Video | None:
        async with self._session() as s:
            row = await s.get(VideoRow, video_id)
            return _video(row) if row else None

    async def list_videos(self, *, limit: int, offset: int, public_only: bool = False,
                          statuses: Collection[VideoStatus] = (), kind: VideoKind | None = None
                          ) -> Sequence[Video]:
        query = select(VideoRow).order_by(VideoRow.created_at.desc(), VideoRow.id)
        if public_only:
            query = query.where(VideoRow.private.is_(False))
        if statuses:
            query = query.where(VideoRow.status.in_([s.value for s in statuses]))
        if kind is not None:
            query = query.where(VideoRow.kind == kind.value)
        async with self._session() as s:
            rows = await s.scalars(query.limit(limit).offset(offset))
            return [_video(r) for r in rows]

    async def set_status(
        self,
        video_id: str,
        status: VideoStatus,
        *,
        error: str | None = None,
        only_from: Collection[VideoStatus] | None = None,
    ) -> bool:
        query = update(VideoRow).where(VideoRow.id == video_id)
        if only_from is not None:
            query = query.where(VideoRow.status.in_([s.value for s in only_from]))
        async with self._session.begin() as s:
            result = await s.execute(
                query.values(status=status.value, error=error, updated_at=utc_now())
            )
            return bool(getattr(result, "rowcount", 0))

    async def move_status(self, video_id: str, status: VideoStatus,
                          announce: Sequence[Announcement], *,
                          only_from: Collection[VideoStatus], error: str | None = None
                          ) -> Sequence[PendingEvent]:
        async with self._session.begin() as s:
            result = await s.execute(update(VideoRow).where(
                VideoRow.id == video_id, VideoRow.status.in_([v.value for v in only_from]),
            ).values(status=status.value, error=error, updated_at=utc_now()))
            if not getattr(result, "rowcount", 0):
                return []
            return [await self._record(s, video_id, a) for a in announce]

    async def _record(self, s: AsyncSession, video_id: str, announce: Announcement
                      ) -> PendingEvent:
        """Add an event to the outbox within the write's transaction ``s``."""
        topic, event = announce
        at = utc_now()
        recorded = await s.execute(self._insert(OutboxRow).values(
            topic=topic, video_id=video_id, payload=events.encode(event), created_at=at,
        ).returning(OutboxRow.id))
        return PendingEvent(int(recorded.scalar_one()), topic, event, at)

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
        async with self._session.begin() as s:
            await s.execute(update(VideoRow).where(VideoRow.id == video_id).values(
                duration=duration, width=width, height=height, fps=fps, has_audio=has_audio,
                source_size=source_size, audio_passthrough=audio_passthrough,
                updated_at=utc_now(),
            ))

    async def set_duration(self, video_id: str, duration: float) -> None:
        async with self._session.begin() as s:
            await s.execute(update(VideoRow).where(VideoRow.id == video_id).values(
                duration=duration, updated_at=utc_now()))

    async def set_plan(
        self, video_id: str, renditions: Sequence[Rendition], jobs_total: int
    ) -> None:
        async with self._session.begin() as s:
            for r in renditions:
                await s.execute(self._insert(RenditionRow).values(
                    video_id=video_id, name=r.name, width=r.width, height=r.height,
                    video_kbps=r.video_kbps, audio_kbps=r.audio_kbps, fps=r.fps,
                ).on_conflict_do_nothing())
            await s.execute(update(VideoRow).where(VideoRow.id == video_id).values(
                jobs_total=jobs_total, updated_at=utc_now()))

    async def renditions(self, video_id: str) -> Sequence[RenditionInfo]:
        async with self._session() as s:
            rows = await s.scalars(
                select(RenditionRow).where(RenditionRow.video_id == video_id)
                .order_by(RenditionRow.height * RenditionRow.width, RenditionRow.name)
            )
            return [
                RenditionInfo(video_id, Rendition(r.name, r.width, r.height, r.video_kbps,
                                                  r.audio_kbps, r.fps), r.codecs)
                for r in rows
            ]

    async def set_codecs(self, video_id: str, rendition: str, codecs: str) -> None:
        async with self._session.begin() as s:
            await s.execute(update(RenditionRow).where(
                RenditionRow.video_id == video_id, RenditionRow.name == rendition
            ).values(codecs=codecs))

    async def add_chunks(self, chunks: Sequence[Chunk]) -> None:
        rows = [dict(video_id=c.video_id, seq=c.seq, key=c.key, pts_start=c.pts_start,
                     duration=c.duration, captured_at=c.captured_at) for c in chunks]
        async with self._session.begin() as s:
            for batch in _batches(rows):
                await s.execute(self._insert(ChunkRow).values(batch).on_conflict_do_nothing())

    async def chunks(self, video_id: str) -> Sequence[Chunk]:
        async with self._session() as s:
            rows = await s.scalars(
                select(ChunkRow).where(ChunkRow.video_id == video_id).order_by(ChunkRow.seq)
            )
            return [Chunk(r.video_id, r.seq, r.key, r.pts_start, r.duration, r.captured_at)
                    for r in rows]

    async def last_chunk_seq(self, video_id: str) -> int | None:
        async with self._session() as s:
            last: int | None = await s.scalar(
                select(func.max(ChunkRow.seq)).where(ChunkRow.video_id == video_id))
            return last

    async def upsert_segments(self, segments: Sequence[Segment]) -> None:
        # The last of repeated keys wins, as on SQLite; PostgreSQL refuses to update one row
        # twice in a statement, so repeats are dropped here.
        latest = {(g.video_id, g.rendition, g.seq): g for g in segments}
        rows = [dict(video_id=g.video_id, rendition=g.rendition, seq=g.seq, key=g.key,
                     pts_start=g.pts_start, duration=g.duration, captured_at=g.captured_at)
                for g in latest.values()]
        async with self._session.begin() as s:
            for batch in _batches(rows):
                stmt = self._insert(SegmentRow).values(batch)
                await s.execute(stmt.on_conflict_do_update(
                    index_elements=["video_id", "rendition", "seq"],
                    set_={c: stmt.excluded[c]
                          for c in ("key", "pts_start", "duration", "captured_at")},
                ))

    async def segments(self, video_id: str, rendition: str, *, after: int | None = None,
                       before: int | None = None, first: int | None = None,
                       last: int | None = None) -> Sequence[Segment]:
        query = select(SegmentRow).where(SegmentRow.video_id == video_id,
                                         SegmentRow.rendition == rendition)
        if after is not None:
            query = query.where(SegmentRow.seq > after)
        if before is not None:
            query = query.where(SegmentRow.seq < before)
        if last is not None:
            query = query.order_by(SegmentRow.seq.desc()).limit(last)
        else:
            query = query.order_by(SegmentRow.seq)
            if first is not None:
                query = query.limit(first)
        async with self._session() as s:
            rows = list(await s.scalars(query))
        if last is not None:
            rows.reverse()
        return [Segment(r.video_id, r.rendition, r.seq, r.key, r.pts_start, r.duration,
                        r.captured_at) for r in rows]

    async def finish_job(self, video_id: str, seq: int, group: str) -> None:
        async with self._session.begin() as s:
            await s.execute(self._insert(ChunkJobRow).values(
                video_id=video_id, seq=seq, worker_group=group, done_at=utc_now()
            ).on_conflict_do_nothing())

    async def jobs_done(self, video_id: str, groups: Collection[str] | None = None) -> int:
        query = select(func.count()).select_from(ChunkJobRow).where(
            ChunkJobRow.video_id == video_id)
        if groups is not None:
            query = query.where(ChunkJobRow.worker_group.in_(list(groups)))
        async with self._session() as s:
            return int(await s.scalar(query) or 0)

    async def delete_video(self, video_id: str) -> None:
        async with self._session.begin() as s:
            for table in (SegmentRow, ChunkJobRow, ChunkRow, RenditionRow):
                await s.execute(delete(table).where(table.video_id == video_id))
            await s.execute(delete(VideoRow).where(VideoRow.id == video_id))

    async def count_by_status(self) -> dict[str, int]:
        async with self._session() as s:
            rows = await s.execute(
                select(VideoRow.status, func.count()).group_by(VideoRow.status)
            )
            return {status: int(n) for status, n in rows}

    async def pending(self, video_id: str) -> Sequence[PendingEvent]:
        async with self._session() as s:
            rows = await s.scalars(select(OutboxRow).where(OutboxRow.video_id == video_id)
                                   .order_by(OutboxRow.id))
            return list(_decoded(rows))

    async def delete_pending(self, ids: Collection[int]) -> None:
        if not ids:
            return
        async with self._session.begin() as s:
            await s.execute(delete(OutboxRow).where(OutboxRow.id.in_(list(ids))))

    async def relay_pending(self, publish: Callable[[PendingEvent], Awaitable[None]], *,
                            recorded_before: datetime, limit: int) -> int:
        query = (select(OutboxRow).where(OutboxRow.created_at < as_utc(recorded_before))
                 .order_by(OutboxRow.id).limit(limit))
        if self._engine.dialect.name == "postgresql":
            # Held until the commit below: another process's relay skips these rows. (SQLite
            # has one writer; duplicates there are harmless anyway.)
            query = query.with_for_update(skip_locked=True)
        failure: Exception | None = None
        async with self._session.begin() as s:
            published = []
            for pending in _decoded(await s.scalars(query)):
                try:
                    await publish(pending)
                except Exception as exc:  # any bus error: what was published is still removed
                    failure = exc
                    break
                published.append(pending.id)
            if published:
                await s.execute(delete(OutboxRow).where(OutboxRow.id.in_(published)))
        if failure is not None:
            raise failure
        return len(published)

    async def outbox_backlog(self) -> tuple[int, datetime | None]:
        async with self._session() as s:
            count, oldest = (await s.execute(
                select(func.count(), func.min(OutboxRow.created_at)))).one()
        return int(count), as_utc(oldest) if oldest is not None else None

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self._engine.dispose()


def open_repository(url: str, settings: Settings) -> SqlVideoRepository:
    """Any SQLAlchemy async URL (``sqlite+aiosqlite://``, ``postgresql+asyncpg://``)."""
    return SqlVideoRepository(make_engine(url, bounded=True))
