"""Every backend the contract suites run on, by id: adding a backend is adding an opener.

An opener gets the pytest request (to pull in a server fixture with
``request.getfixturevalue``) and the test's temp dir, and must give a backend with no
objects, topics or groups in it.
"""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import uuid4

import pytest

from chunkcast.adapters.bus.kafka import KafkaBus
from chunkcast.adapters.bus.memory import MemoryBus
from chunkcast.adapters.bus.redis import RedisBus
from chunkcast.adapters.db.migrate import upgrade
from chunkcast.adapters.db.repository import SqlVideoRepository, make_engine
from chunkcast.adapters.storage import s3
from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.config import load_settings
from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import VideoRepository
from chunkcast.ports.storage import ObjectStore
from tests.servers.kafka import KafkaServer
from tests.servers.postgres import PostgresServer, create_database
from tests.servers.redis import RedisServer
from tests.servers.seaweedfs import SeaweedServer, drop_bucket, new_bucket_name

# Short, so that redelivery after a missed ack is tested in well under a second.
ACK_TIMEOUT_S = 0.3
# Retention limits far below what the suites publish, so that every test runs with the
# buses forgetting as eagerly as they may: the memory journal is rewritten after a few dead
# lines, a Redis stream without groups keeps a few entries, and every read of a group trims
# its stream and looks for dead consumers.
SMALL_COMPACT_AFTER_LINES = 8
SMALL_MAX_LEN = 20
# Tansu completes a group's join after about the session timeout; a real Kafka refuses less
# than its group.min.session.timeout.ms (6 s by default).
KAFKA_SESSION_TIMEOUT_MS = 1_000
KAFKA_PARTITIONS = 3

BusFactory = Callable[[], Awaitable[EventBus]]
"""Opens a bus on one test's durable state; calling it again after ``close`` is a restart."""

StoreOpener = Callable[[pytest.FixtureRequest, Path], Awaitable[ObjectStore]]
BusOpener = Callable[[pytest.FixtureRequest, Path], BusFactory]
RepoOpener = Callable[[pytest.FixtureRequest, Path], Awaitable[VideoRepository]]


async def _local_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return LocalObjectStore(tmp_path / "objects", b"contract-secret", "http://127.0.0.1:8000")


async def _s3_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh bucket on the session's SeaweedFS, opened from its URL as a deployment
    would (keys from AWS_* variables, set for this test only); dropped afterwards."""
    server: SeaweedServer = request.getfixturevalue("seaweedfs")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    bucket = new_bucket_name("contract")
    store = s3.open_store(server.storage_url(bucket), load_settings(data_dir=tmp_path))
    await store.ensure_bucket()
    request.addfinalizer(lambda: drop_bucket(server, bucket))
    return store


def _memory_bus(request: pytest.FixtureRequest, tmp_path: Path) -> BusFactory:
    journal = tmp_path / "bus.journal"

    async def open_bus() -> EventBus:
        return MemoryBus(journal, ack_timeout_s=ACK_TIMEOUT_S,
                         compact_after_lines=SMALL_COMPACT_AFTER_LINES)

    return open_bus


def _redis_bus(request: pytest.FixtureRequest, tmp_path: Path) -> BusFactory:
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"test-{uuid4().hex}"  # one Redis for the session, a namespace per test

    async def open_bus() -> EventBus:
        return RedisBus(server.url, prefix=prefix, ack_timeout_s=ACK_TIMEOUT_S,
                        max_len=SMALL_MAX_LEN, maintain_every_s=0)

    return open_bus


def _kafka_bus(request: pytest.FixtureRequest, tmp_path: Path) -> BusFactory:
    server: KafkaServer = request.getfixturevalue("kafka_server")
    prefix = f"test-{uuid4().hex}"  # one broker for the session, topics and groups per test

    async def open_bus() -> EventBus:
        return KafkaBus(server.brokers, prefix=prefix, partitions=KAFKA_PARTITIONS,
                        ack_timeout_s=ACK_TIMEOUT_S,
                        session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS)

    return open_bus


STORE_OPENERS: dict[str, StoreOpener] = {"local": _local_store, "s3": _s3_store}
BUS_OPENERS: dict[str, BusOpener] = {
    "memory": _memory_bus, "redis": _redis_bus, "kafka": _kafka_bus}
# What a backend does beyond the port's promises, for the tests that check it.
# total_order: one topic's events reach a group in publish order across videos (Kafka
# orders only within a partition, so only a video's own events keep their order).
BUS_CAPABILITIES: dict[str, frozenset[str]] = {
    "memory": frozenset({"total_order"}), "redis": frozenset({"total_order"}),
    "kafka": frozenset()}


DatabaseOpener = Callable[[pytest.FixtureRequest, Path], Awaitable[str]]
"""Gives the URL of a new, empty database (no tables, not even Alembic's)."""


async def _sqlite_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/catalogue.db"


async def _postgres_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    server: PostgresServer = request.getfixturevalue("postgres")
    return await create_database(server)


DATABASE_OPENERS: dict[str, DatabaseOpener] = {
    "sqlite": _sqlite_database, "postgres": _postgres_database,
}


def _migrated_repo(new_database: DatabaseOpener) -> RepoOpener:
    """A repository on a new database brought to the head revision by the Alembic
    migrations, as ``chunkcast db upgrade`` does."""

    async def open_repo(request: pytest.FixtureRequest, tmp_path: Path) -> VideoRepository:
        url = await new_database(request, tmp_path)
        await asyncio.to_thread(upgrade, url)
        return SqlVideoRepository(make_engine(url))

    return open_repo


REPO_OPENERS: dict[str, RepoOpener] = {
    name: _migrated_repo(opener) for name, opener in DATABASE_OPENERS.items()
}
