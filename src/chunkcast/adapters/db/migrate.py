"""Apply the Alembic migrations shipped inside the package."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

# Alembic keeps the running migration environment in a process-wide proxy, so two upgrades
# on threads of one process would run on each other's connections (and deadlock on
# PostgreSQL's migration lock). Upgrades of separate processes are serialised by that lock.
_ONE_AT_A_TIME = threading.Lock()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision``. Synchronous; inside a running
    event loop it runs on a thread of its own (the migrations start their own loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _upgrade(database_url, revision)
        return
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_upgrade, database_url, revision).result()


def _upgrade(database_url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    with _ONE_AT_A_TIME:
        command.upgrade(config, revision)
