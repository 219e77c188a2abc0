"""Migrations contract: ``chunkcast db upgrade`` builds the schema on every database backend."""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from chunkcast.adapters.db.migrate import upgrade
from chunkcast.adapters.db.repository import make_engine

from .backends import DATABASE_OPENERS

TABLES = {"videos", "renditions", "chunks", "chunk_jobs", "segments", "outbox"}
HEAD = "0004"


@pytest.fixture(params=list(DATABASE_OPENERS))
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a new, empty database of each backend."""
    yield await DATABASE_OPENERS[request.param](request, tmp_path)


def _schema(conn: Connection) -> tuple[set[str], set[str], list[str]]:
    inspector = inspect(conn)
    versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return (set(inspector.get_table_names()),
            {c["name"] for c in inspector.get_columns("videos")}, list(versions))


async def schema(url: str) -> tuple[set[str], set[str], list[str]]:
    """Tables, columns of ``videos`` and the Alembic revision(s) of the database."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_schema)
    finally:
        await engine.dispose()


def db_upgrade(url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHUNKCAST_DATABASE_URL": url, "CHUNKCAST_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "chunkcast", "db", "upgrade"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_db_upgrade_builds_the_schema_and_is_idempotent(
    database_url: str, tmp_path: Path,
) -> None:
    for _ in range(2):
        done = await asyncio.to_thread(db_upgrade, database_url, tmp_path / "data")
        assert done.returncode == 0, done.stderr
        assert "up to date" in done.stderr + done.stdout
    tables, columns, versions = await schema(database_url)
    assert tables >= TABLES
    assert {"source_size", "stream_key_digest", "last_chunk_at", "audio_passthrough", "private",
            "created_at"} <= columns
    assert versions == [HEAD]


async def test_upgrading_an_older_schema_adds_what_is_missing(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url, "0001")
    _, columns, versions = await schema(database_url)
    assert versions == ["0001"] and "stream_key_digest" not in columns
    await asyncio.to_thread(upgrade, database_url)
    _, columns, versions = await schema(database_url)
    assert versions == [HEAD] and "stream_key_digest" in columns


def _outbox_columns(conn: Connection) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns("outbox")}


async def test_upgrading_from_0003_adds_the_outbox_and_keeps_the_videos(
    database_url: str,
) -> None:
    await asyncio.to_thread(upgrade, database_url, "0003")
    tables, _, _ = await schema(database_url)
    assert "outbox" not in tables
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO videos (id, kind, title, status, jobs_total, private, created_at, "
                "updated_at) VALUES ('v1', 'vod', 't', 'uploaded', 0, false, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        await asyncio.to_thread(upgrade, database_url)
        async with engine.connect() as conn:
            assert await conn.run_sync(_outbox_columns) == {
                "id", "topic", "video_id", "payload", "created_at"}
            assert (await conn.execute(text("SELECT status FROM videos"))).scalars().all() == [
                "uploaded"]
    finally:
        await engine.dispose()
    _, _, versions = await schema(database_url)
    assert versions == [HEAD]


async def test_api_processes_upgrading_at_once_all_succeed(
    database_url: str, tmp_path: Path,
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("several processes share one catalogue only on a database server")
    done = await asyncio.gather(*(asyncio.to_thread(db_upgrade, database_url, tmp_path / "data")
                                  for _ in range(3)))
    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr for d in done]
    tables, _, versions = await schema(database_url)
    assert tables >= TABLES and versions == [HEAD]


async def test_upgrades_on_threads_of_one_process_do_not_collide(database_url: str) -> None:
    await asyncio.gather(*(asyncio.to_thread(upgrade, database_url) for _ in range(2)))
    _, _, versions = await schema(database_url)
    assert versions == [HEAD]
