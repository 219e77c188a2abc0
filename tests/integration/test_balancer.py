"""The nginx load balancer that `chunkcast deploy nginx` writes, in front of two real
`chunkcast api` processes (PostgreSQL, Redis, a shared local object store, one worker):
WebSocket viewers spread over both, and when one process dies its viewers reconnect
through the balancer and miss no segment. Also: its body limits and its logs."""

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from chunkcast.testing import Server, free_port, run_chunkcast, run_server
from tests.integration.api import admin, put
from tests.integration.cluster import upgrade_database
from tests.integration.live_support import (
    create_stream,
    start_broadcast,
    viewers_served,
    wait_for_renditions,
)
from tests.servers.nginx import Nginx, deploy, run_nginx
from tests.servers.postgres import PostgresServer, create_database
from tests.servers.redis import run_redis

pytestmark = pytest.mark.integration

VIEWERS = 6


@dataclass
class Balanced:
    lb: Nginx
    apis: list[Server]
    lb_server: Server  # the balancer's URL, as clients use it


@pytest.fixture
def balanced(tmp_path: Path, postgres: PostgresServer) -> Iterator[Balanced]:
    lb_port = free_port()
    lb_url = f"http://127.0.0.1:{lb_port}"
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(run_redis(tmp_path / "redis"))
        token = secrets.token_urlsafe(16)
        env = {
            "CHUNKCAST_DATABASE_URL": asyncio.run(create_database(postgres)),
            "CHUNKCAST_STORAGE_URL": f"file://{tmp_path}/objects",
            "CHUNKCAST_BUS_URL": redis.url,
            "CHUNKCAST_SECRET_KEY": secrets.token_urlsafe(32),
            "CHUNKCAST_ADMIN_TOKEN": token,
            "CHUNKCAST_PUBLIC_URL": lb_url,
            "CHUNKCAST_LADDER_GROUPS": "all=240p,360p",
            "CHUNKCAST_X264_PRESET": "ultrafast",
            "CHUNKCAST_LIVE_GAP_TIMEOUT_SECONDS": "10",
        }
        upgrade_database(env, tmp_path)
        apis = []
        for name in ("api-1", "api-2"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = stack.enter_context(run_chunkcast(
                ["api", "--port", str(port)], tmp_path / name, env=env,
                health_url=f"{url}/healthz"))
            apis.append(Server(url, tmp_path / name, token, proc.pid,
                               tmp_path / name / "server.log"))
        stack.enter_context(run_chunkcast(["worker"], tmp_path / "worker", env=env))
        deploy(tmp_path / "nginx", [a.url.removeprefix("http://") for a in apis], apis[0].url,
               free_port(), lb_port, {"CHUNKCAST_SECRET_KEY": env["CHUNKCAST_SECRET_KEY"]})
        lb = stack.enter_context(run_nginx(tmp_path / "nginx", "lb", lb_port))
        yield Balanced(lb, apis, Server(lb_url, tmp_path, token, lb.pid, tmp_path / "lb.log"))


@dataclass
class Viewer:
    seqs: list[int]
    gaps: list[int]
    connections: int = 0
    ended: bool = False


async def view(url: str, viewer: Viewer, timeout_s: float) -> None:
    """A viewer as the web player behaves: on a dropped connection, reconnect and resume
    after the last seq it has."""
    last = -1
    async with asyncio.timeout(timeout_s):
        while not viewer.ended:
            try:
                async with websockets.connect(f"{url}?since={last}", open_timeout=5) as ws:
                    viewer.connections += 1
                    async for raw in ws:
                        message: dict[str, Any] = json.loads(raw)
                        if message["type"] in ("segment", "gap"):
                            (viewer.seqs if message["type"] == "segment" else viewer.gaps
                             ).append(message["seq"])
                            last = message["seq"]
                        elif message["type"] == "status" and message["status"] == "ended":
                            viewer.ended = True
                            return
            except (OSError, websockets.ConnectionClosed, websockets.InvalidStatus,
                    TimeoutError):
                await asyncio.sleep(0.3)


def viewers_on(server: Server, stream_id: str) -> int:
    """The viewers ``server`` itself serves (the test watches one stream)."""
    assert httpx.get(f"{server.url}/api/v1/streams/{stream_id}").status_code == 200
    return viewers_served(server)


def test_viewers_of_a_dead_api_process_resume_through_the_balancer(
    balanced: Balanced, clips: Path, tmp_path: Path,
) -> None:
    lb = balanced.lb_server
    stream = create_stream(lb)
    broadcast = start_broadcast(lb, stream, clips / "long.mp4", tmp_path / "broadcast.log",
                                "--chunk-seconds", "1", "--loop")
    try:
        rendition = wait_for_renditions(lb, stream["id"], timeout_s=60)[0]
        url = lb.url.replace("http", "ws", 1) + f"/ws/{stream['id']}/{rendition}"
        viewers = [Viewer([], []) for _ in range(VIEWERS)]

        async def scenario() -> None:
            tasks = [asyncio.create_task(view(url, v, 120)) for v in viewers]
            deadline = time.monotonic() + 30
            while min(len(v.seqs) for v in viewers) < 3:
                assert time.monotonic() < deadline, "viewers got no segments"
                await asyncio.sleep(0.2)
            spread = [await asyncio.to_thread(viewers_on, api, stream["id"])
                      for api in balanced.apis]
            assert sum(spread) == VIEWERS and min(spread) >= 1, spread
            # One API process dies with its viewers connected.
            os.kill(balanced.apis[0].pid, signal.SIGKILL)
            at_kill = max(max(v.seqs) for v in viewers)
            deadline = time.monotonic() + 60
            while min(max(v.seqs) for v in viewers) < at_kill + 4:
                assert time.monotonic() < deadline, "viewers did not come back"
                await asyncio.sleep(0.2)
            assert await asyncio.to_thread(viewers_on, balanced.apis[1], stream["id"]) \
                == VIEWERS
            broadcast.send_signal(signal.SIGINT)  # Ctrl-C: the stream ends cleanly
            await asyncio.gather(*tasks)

        asyncio.run(scenario())
        for viewer in viewers:
            assert viewer.gaps == []
            assert viewer.seqs == list(range(len(viewer.seqs))), viewer.seqs
        assert sum(v.connections for v in viewers) > VIEWERS  # some had to reconnect
        assert len({len(v.seqs) for v in viewers}) == 1  # everyone got every segment
    finally:
        if broadcast.poll() is None:
            broadcast.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            broadcast.wait(20)
        if broadcast.poll() is None:
            broadcast.kill()


def test_the_balancer_caps_bodies_but_streams_uploads_and_logs_no_signatures(
    tmp_path: Path, clips: Path,
) -> None:
    """JSON bodies stop at 64 KiB at nginx; a source PUT to its pre-signed URL on the
    balancer streams through whatever its size; the access log has no query strings."""
    lb_port = free_port()
    lb_url = f"http://127.0.0.1:{lb_port}"
    with run_server(tmp_path / "api", env={"CHUNKCAST_PUBLIC_URL": lb_url}) as api:
        deploy(tmp_path / "nginx", [api.url.removeprefix("http://")], api.url, free_port(),
               lb_port, {"CHUNKCAST_DATA_DIR": str(api.data_dir)})
        with run_nginx(tmp_path / "nginx", "lb", lb_port) as lb, \
                admin(Server(lb_url, api.data_dir, api.token, lb.pid, api.log)) as client:
            too_big = client.post("/api/v1/videos", json={"title": "x" * 100_000})
            assert too_big.status_code == 413 and "text/html" in too_big.headers["content-type"]
            created = client.post("/api/v1/videos", json={"title": "big"})
            assert created.status_code == 201, created.text
            assert created.json()["upload"]["url"].startswith(f"{lb_url}/media/")
            source = (clips / "long.mp4").read_bytes()
            assert len(source) > 4 * 64 * 1024
            assert put(created.json(), source).status_code == 200
            log = lb.wait_logged('"PUT /media/')
            assert not [line for line in log if "?" in line.split('"')[1]], log
