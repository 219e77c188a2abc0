"""Contract fixtures: one per port, parametrized over every backend in :mod:`.backends`."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import VideoRepository
from chunkcast.ports.storage import ObjectStore

from .backends import BUS_CAPABILITIES, BUS_OPENERS, REPO_OPENERS, STORE_OPENERS, BusFactory


@pytest.fixture(params=list(STORE_OPENERS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """An empty object store of each backend."""
    opened = await STORE_OPENERS[request.param](request, tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(params=list(REPO_OPENERS))
async def repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VideoRepository]:
    """An empty, migrated catalogue of each backend."""
    opened = await REPO_OPENERS[request.param](request, tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(params=list(BUS_OPENERS))
async def bus_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BusFactory]:
    """Opens buses of each backend, all on the same durable state, and closes them at the
    end (so ``close`` must be idempotent: tests close a bus themselves to restart it)."""
    open_bus = BUS_OPENERS[request.param](request, tmp_path)
    opened: list[EventBus] = []

    async def tracked() -> EventBus:
        bus = await open_bus()
        opened.append(bus)
        return bus

    try:
        yield tracked
    finally:
        for bus in opened:
            await bus.close()


@pytest.fixture
async def bus(bus_factory: BusFactory) -> EventBus:
    """One open bus of each backend."""
    return await bus_factory()


@pytest.fixture
def total_order(request: pytest.FixtureRequest) -> bool:
    """Whether the bus under test delivers one topic's events in publish order across
    videos (capability ``total_order`` in :data:`.backends.BUS_CAPABILITIES`)."""
    backend = request.node.callspec.params["bus_factory"]
    return "total_order" in BUS_CAPABILITIES[backend]
