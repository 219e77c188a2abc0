"""live streams: stream key digest, time of the last chunk, audio passthrough

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("stream_key_digest", sa.String(64)))
        batch.add_column(sa.Column("last_chunk_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("audio_passthrough", sa.Boolean()))


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("audio_passthrough")
        batch.drop_column("last_chunk_at")
        batch.drop_column("stream_key_digest")
