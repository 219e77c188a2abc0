"""A throwaway ``redis-server`` (AOF on, fsync on every write) for tests.

The server is a child process on a free port on 127.0.0.1 with its data in a temp dir;
it is stopped by PID. ``stop`` and ``start``, or ``restart``, bring it back on the same port
and dir: with every write in the append-only file before it is acknowledged, that is how the
Redis bus is shown to lose nothing when Redis itself goes down.
"""

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chunkcast.testing import free_port

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def _redis_server_binary() -> str:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(found):
        raise RuntimeError("redis-server not found: apt-get install -y redis-server")
    return found


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a hook that has the child killed when the test process dies, so a run
    killed before its teardown leaves no server behind. Resolved here: a ``preexec_fn``
    must not load libraries."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name or not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    set_pdeathsig = 1  # PR_SET_PDEATHSIG

    def hook() -> None:
        prctl(set_pdeathsig, signal.SIGTERM)

    return hook


def _answers_ping(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


@dataclass
class RedisServer:
    """A running ``redis-server``; ``pid`` changes when it is restarted."""

    port: int
    dir: Path
    host: str = "127.0.0.1"
    """The address it listens on."""
    prefix: tuple[str, ...] = ()
    """What it is started through (e.g. ``ip netns exec NAME``: a host of its own)."""
    url: str = field(init=False)
    pid: int = field(init=False, default=0)
    _process: subprocess.Popen[bytes] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.url = f"redis://{self.host}:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        argv = [*self.prefix, _redis_server_binary(), "--port", str(self.port), "--bind",
                self.host, "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync",
                "always", "--save", "", "--daemonize", "no",
                # Without a password, Redis answers only loopback clients unless told: the
                # hosts' network is the test's own.
                "--protected-mode", "yes" if self.host == "127.0.0.1" else "no"]
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, preexec_fn=_die_with_parent())
        self._process, self.pid = process, process.pid
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers_ping(self.port, self.host):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.02)

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM (then SIGKILL after a grace period); ``crash`` sends SIGKILL at once."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL if crash else signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def restart(self, *, crash: bool = False) -> None:
        """Stop the server (killed outright when ``crash``) and start it again on the same
        port and dir: what it had written to its append-only file is back."""
        self.stop(crash=crash)
        self.start()


@contextlib.contextmanager
def run_redis(dir: Path, *, host: str = "127.0.0.1", prefix: tuple[str, ...] = ()
              ) -> Iterator[RedisServer]:
    """A ``redis-server`` with its data in ``dir``, on a free port of ``host``, started
    through ``prefix`` (e.g. on a host of its own); stopped on exit."""
    server = RedisServer(free_port(), dir, host, prefix)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the session; tests keep apart by key prefix."""
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server
