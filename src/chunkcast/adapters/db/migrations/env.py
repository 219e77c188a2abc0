"""Alembic environment: runs the migrations on the async engine of the configured URL."""

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from chunkcast.adapters.db.models import Base
from chunkcast.adapters.db.repository import make_engine

# Any fixed number: the PostgreSQL advisory lock that serialises concurrent upgrades.
_LOCK_KEY = 0x63686B63


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Every `chunkcast api` upgrades at start: the first to get the lock migrates,
            # the others wait for its commit and then find nothing left to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        context.run_migrations()


async def _main() -> None:
    engine = make_engine(context.config.attributes["database_url"])
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


asyncio.run(_main())
