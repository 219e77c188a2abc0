"""A PostgreSQL catalogue that stops answering holds a request for a few seconds at most: the
repository the platform opens bounds connecting and every statement."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from chunkcast.adapters.db.repository import (
    COMMAND_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    make_engine,
    open_repository,
)
from chunkcast.config import load_settings
from tests.servers.postgres import PostgresServer, create_database

# Scheduling and teardown on a loaded machine.
SLACK_S = 3.0


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word: a server that hangs."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_fails_the_ping_within_the_connect_timeout(
    silent_port: int, tmp_path: Path,
) -> None:
    repo = open_repository(f"postgresql+asyncpg://postgres@127.0.0.1:{silent_port}/x",
                           load_settings(data_dir=tmp_path))
    started = time.monotonic()
    try:
        with pytest.raises((TimeoutError, OSError, DBAPIError)):
            await repo.ping()
    finally:
        await repo.close()
    assert time.monotonic() - started < CONNECT_TIMEOUT_S + SLACK_S


async def test_a_statement_that_hangs_is_given_up_after_the_command_timeout(
    postgres: PostgresServer,
) -> None:
    engine = make_engine(await create_database(postgres), bounded=True)
    started = time.monotonic()
    try:
        async with engine.connect() as conn:
            with pytest.raises((TimeoutError, DBAPIError)):
                await conn.execute(text("SELECT pg_sleep(60)"))
    finally:
        await engine.dispose()
    assert time.monotonic() - started < COMMAND_TIMEOUT_S + SLACK_S
