"""Fixtures of the unit suite."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chunkcast.adapters.db.migrate import upgrade
from chunkcast.adapters.db.repository import SqlVideoRepository, make_engine


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SqlVideoRepository]:
    """A migrated SQLite catalogue of the test's own."""
    url = f"sqlite+aiosqlite:///{tmp_path}/catalogue.db"
    upgrade(url)
    repository = SqlVideoRepository(make_engine(url))
    yield repository
    await repository.close()
