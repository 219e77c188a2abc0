"""Fixtures of the in-process service tests: a world per test, on a catalogue copied from
one migrated once per session."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chunkcast.adapters.db.migrate import upgrade

from .world import ALL, Clock, Limits, World, copy_database


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "catalogue.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


class WorldFactory:
    """Builds and starts worlds; they are closed with the test."""

    def __init__(self, template: Path, tmp_path: Path) -> None:
        self._template = template
        self._tmp = tmp_path
        self.made: list[World] = []

    async def __call__(self, *, groups: dict[str, tuple[str, ...]] | None = None,
                       limits: Limits | None = None, clock: Clock | None = None) -> World:
        root = self._tmp / f"world{len(self.made)}"
        world = World(root, copy_database(self._template, root / "db"),
                      groups=dict(groups or ALL), limits=limits or Limits(),
                      clock=clock or Clock())
        self.made.append(world)
        await world.start()
        return world


@pytest.fixture
async def make_world(migrated_db: Path, tmp_path: Path) -> AsyncIterator[WorldFactory]:
    factory = WorldFactory(migrated_db, tmp_path)
    yield factory
    for world in factory.made:
        await world.close()


@pytest.fixture
async def world(make_world: WorldFactory) -> World:
    """A world with the default settings: one rendition group with every rung."""
    return await make_world()
