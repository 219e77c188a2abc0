"""videos, renditions, chunks, chunk jobs and segments

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _video_fk() -> sa.Column[str]:
    return sa.Column("video_id", sa.String(32), sa.ForeignKey("videos.id", ondelete="CASCADE"),
                     primary_key=True)


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("error", sa.Text()),
        sa.Column("duration", sa.Float()),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("fps", sa.Float()),
        sa.Column("has_audio", sa.Boolean()),
        sa.Column("source_size", sa.BigInteger()),
        sa.Column("jobs_total", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "renditions",
        _video_fk(),
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("video_kbps", sa.Integer(), nullable=False),
        sa.Column("audio_kbps", sa.Integer(), nullable=False),
        sa.Column("fps", sa.Float(), nullable=False),
        sa.Column("codecs", sa.String(64)),
    )
    op.create_table(
        "chunks",
        _video_fk(),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("pts_start", sa.Float(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("captured_at", sa.String(32)),
    )
    op.create_table(
        "chunk_jobs",
        _video_fk(),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("worker_group", sa.String(64), primary_key=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "segments",
        _video_fk(),
        sa.Column("rendition", sa.String(16), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("pts_start", sa.Float(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("captured_at", sa.String(32)),
    )


def downgrade() -> None:
    for table in ("segments", "chunk_jobs", "chunks", "renditions", "videos"):
        op.drop_table(table)
