"""``chunkcast api --processes 2``: two API processes on one port (SO_REUSEPORT), each a
whole API process following the bus (Redis), supervised by the one that started them:
requests land on both, their viewers add up, a child that dies is replaced, and the children
stop (or die) with the parent."""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from chunkcast.testing import free_port, run_chunkcast
from tests.integration.test_audience import (
    audience_env,
    join,
    seed_stream,
    stream_viewers,
    until,
    viewers_metric,
)
from tests.servers.postgres import PostgresServer
from tests.servers.redis import RedisServer

pytestmark = pytest.mark.integration

PROCESSES = 2
MAX_TRIES = 60  # fresh connections tried before concluding the kernel uses one process only


def children(pid: int) -> set[int]:
    """The processes ``pid`` started that are still running (Linux)."""
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in found}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def pid_of(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


@contextlib.contextmanager
def api_processes(root: Path, env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with run_chunkcast(["api", "--port", str(port), "--processes", str(PROCESSES)],
                       root / "api", env={**env, "CHUNKCAST_PUBLIC_URL": url},
                       health_url=f"{url}/healthz") as parent:
        yield url, parent


@pytest.fixture
def env(tmp_path: Path, postgres: PostgresServer, redis_server: RedisServer) -> dict[str, str]:
    return audience_env(tmp_path, postgres, redis_server)


def answering(url: str) -> set[str]:
    """The processes that answered fresh connections, until both did (each one's metrics
    name only itself while nobody watches: no process reports then)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 30  # the second child may still be starting
    while len(seen) < PROCESSES and time.monotonic() < deadline:
        answer = viewers_metric(url)  # a new connection each time
        assert len(answer) == 1, answer
        seen |= set(answer)
    return seen


async def test_requests_and_viewers_land_on_every_process_which_stop_with_the_parent(
    tmp_path: Path, env: dict[str, str],
) -> None:
    video_id = await seed_stream(env["CHUNKCAST_DATABASE_URL"])
    with api_processes(tmp_path, env) as (url, parent):
        until(lambda: len(children(parent.pid)) == PROCESSES, 30, "the children never started")
        names = answering(url)
        assert {pid_of(name) for name in names} == children(parent.pid)

        # Viewers on fresh connections until both processes have some: each reports its
        # own, and either one answers with the total.
        sockets: list[ClientConnection] = []
        try:
            while len([n for n in viewers_metric(url).values() if n]) < PROCESSES:
                assert len(sockets) < MAX_TRIES, "every viewer landed on the same process"
                sockets.append(await join(url, video_id))
            until(lambda: stream_viewers(url, video_id) == len(sockets), 10,
                  f"the total never reached {len(sockets)}")
            until(lambda: sum(viewers_metric(url).values()) == len(sockets), 10,
                  "the per-process gauges never added up")
        finally:
            for ws in sockets:
                await ws.close()

        # A child that dies is replaced; the port keeps answering meanwhile.
        first = min(children(parent.pid))
        os.kill(first, signal.SIGKILL)
        until(lambda: len(children(parent.pid) - {first}) == PROCESSES, 30,
              "the killed child was not replaced")
        until(lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200, 30,
              "the port stopped answering")

        running = children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=40) == 0
        assert not any(alive(pid) for pid in running)


async def test_the_children_die_with_a_killed_parent(tmp_path: Path, env: dict[str, str]
                                                     ) -> None:
    with api_processes(tmp_path, env) as (_, parent):
        until(lambda: len(children(parent.pid)) == PROCESSES, 30, "the children never started")
        running = children(parent.pid)
        parent.kill()
        parent.wait()
        until(lambda: not any(alive(pid) for pid in running), 10,
              "children outlived their parent")
