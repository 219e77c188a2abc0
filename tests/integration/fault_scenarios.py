"""Runs under faults and the faults themselves, for the fault suite and ``bench/faults.py``.

:func:`run_live` runs one stream under one fault on a :class:`Platform`; a fault is done to
the running platform while the stream and an upload go on (``inject(run) -> Fault``) and says
when it started, when it was over and how long its component was unavailable. Distributed
faults take a :class:`~tests.integration.cluster.FaultCluster` (:data:`DISTRIBUTED`); the
embedded one an :class:`Embedded` platform. Stops last :attr:`LiveRun.outage_s`; restarts
and kills last as long as the component takes to come back.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import redis

from chunkcast.testing import Server, free_port, run_chunkcast
from tests.integration.api import admin, create, put
from tests.integration.cluster import FaultCluster
from tests.integration.fault_support import (
    FINAL,
    Broadcaster,
    Fault,
    Outcome,
    Recorder,
    errors_since,
    log_marks,
    measure,
    replay_entries,
)
from tests.integration.live_support import (
    create_stream,
    viewers_served,
    wait_for_renditions,
    ws_url,
)

# Every role of the platforms under faults: 1 s chunks, the smallest ladder, a short ack
# timeout (a dead worker's chunk goes to another after it), small VOD chunks (an upload is
# spread over both workers).
SETTINGS = {
    "CHUNKCAST_LADDER_GROUPS": "all=240p",
    "CHUNKCAST_X264_PRESET": "ultrafast",
    "CHUNKCAST_ACK_TIMEOUT_SECONDS": "3",
    "CHUNKCAST_VOD_CHUNK_SECONDS": "2",
}
BEFORE_SEGMENTS = 2  # segments every viewer has before the fault
AFTER_S = 3.0  # seconds of stream captured after the fault that viewers get before the end
# How long each step may take before the run goes on without it (and the outcome says what
# was missed); together well within pytest's 300 s per test.
WAIT_S = 40.0
UPLOAD_WAIT_S = 60.0
# Added to every round trip between the workers and the servers (CHUNKCAST_FAULT_DELAY_S):
# 20 ms in the suite, servers in a neighbouring zone; bench/faults.py uses 50 ms. Outside
# ffmpeg, the live path of one chunk makes about 30 sequential round trips (catalogue
# sessions, bus, storage): at 50 ms a chunk reaches viewers ~1.5 s later than without the
# delay (a 2.7 s stall, within the target); at 200 ms four slots fall behind 1 s chunks
# (a 6.9 s stall: bench/faults.py --only workers-delayed --delay 0.2).
DELAY_S = float(os.environ.get("CHUNKCAST_FAULT_DELAY_S", "0.02"))
HOLD_WAIT_S = 30.0  # how long to look for a worker holding a chunk
CHUNKS_STREAM = "chunkcast:chunks"  # the Redis bus's stream of the chunks topic

# --- a run ----------------------------------------------------------------------------------

class Platform(Protocol):
    """What a run talks to."""

    @property
    def client(self) -> Server:
        """Where clients (broadcaster, viewers, uploader) reach the API."""

    @property
    def root(self) -> Path: ...

    def log_files(self) -> list[Path]: ...

    def heal(self) -> list[str]:
        """Bring back whatever is down; say what was."""


@dataclass
class LiveRun:
    """A run as a scenario sees it when it injects its fault."""

    platform: Platform
    stream: dict[str, Any]
    broadcaster: Broadcaster
    viewers: list[Recorder]
    outage_s: float
    notes: list[str] = field(default_factory=list)


Inject = Callable[[LiveRun], Fault]


def _start_upload(client: Server, source: Path) -> str:
    with admin(client) as http:
        created = create(http, "upload under a fault")
        assert put(created, source.read_bytes()).status_code == 200
        response = http.post(f"/api/v1/videos/{created['id']}/complete")
        assert response.status_code == 202, response.text
        return str(created["id"])


def _video_status(client: Server, video_id: str) -> str:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError), admin(client) as http:
        return str(http.get(f"/api/v1/videos/{video_id}").json()["status"])
    return "unknown (no answer)"


def _wait_video(client: Server, video_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := _video_status(client, video_id)) not in FINAL:
        if time.monotonic() > deadline:
            return f"{status} after {timeout_s:.0f} s"
        time.sleep(0.2)
    return status


def _stream_status(client: Server, stream_id: str) -> str:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        return str(httpx.get(f"{client.url}/api/v1/streams/{stream_id}", timeout=10
                             ).json()["status"])
    return "unknown (no answer)"


def _end_stream(client: Server, stream_id: str) -> None:
    with contextlib.suppress(httpx.HTTPError), admin(client) as http:
        http.post(f"/api/v1/streams/{stream_id}/end")


def run_live(platform: Platform, name: str, clip: Path, source: Path, inject: Inject, *,
             outage_s: float, viewers: int = 2) -> Outcome:
    """One stream under one fault: a stream broadcast in 1 s chunks from ``clip`` (looped),
    ``viewers`` recording what they are sent, ``source`` uploaded just before the fault, the
    fault, :data:`AFTER_S` of stream after it, the end of the stream; what was delivered."""
    client = platform.client
    marks = log_marks(platform.log_files())
    stream = create_stream(client)
    broadcaster = Broadcaster(client, stream, clip, platform.root / "runs" / name)
    recorders: list[Recorder] = []
    broadcaster.start()
    try:
        rendition = wait_for_renditions(client, stream["id"], timeout_s=WAIT_S)[0]
        recorders += [Recorder(ws_url(client, stream["id"], rendition))
                      for _ in range(viewers)]
        deadline = time.monotonic() + WAIT_S
        for recorder in recorders:
            assert recorder.wait(lambda r: len(r.segments()) >= BEFORE_SEGMENTS,
                                 deadline - time.monotonic()), \
                f"a viewer got no segment before the fault: {recorder.drops}"
        upload_id = _start_upload(client, source)
        run = LiveRun(platform, stream, broadcaster, recorders, outage_s)
        upload_before = _video_status(client, upload_id)
        fault = inject(run)

        def recovered(r: Recorder) -> bool:
            return any(a.captured_at is not None and a.captured_at >= fault.ended + AFTER_S
                       for a in r.arrivals if a.kind == "segment") or r.ended

        deadline = time.monotonic() + AFTER_S + WAIT_S
        for recorder in recorders:
            recorder.wait(recovered, deadline - time.monotonic())
        stream_status = _stream_status(client, stream["id"])
        stopped_at = time.time()
        exit_code = broadcaster.stop()
        if _stream_status(client, stream["id"]) not in FINAL:
            _end_stream(client, stream["id"])  # the broadcaster could not: the replay must end
        deadline = time.monotonic() + WAIT_S
        for recorder in recorders:
            recorder.wait(lambda r: r.ended, deadline - time.monotonic())
        upload_status = _wait_video(client, upload_id, UPLOAD_WAIT_S)
        replay = replay_entries(client, stream["id"], rendition)
    finally:
        broadcaster.kill()
        for recorder in recorders:
            recorder.close()
    notes = run.notes + [f"found afterwards: {n}" for n in platform.heal()]
    return measure(name, fault, recorders, broadcaster, replay, stopped_at=stopped_at,
                   stream_status=stream_status, upload_before=upload_before,
                   upload_status=upload_status, broadcaster_exit=exit_code, notes=notes,
                   errors=errors_since(marks))


# --- the faults -------------------------------------------------------------------------------

Scenario = Callable[[FaultCluster, LiveRun], Fault]


def no_fault(run: LiveRun) -> Fault:
    """The baseline: nothing happens."""
    now = time.time()
    return Fault(now, now, 0.0)


def _down_for(c: FaultCluster, port: int, stop: Callable[[], None],
              start: Callable[[], None], outage_s: float) -> Fault:
    started = time.time()
    with c.down(port):
        stop()
        time.sleep(outage_s)  # the outage itself
        start()
    return Fault(started, time.time())


def _restarted(c: FaultCluster, port: int, restart: Callable[[], None]) -> Fault:
    started = time.time()
    with c.down(port):
        restart()
    return Fault(started, time.time())


def seaweedfs_stopped(c: FaultCluster, run: LiveRun) -> Fault:
    """Killed: on SIGTERM weed would go on answering for its whole grace period."""
    return _down_for(c, c.s3_port, lambda: c.s3.stop(crash=True), c.s3.start, run.outage_s)


def postgres_restarted(c: FaultCluster, run: LiveRun) -> Fault:
    return _restarted(c, c.pg.port, c.pg.restart)


def postgres_stopped(c: FaultCluster, run: LiveRun) -> Fault:
    return _down_for(c, c.pg.port, c.pg.stop, c.pg.start, run.outage_s)


def redis_restarted(c: FaultCluster, run: LiveRun) -> Fault:
    return _restarted(c, c.redis.port, c.redis.restart)


def redis_stopped(c: FaultCluster, run: LiveRun) -> Fault:
    return _down_for(c, c.redis.port, c.redis.stop, c.redis.start, run.outage_s)


def _held_chunks(c: FaultCluster, pid: int, stream_id: str) -> list[str]:
    """The live chunks of ``stream_id`` the worker process ``pid`` has in hand (its
    consumers are named ``{host}-{pid}-{slot}``): entries of the groups' pending lists."""
    prefix = f"{socket.gethostname()}-{pid}-"
    client = redis.Redis.from_url(c.redis.url, decode_responses=True)
    try:
        held = []
        for group in client.xinfo_groups(CHUNKS_STREAM):
            for entry in client.xpending_range(CHUNKS_STREAM, group["name"], min="-",
                                               max="+", count=1000):
                if not str(entry["consumer"]).startswith(prefix):
                    continue
                for _, fields in client.xrange(CHUNKS_STREAM, entry["message_id"],
                                               entry["message_id"]) or []:
                    event = json.loads(str((fields or {})["event"]))
                    if event.get("video_id") == stream_id and event.get("kind") == "live":
                        held.append(f"chunk {event['seq']} ({group['name']})")
        return held
    finally:
        client.close()


def _stop_a_worker_holding_a_chunk(c: FaultCluster, stream_id: str
                                   ) -> tuple[str, list[str]]:
    """A worker frozen (SIGSTOP) while it holds a live chunk of ``stream_id``, and what it
    holds: a worker is frozen, asked about, and let go again until one holds one."""
    deadline = time.monotonic() + HOLD_WAIT_S
    while time.monotonic() < deadline:
        for name, proc in c.cluster.workers.items():
            os.kill(proc.pid, signal.SIGSTOP)
            if held := _held_chunks(c, proc.pid, stream_id):
                return name, held
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.05)  # let them work a little before looking again
    raise AssertionError(f"no worker held a chunk of the stream within {HOLD_WAIT_S:.0f} s")


def worker_killed(c: FaultCluster, run: LiveRun) -> Fault:
    """``kill -9`` of a worker holding a chunk of the stream. By design the bus hands a dead
    worker's chunks to another after the ack timeout: that is this fault's outage."""
    name, held = _stop_a_worker_holding_a_chunk(c, run.stream["id"])
    started = time.time()
    os.killpg(c.cluster.workers[name].pid, signal.SIGKILL)
    run.notes.append(f"{name} was killed holding {', '.join(held)} of the stream")
    return Fault(started, started + c.ack_timeout_s, c.ack_timeout_s)


def _viewers_on(api: Server, stream_id: str) -> int:
    """The viewers ``api`` itself serves (the run watches one stream, ``stream_id``)."""
    return viewers_served(api)


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
