"""The faults of the fault suite (and of ``bench/faults.py``): each one is done to a running
platform while a stream and an upload go on (:func:`~tests.integration.fault_support.run_live`)
and returns when it started, when it was over and how long its component was unavailable.

Distributed ones take a :class:`~tests.integration.cluster.FaultCluster`; the embedded one an
:class:`Embedded` platform. Stops last :attr:`LiveRun.outage_s`; restarts and kills last as
long as the component takes to come back.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import redis

from chunkcast.testing import Server, free_port, run_chunkcast
from tests.integration.cluster import FaultCluster
from tests.integration.fault_support import Fault, LiveRun

# Every role of the platforms under faults: 1 s chunks, the smallest ladder, a short ack
# timeout (a dead worker's chunk goes to another after it), small VOD chunks (an upload is
# spread over both workers).
SETTINGS = {
    "CHUNKCAST_LADDER_GROUPS": "all=240p",
    "CHUNKCAST_X264_PRESET": "ultrafast",
    "CHUNKCAST_ACK_TIMEOUT_SECONDS": "3",
    "CHUNKCAST_VOD_CHUNK_SECONDS": "2",
}
DELAY_S = 0.2  # added to every round trip between the workers and the servers
HOLD_WAIT_S = 30.0  # how long to look for a worker holding a chunk
CHUNKS_STREAM = "chunkcast:chunks"  # the Redis bus's stream of the chunks topic

Scenario = Callable[[FaultCluster, LiveRun], Fault]


def no_fault(run: LiveRun) -> Fault:
    """The baseline: nothing happens."""
    now = time.time()
    return Fault(now, now, 0.0)


def _down_for(stop: Callable[[], None], start: Callable[[], None], outage_s: float) -> Fault:
    started = time.time()
    stop()
    time.sleep(outage_s)  # the outage itself
    start()
    return Fault(started, time.time())


def seaweedfs_stopped(c: FaultCluster, run: LiveRun) -> Fault:
    return _down_for(c.s3.stop, c.s3.start, run.outage_s)


def postgres_restarted(c: FaultCluster, run: LiveRun) -> Fault:
    started = time.time()
    c.pg.restart()
    return Fault(started, time.time())


def postgres_stopped(c: FaultCluster, run: LiveRun) -> Fault:
    return _down_for(c.pg.stop, c.pg.start, run.outage_s)


def redis_restarted(c: FaultCluster, run: LiveRun) -> Fault:
    started = time.time()
    c.redis.restart()
    return Fault(started, time.time())


def redis_stopped(c: FaultCluster, run: LiveRun) -> Fault:
    return _down_for(c.redis.stop, c.redis.start, run.outage_s)


def _held_chunks(c: FaultCluster, pid: int) -> list[str]:
    """The chunk events the worker process ``pid`` has in hand (its consumers are named
    ``{host}-{pid}-{slot}``): entries of the groups' pending lists."""
    prefix = f"{socket.gethostname()}-{pid}-"
    client = redis.Redis.from_url(c.redis.url, decode_responses=True)
    try:
        held = []
        for group in client.xinfo_groups(CHUNKS_STREAM):
            for entry in client.xpending_range(CHUNKS_STREAM, group["name"], min="-",
                                               max="+", count=1000):
                if str(entry["consumer"]).startswith(prefix):
                    held.append(f"{group['name']}/{entry['message_id']!s}")
        return held
    finally:
        client.close()


def _stop_a_worker_holding_a_chunk(c: FaultCluster) -> tuple[str, list[str]]:
    """A worker frozen (SIGSTOP) while it holds a chunk, and what it holds: a worker is
    frozen, asked about, and let go again until one holds something."""
    deadline = time.monotonic() + HOLD_WAIT_S
    while time.monotonic() < deadline:
        for name, proc in c.cluster.workers.items():
            os.kill(proc.pid, signal.SIGSTOP)
            if held := _held_chunks(c, proc.pid):
                return name, held
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.05)  # let them work a little before looking again
    raise AssertionError(f"no worker held a chunk within {HOLD_WAIT_S:.0f} s")


def worker_killed(c: FaultCluster, run: LiveRun) -> Fault:
    """``kill -9`` of a worker holding a chunk. By design the bus hands a dead worker's
    chunks to another after the ack timeout: that is this fault's outage."""
    name, held = _stop_a_worker_holding_a_chunk(c)
    started = time.time()
    os.killpg(c.cluster.workers[name].pid, signal.SIGKILL)
    run.notes.append(f"{name} was killed holding {len(held)} chunk(s): {held}")
    return Fault(started, started + c.ack_timeout_s, c.ack_timeout_s)


def _viewers_on(api: Server, stream_id: str) -> int:
    count: int = httpx.get(f"{api.url}/api/v1/streams/{stream_id}", timeout=10
                           ).json()["viewers"]
    return count


def api_killed(c: FaultCluster, run: LiveRun) -> Fault:
    """``kill -9`` of the API process with the most viewers (reached through the balancer);
    the other one stays up, so nothing is unavailable for long."""
    counts = {api.url: _viewers_on(api, run.stream["id"]) for api in c.cluster.apis}
    victim = max(c.cluster.apis, key=lambda api: counts[api.url])
    assert counts[victim.url] >= 1, f"no viewer on any API process: {counts}"
    started = time.time()
    os.killpg(victim.pid, signal.SIGKILL)
    run.notes.append(f"{victim.data_dir.name} was killed with {counts[victim.url]} of "
                     f"{len(run.viewers)} viewers on it")
    return Fault(started, started, 0.0)


def broadcaster_restarted(run: LiveRun) -> Fault:
    """``kill -9`` of the broadcaster, and the same command started again at once."""
    started = time.time()
    run.broadcaster.kill()
    run.broadcaster.start()
    return Fault(started, time.time())


def workers_partitioned(c: FaultCluster, run: LiveRun) -> Fault:
    """What the workers send to Redis is dropped, silently, for the outage."""
    started = time.time()
    with c.link.partition(c.redis_address):
        time.sleep(run.outage_s)  # the partition itself
    return Fault(started, time.time())


def workers_delayed(c: FaultCluster, run: LiveRun) -> Fault:
    """:data:`DELAY_S` more on every round trip between the workers and every server, for
    the outage. Nothing is unavailable."""
    started = time.time()
    c.relays.delay_s = DELAY_S / 2  # each way
    try:
        time.sleep(run.outage_s)  # the delayed period
    finally:
        c.relays.delay_s = 0.0
    return Fault(started, time.time(), 0.0)


DISTRIBUTED: dict[str, Scenario] = {
    "workers-delayed": workers_delayed,
    "workers-partitioned": workers_partitioned,
    "seaweedfs-stopped": seaweedfs_stopped,
    "postgres-restarted": postgres_restarted,
    "postgres-stopped": postgres_stopped,
    "redis-restarted": redis_restarted,
    "redis-stopped": redis_stopped,
    "worker-killed": worker_killed,
    "api-killed": api_killed,
    "broadcaster-restarted": lambda c, run: broadcaster_restarted(run),
}


class Embedded:
    """``chunkcast up`` on a port and data dir of its own that stay the same when it is
    killed (``kill -9`` of its process group: ffmpeg children too) and started again."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self._data = root / "data"
        self._port = free_port()
        self._url = f"http://127.0.0.1:{self._port}"
        self._env = {**env, "CHUNKCAST_PUBLIC_URL": self._url}
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def client(self) -> Server:
        assert self._proc is not None
        return Server(self._url, self._data, (self._data / "admin-token").read_text().strip(),
                      self._proc.pid, self._data / "server.log")

    def start(self) -> None:
        """Start it and wait until it answers."""
        self._proc = self._stack.enter_context(run_chunkcast(
            ["up", "--port", str(self._port)], self._data, env=self._env,
            health_url=f"{self._url}/healthz"))

    def kill(self) -> None:
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()

    def log_files(self) -> list[Path]:
        return [self._data / "server.log"]

    def heal(self) -> list[str]:
        if self._proc is not None and self._proc.poll() is None:
            return []
        code = None if self._proc is None else self._proc.returncode
        self.start()
        return [f"the server had exited ({code})"]

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def embedded(root: Path, **settings: str) -> Iterator[Embedded]:
    platform = Embedded(root, settings)
    try:
        platform.start()
        yield platform
    finally:
        platform.close()


def embedded_killed(platform: Embedded, run: LiveRun) -> Fault:
    """The whole process killed (``kill -9``) mid-stream and mid-upload, and started again on
    the same data dir and port; the outage lasts until it answers again."""
    started = time.time()
    platform.kill()
    platform.start()
    return Fault(started, time.time())
