"""Every backend the contract suites run on, by id: adding a backend is adding an opener.

An opener gets the pytest request (to pull in a server fixture with
``request.getfixturevalue``) and the test's temp dir, and must give a backend with no
objects, topics or groups in it.
"""

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from chunkcast.adapters.bus.memory import MemoryBus
from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.ports.bus import EventBus
from chunkcast.ports.storage import ObjectStore

# Short, so that redelivery after a missed ack is tested in well under a second.
ACK_TIMEOUT_S = 0.3

BusFactory = Callable[[], Awaitable[EventBus]]
"""Opens a bus on one test's durable state; calling it again after ``close`` is a restart."""

StoreOpener = Callable[[pytest.FixtureRequest, Path], Awaitable[ObjectStore]]
BusOpener = Callable[[pytest.FixtureRequest, Path], BusFactory]


async def _local_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return LocalObjectStore(tmp_path / "objects", b"contract-secret", "http://127.0.0.1:8000")


def _memory_bus(request: pytest.FixtureRequest, tmp_path: Path) -> BusFactory:
    journal = tmp_path / "bus.journal"

    async def open_bus() -> EventBus:
        return MemoryBus(journal, ack_timeout_s=ACK_TIMEOUT_S)

    return open_bus


STORE_OPENERS: dict[str, StoreOpener] = {"local": _local_store}
BUS_OPENERS: dict[str, BusOpener] = {"memory": _memory_bus}
