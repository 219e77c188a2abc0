"""outbox: events recorded with the write they announce, until they are published

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        # Ids only grow and are never reused (AUTOINCREMENT on SQLite): they order the
        # events, and a writer deletes the row it published by its id.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("topic", sa.String(32), nullable=False),
        # Not a foreign key: an event may outlive its video (a deleted video's last status).
        sa.Column("video_id", sa.String(32), nullable=False, index=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("outbox")
