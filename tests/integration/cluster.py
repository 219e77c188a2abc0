"""The distributed mode as real processes: ``chunkcast api`` and ``chunkcast worker`` processes
on PostgreSQL, Redis and SeaweedFS, the same code as embedded.

:class:`Cluster` starts and restarts the roles (stopped by PID at the end). Its workers can
run on a host of their own (a network namespace: ``worker_prefix``) with settings of their
own (``worker_env``: the addresses they reach the servers at), and its API processes behind a
balancer (``public_url``). :func:`platform_env` and :func:`upgrade_database` are the settings
and the schema every role shares.
"""

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from chunkcast.media.process import die_with_parent
from chunkcast.testing import Server, free_port, run_chunkcast
from tests.servers.netns import Link, Relays, namespace
from tests.servers.netns import relays as run_relays
from tests.servers.nginx import Nginx, deploy, run_nginx
from tests.servers.postgres import PostgresServer, create_database, run_postgres
from tests.servers.redis import RedisServer, run_redis
from tests.servers.seaweedfs import SeaweedServer, run_seaweedfs

STOP_GRACE_S = 15.0
# At the end of a cluster: a role still busy this long after SIGTERM is killed. A graceful
# stop takes about a second; one that takes longer is stuck (a handler blocked on a server a
# fault took away), and nothing is checked of a cluster's end.
TEARDOWN_GRACE_S = 5.0
START_TIMEOUT_S = 30.0


def platform_env(s3: SeaweedServer, bucket: str, database_url: str, bus_url: str,
                 **settings: str) -> dict[str, str]:
    """What every role of one platform shares: its backends, secrets (fresh, random) and
    ``settings`` (``CHUNKCAST_*`` names)."""
    return {
        **s3.env(),
        "CHUNKCAST_DATABASE_URL": database_url,
        "CHUNKCAST_STORAGE_URL": s3.storage_url(bucket),
        "CHUNKCAST_BUS_URL": bus_url,
        "CHUNKCAST_SECRET_KEY": secrets.token_urlsafe(32),
        "CHUNKCAST_ADMIN_TOKEN": secrets.token_urlsafe(16),
        **settings,
    }


def upgrade_database(env: dict[str, str], data_dir: Path) -> None:
    """``chunkcast db upgrade`` with ``env``."""
    upgrade = subprocess.run([sys.executable, "-m", "chunkcast", "db", "upgrade"],
                             env={**os.environ, **env, "CHUNKCAST_DATA_DIR": str(data_dir)},
                             capture_output=True, text=True, timeout=60, check=False)
    assert upgrade.returncode == 0, upgrade.stderr


@contextlib.contextmanager
def run_role(argv: list[str], data_dir: Path, env: dict[str, str], *,
             prefix: tuple[str, ...] = ()) -> Iterator[subprocess.Popen[bytes]]:
    """``[*prefix] python -m chunkcast ARGV`` in a session of its own (so that its ffmpeg
    children go with it), output in ``data_dir/server.log``, dying with this process;
    stopped by PID on exit (SIGTERM, SIGKILL after a grace period)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "server.log").open("ab") as out:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "chunkcast", *argv],
            env={**os.environ, "CHUNKCAST_DATA_DIR": str(data_dir), **env}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stop_together(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every one still running at once, then each waited for (its process group
    killed after :data:`TEARDOWN_GRACE_S`): the processes stop in the time of the slowest,
    not in the sum of their times. Their own ``run_role``/``run_chunkcast`` exits then find
    them stopped."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + TEARDOWN_GRACE_S
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path,
                 timeout_s: float = START_TIMEOUT_S) -> None:
    """Until ``url/healthz`` answers 200; fails with the end of ``log`` if the process
    exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited early:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    """The settings of every role."""
    token: str
    redis: RedisServer | None
    """The bus's Redis (None when the bus is another one)."""
    worker_env: dict[str, str] = field(default_factory=dict)
    """Settings of the workers only, over ``env``."""
    worker_prefix: tuple[str, ...] = ()
    """What workers are started through, e.g. ``ip netns exec NAME``."""
    groups: tuple[str, ...] = ()
    """Each worker's ``--group``s (default: all)."""
    public_url: str | None = None
    """Where clients reach the API processes (a balancer); default: each one's own URL."""
    apis: list[Server] = field(default_factory=list)
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @contextlib.contextmanager
    def running(self) -> Iterator["Cluster"]:
        """The cluster for the block; at its end every process the cluster started is
        stopped at once (:func:`stop_together`), then its :attr:`stack` is closed."""
        with self.stack:
            try:
                yield self
            finally:
                stop_together(reversed(self._procs))

    def _launch_api(self, name: str, port: int) -> tuple[Server, subprocess.Popen[bytes]]:
        url = f"http://127.0.0.1:{port}"
        proc = self.stack.enter_context(run_chunkcast(
            ["api", "--port", str(port)], self.root / name,
            env={**self.env, "CHUNKCAST_PUBLIC_URL": self.public_url or url}))
        self._procs.append(proc)
        return Server(url, self.root / name, self.token, proc.pid,
                      self.root / name / "server.log"), proc

    def start_api(self, name: str, port: int | None = None) -> Server:
        """A new API process (on ``port``, default a free one), added to :attr:`apis` once
        it answers."""
        server, proc = self._launch_api(name, port or free_port())
        wait_healthy(server.url, proc, server.log)
        self.apis.append(server)
        return server

    def start_apis(self, *names: str) -> list[Server]:
        """API processes started side by side (each on a free port), added to :attr:`apis`
        once each answers."""
        launched = [self._launch_api(name, free_port()) for name in names]
        for server, proc in launched:
            wait_healthy(server.url, proc, server.log)
        self.apis.extend(server for server, _ in launched)
        return [server for server, _ in launched]

    def restart_api(self, server: Server) -> Server:
        """A new process in place of ``server`` (dead), on its port and data dir."""
        index = self.apis.index(server)
        self.apis.remove(server)
        replacement = self.start_api(server.data_dir.name, int(server.url.rsplit(":", 1)[1]))
        self.apis.insert(index, self.apis.pop())
        return replacement

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        groups = [arg for group in self.groups for arg in ("--group", group)]
        proc = self.stack.enter_context(run_role(
            ["worker", *groups], self.root / name, {**self.env, **self.worker_env},
            prefix=self.worker_prefix))
        self._procs.append(proc)
        self.workers[name] = proc
        return proc

    def worker_log(self, name: str) -> str:
        return (self.root / name / "server.log").read_text(errors="replace")


# --- the topology of the fault suite -----------------------------------------------------------

@dataclass
class FaultCluster:
    """A cluster whose parts can fail: its own PostgreSQL, Redis and SeaweedFS; two API
    processes behind the nginx balancer (clients go through it); two workers on a host of
    their own (a network namespace) reaching the servers over a veth link, through relays
    that can delay traffic, Redis on an address of its own that can be cut off."""

    cluster: Cluster
    pg: PostgresServer
    redis: RedisServer
    s3: SeaweedServer
    link: Link
    relays: Relays
    redis_address: str
    """The address the workers reach Redis at (what a partition cuts)."""
    lb: Nginx
    ack_timeout_s: float
    _replacements: int = 0

    @property
    def s3_port(self) -> int:
        return int(self.s3.endpoint.rsplit(":", 1)[1])

    @contextlib.contextmanager
    def down(self, port: int) -> Iterator[None]:
        """Around a stop (or restart) of the server on ``port``: the workers' way to it
        refuses connections too, as the server's port does while it is down."""
        with self.relays.refusing(port):
            yield

    @property
    def client(self) -> Server:
        return Server(self.lb.url, self.root, self.cluster.token, self.lb.pid,
                      self.lb.prefix / "logs" / "lb-error.log")

    @property
    def root(self) -> Path:
        return self.cluster.root

    def log_files(self) -> list[Path]:
        return [*(api.log for api in self.cluster.apis),
                *(self.root / name / "server.log" for name in self.cluster.workers),
                self.redis.log, self.pg.dir / "postgres.log", self.lb.prefix / "logs" /
                "lb-error.log"]

    def replace_worker(self, name: str) -> str:
        """A new worker in place of ``name`` (dead); returns the new one's name."""
        self.cluster.workers.pop(name)
        self._replacements += 1
        replacement = f"worker-r{self._replacements}"
        self.cluster.start_worker(replacement)
        return replacement

    def heal(self) -> list[str]:
        """Whatever is down is started again: servers, worker and API processes."""
        found = []
        for server, what in ((self.redis, "Redis"), (self.pg, "PostgreSQL"),
                             (self.s3, "SeaweedFS")):
            if not server.running:
                found.append(f"{what} was stopped")
                server.start()
        self.relays.delay_s = 0.0
        for name, proc in list(self.cluster.workers.items()):
            if proc.poll() is not None:
                found.append(f"{name} had exited ({proc.returncode}): replaced by "
                             f"{self.replace_worker(name)}")
        for api in list(self.cluster.apis):
            try:
                healthy = httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if not healthy:
                found.append(f"{api.data_dir.name} did not answer: restarted")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(api.pid, signal.SIGKILL)
                self.cluster.restart_api(api)
        return found


@contextlib.contextmanager
def fault_cluster(root: Path, **settings: str) -> Iterator[FaultCluster]:
    """A :class:`FaultCluster` with ``settings`` (``CHUNKCAST_*``) on every role. Needs root
    (network namespaces): raises :class:`NetnsUnavailable` otherwise."""
    with contextlib.ExitStack() as stack:
        link = stack.enter_context(namespace())
        # PostgreSQL's dir must be reachable by its OS user; SeaweedFS's short (unix sockets).
        pg = stack.enter_context(run_postgres(Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="chunkcast-pg-")))))
        redis = stack.enter_context(run_redis(root / "redis"))
        s3 = stack.enter_context(run_seaweedfs(Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="chunkcast-weed-")))))
        relays = stack.enter_context(run_relays())
        redis_at, pg_at, s3_at = link.host_addresses[1:4]
        s3_port = int(s3.endpoint.rsplit(":", 1)[1])
        for address, port in ((redis_at, redis.port), (pg_at, pg.port), (s3_at, s3_port)):
            relays.add(address, port)
        env = platform_env(s3, "chunkcast", asyncio.run(create_database(pg)), redis.url,
                           **settings)
        worker_env = {name: env[name].replace("127.0.0.1", address) for name, address in (
            ("CHUNKCAST_BUS_URL", redis_at), ("CHUNKCAST_DATABASE_URL", pg_at),
            ("CHUNKCAST_STORAGE_URL", s3_at))}
        upgrade_database(env, root)
        lb_port = free_port()
        cluster = Cluster(root, env, env["CHUNKCAST_ADMIN_TOKEN"], redis, worker_env=worker_env,
                          worker_prefix=tuple(link.exec_argv([])),
                          public_url=f"http://127.0.0.1:{lb_port}")
        stack.enter_context(cluster.running())
        apis = cluster.start_apis("api-1", "api-2")
        deploy(root / "nginx", [a.url.removeprefix("http://") for a in apis], apis[0].url,
               free_port(), lb_port, {"CHUNKCAST_SECRET_KEY": env["CHUNKCAST_SECRET_KEY"]})
        lb = stack.enter_context(run_nginx(root / "nginx", "lb", lb_port))
        cluster.start_worker("worker-a")
        cluster.start_worker("worker-b")
        yield FaultCluster(cluster, pg, redis, s3, link, relays, redis_at, lb,
                           float(settings.get("CHUNKCAST_ACK_TIMEOUT_SECONDS", 3.0)))
