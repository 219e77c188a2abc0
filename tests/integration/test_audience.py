"""Viewers across the cluster with real processes: two ``chunkcast api`` on one Redis bus
(PostgreSQL catalogue, a shared local object folder; no worker is needed to watch) each show
the total of both; one killed with SIGKILL drops out of the total after the expiry."""

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from chunkcast.adapters.db.repository import SqlVideoRepository, make_engine
from chunkcast.domain.ids import new_video_id
from chunkcast.domain.ladder import Rendition
from chunkcast.domain.videos import Video, VideoKind, VideoStatus
from chunkcast.services.audience import EXPIRE_INTERVALS, REPORT_EVERY_S
from chunkcast.testing import Server
from tests.integration.cluster import Cluster, upgrade_database
from tests.servers.postgres import PostgresServer, create_database
from tests.servers.redis import RedisServer

pytestmark = pytest.mark.integration

R240 = Rendition("240p", 426, 240, 400, 64, 30.0)
CODECS = "avc1.64000d,mp4a.40.2"


def audience_env(root: Path, postgres: PostgresServer, redis: RedisServer) -> dict[str, str]:
    """Settings of API processes sharing a fresh catalogue, a bus (a key prefix of their
    own on ``redis``) and an object folder; migrated."""
    env = {
        "CHUNKCAST_DATABASE_URL": asyncio.run(create_database(postgres)),
        "CHUNKCAST_STORAGE_URL": f"file://{root / 'objects'}",
        "CHUNKCAST_BUS_URL": f"{redis.url}?prefix=audience-{uuid.uuid4().hex[:12]}",
        "CHUNKCAST_SECRET_KEY": secrets.token_urlsafe(32),
        "CHUNKCAST_ADMIN_TOKEN": secrets.token_urlsafe(16),
        "CHUNKCAST_RTMP_PORT": "0", "CHUNKCAST_SRT_PORT": "0",
    }
    upgrade_database(env, root)
    return env


async def seed_stream(database_url: str) -> str:
    """A live stream with a 240p rendition whose codecs are known: viewers can join it at
    once, without a broadcaster or a worker."""
    repo = SqlVideoRepository(make_engine(database_url))
    try:
        video_id = new_video_id()
        await repo.add_video(Video(video_id, VideoKind.LIVE, "audience", VideoStatus.LIVE,
                                   datetime.now(UTC)))
        await repo.set_plan(video_id, [R240], 1)
        await repo.set_codecs(video_id, "240p", CODECS)
        return video_id
    finally:
        await repo.close()


async def join(base_url: str, video_id: str) -> ClientConnection:
    """A viewer of the stream's 240p, once it counts (it has been sent the status, which
    comes when it joins the channel's members)."""
    ws = await websockets.connect(base_url.replace("http", "ws", 1) + f"/ws/{video_id}/240p")
    async with asyncio.timeout(15):
        while json.loads(await ws.recv())["type"] != "status":
            pass
    return ws


async def told(ws: ClientConnection, count: int, timeout_s: float = 15) -> None:
    """Wait for a ``viewers`` message saying ``count``."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "viewers" and message["count"] == count:
                return


def stream_viewers(base_url: str, video_id: str) -> int:
    answer = httpx.get(f"{base_url}/api/v1/streams/{video_id}", timeout=10)
    assert answer.status_code == 200, answer.text
    count: int = answer.json()["viewers"]
    return count


def viewers_metric(base_url: str) -> dict[str, float]:
    """``chunkcast_viewers`` of the process that answered: viewers per process name."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return {name: float(value) for name, value in
            re.findall(r'^chunkcast_viewers\{process="([^"]+)"\} (\S+)$', text, re.MULTILINE)}


def process_name(pid: int) -> str:
    """The name an API process with ``pid`` on this host reports under."""
    return f"{socket.gethostname()}-{pid}"


def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait for ``condition`` (checked every 0.1 s), failing with ``what`` after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture
def two_apis(tmp_path: Path, postgres: PostgresServer, redis_server: RedisServer
             ) -> Iterator[tuple[Cluster, str]]:
    env = audience_env(tmp_path, postgres, redis_server)
    cluster = Cluster(tmp_path, env, env["CHUNKCAST_ADMIN_TOKEN"], redis_server)
    with cluster.running():
        cluster.start_apis("api-1", "api-2")
        yield cluster, asyncio.run(seed_stream(env["CHUNKCAST_DATABASE_URL"]))


@contextlib.asynccontextmanager
async def viewers_of(video_id: str, *servers: Server) -> AsyncIterator[list[ClientConnection]]:
    sockets = [await join(server.url, video_id) for server in servers]
    try:
        yield sockets
    finally:
        for ws in sockets:
            await ws.close()


async def test_both_processes_show_the_total_until_one_is_killed(
    two_apis: tuple[Cluster, str],
) -> None:
    cluster, video_id = two_apis
    api1, api2 = cluster.apis
    async with viewers_of(video_id, api1, api2, api2) as (on_api1, *_):
        until(lambda: [stream_viewers(a.url, video_id) for a in (api1, api2)] == [3, 3], 10,
              "the two processes never both showed the 3 viewers")
        await told(on_api1, 3)
        names = {process_name(api1.pid): 1, process_name(api2.pid): 2}
        until(lambda: viewers_metric(api1.url) == names, 5,  # refreshed every interval
              f"api-1's metrics never showed both processes: {viewers_metric(api1.url)}")

        os.killpg(api2.pid, signal.SIGKILL)  # no goodbye: its counts must expire
        killed = time.monotonic()
        until(lambda: stream_viewers(api1.url, video_id) == 1, 15,
              "api-2's viewers never expired")
        waited = time.monotonic() - killed
        # Its last report was at most an interval old when it died.
        assert (EXPIRE_INTERVALS - 1) * REPORT_EVERY_S - 0.2 < waited < 10, waited
        await told(on_api1, 1)
        until(lambda: viewers_metric(api1.url) == {process_name(api1.pid): 1}, 5,
              f"api-1's metrics kept api-2: {viewers_metric(api1.url)}")
