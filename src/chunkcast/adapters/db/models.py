"""SQLAlchemy table models. The schema itself is created by the Alembic migrations."""

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class VideoRow(Base):
    __tablename__ = "videos"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    duration: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    has_audio: Mapped[bool | None]
    source_size: Mapped[int | None] = mapped_column(BigInteger)
    jobs_total: Mapped[int] = mapped_column(Integer, default=0)
    stream_key_digest: Mapped[str | None] = mapped_column(String(64))
    last_chunk_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    audio_passthrough: Mapped[bool | None]
    private: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RenditionRow(Base):
    __tablename__ = "renditions"

    video_id: Mapped[str] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    video_kbps: Mapped[int] = mapped_column(Integer)
    audio_kbps: Mapped[int] = mapped_column(Integer)
    fps: Mapped[float] = mapped_column(Float)
    codecs: Mapped[str | None] = mapped_column(String(64))


class ChunkRow(Base):
    __tablename__ = "chunks"

    video_id: Mapped[str] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    pts_start: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float)
    captured_at: Mapped[str | None] = mapped_column(String(32))


class ChunkJobRow(Base):
    """One chunk transcoded by one worker group: the unit of progress."""

    __tablename__ = "chunk_jobs"

    video_id: Mapped[str] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_group: Mapped[str] = mapped_column(String(64), primary_key=True)
    done_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SegmentRow(Base):
    __tablename__ = "segments"

    video_id: Mapped[str] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    rendition: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    pts_start: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float)
    captured_at: Mapped[str | None] = mapped_column(String(32))


class OutboxRow(Base):
    """An event recorded in the transaction of the write it announces, until it is on the
    bus. Owner: the repository; rows are deleted once published (by the writer right after
    its commit, or by the relay), so the table holds only what the bus has not taken yet."""

    __tablename__ = "outbox"
    # Ids are never reused (SQLite's AUTOINCREMENT): a writer deleting the row it published
    # cannot hit a newer event that took the id of one the relay deleted meanwhile.
    __table_args__ = {"sqlite_autoincrement": True}

    # BigInteger on PostgreSQL; SQLite autoincrements only an INTEGER primary key.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(32))
    video_id: Mapped[str] = mapped_column(String(32), index=True)
    payload: Mapped[str] = mapped_column(Text)  # events.encode(event)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
