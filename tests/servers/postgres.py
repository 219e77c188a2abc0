"""A throwaway PostgreSQL cluster for tests: initdb in a temp dir, a free port on 127.0.0.1,
stopped by PID at the end. One cluster per session; each test gets a database of its own.
Fault tests stop and start a cluster of their own (same data dir, same port)."""

import contextlib
import os
import pwd
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from chunkcast.testing import free_port

BIN = Path(os.environ.get("CHUNKCAST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"  # initdb and pg_ctl refuse to run as root


@dataclass
class PostgresServer:
    """A running cluster. :meth:`stop`, :meth:`start` and :meth:`restart` keep its data dir
    and port (what fault tests need); ``pid`` is 0 while it is stopped."""

    url: str
    """``postgresql+asyncpg://postgres@HOST:P/postgres`` (trust auth, no password)."""
    port: int
    pid: int
    data_dir: Path
    start_seconds: float
    """How long initdb + start took, for the record."""
    host: str = "127.0.0.1"
    """The address it listens on."""
    prefix: tuple[str, ...] = ()
    """What it is started through (e.g. ``ip netns exec NAME``: a host of its own)."""

    @property
    def dir(self) -> Path:
        """The cluster's own dir: its data dir, socket and log are in it."""
        return self.data_dir.parent

    @property
    def running(self) -> bool:
        return self.pid != 0

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` on this server."""
        return f"postgresql+asyncpg://postgres@{self.host}:{self.port}/{name}"

    def stop(self, *, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE`` (``fast``: clients are disconnected, a clean shutdown;
        ``immediate``: as if the machine lost power)."""
        if self.pid:
            _stop(self.data_dir, self.pid, mode=mode)
            self.pid = 0

    def start(self) -> None:
        """Start the stopped cluster again on the same port."""
        if not self.pid:
            _start(self.data_dir, self.dir, self.dir / "postgres.log", port=self.port,
                   host=self.host, prefix=self.prefix)
            self.pid = _postmaster_pid(self.data_dir)

    def restart(self, *, mode: str = "fast") -> None:
        self.stop(mode=mode)
        self.start()


def _as_owner(argv: list[str]) -> list[str]:
    """Run as the postgres OS user when we are root (the server will not run as root)."""
    return ["runuser", "-u", OS_USER, "--", *argv] if os.geteuid() == 0 else argv


def _give_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(OS_USER)
        os.chown(path, user.pw_uid, user.pw_gid)


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(_as_owner(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _postmaster_pid(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().split("\n", 1)[0])


def _stop(data: Path, pid: int, *, mode: str = "immediate") -> None:
    """``pg_ctl stop -m MODE``; the PID is killed if that did not end it."""
    stopped = subprocess.run(_as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-m", mode,
                                        "-w", "-t", "10", "stop"]), capture_output=True,
                             check=False)
    if stopped.returncode != 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _start(data: Path, dir: Path, log: Path, *, port: int | None = None,
           host: str = "127.0.0.1", prefix: tuple[str, ...] = ()) -> int:
    """Start the cluster on ``host:port`` (default: a free port) through ``prefix`` and
    return the port; a free port taken between choosing it and binding it is retried with
    another."""
    for candidate in [port] if port else [free_port() for _ in range(3)]:
        # -l keeps the server's output away from our pipes; the socket lives in ``dir`` too.
        options = f"-p {candidate} -k {dir} -c listen_addresses={host} -c fsync=off"
        argv = _as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t",
                          "30", "-o", options, "start"])
        started = subprocess.run([*prefix, *argv], capture_output=True, check=False)
        if started.returncode == 0:
            return candidate
    raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def run_postgres(dir: Path, *, host: str = "127.0.0.1", prefix: tuple[str, ...] = ()
                 ) -> Iterator[PostgresServer]:
    """Initialise and start a cluster under ``dir`` (which the postgres OS user must be able
    to reach: when running as root, ``dir`` is handed over to it), listening on ``host``,
    started through ``prefix`` (e.g. on a host of its own). Stopped on exit."""
    if not (BIN / "pg_ctl").exists():
        raise RuntimeError(f"PostgreSQL not found in {BIN}: apt-get install -y postgresql")
    dir.mkdir(parents=True, exist_ok=True)
    _give_to_owner(dir)
    data, log = dir / "data", dir / "postgres.log"
    started = time.monotonic()
    _run([str(BIN / "initdb"), "-D", str(data), "-U", OS_USER, "--auth=trust",
          "--encoding=UTF8", "--locale=C", "--no-sync"], "initdb")
    if host != "127.0.0.1":  # initdb trusts loopback clients only; these are its neighbours
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all samenet trust\n")
    port = _start(data, dir, log, host=host, prefix=prefix)
    pid = _postmaster_pid(data)
    elapsed = time.monotonic() - started
    server = PostgresServer(f"postgresql+asyncpg://postgres@{host}:{port}/postgres", port,
                            pid, data, elapsed, host, prefix)
    try:
        yield server
    finally:
        server.stop(mode="immediate")


async def create_database(server: PostgresServer) -> str:
    """A new, empty database on ``server``; returns its URL."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(host=server.host, port=server.port, user="postgres",
                                 database="postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.database_url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session. Its temp dir is made outside pytest's own
    (which is private to the user running the tests) so the postgres OS user can reach it."""
    with tempfile.TemporaryDirectory(prefix="chunkcast-pg-") as tmp, \
            run_postgres(Path(tmp)) as server:
        yield server
