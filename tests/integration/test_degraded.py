"""An API process while a dependency is down (PostgreSQL, Redis and SeaweedFS of its own,
stopped and started again): ``/readyz`` says which one, ``/healthz`` stays up, requests that
need the catalogue get 503 with ``Retry-After`` (never 500), playlists already served are
served again, and live viewers keep getting segments, which come over the bus."""

import asyncio
import contextlib
import json
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from chunkcast.adapters.bus.redis import open_bus
from chunkcast.adapters.storage.s3 import make_client
from chunkcast.config import load_settings
from chunkcast.domain import events, keys
from chunkcast.testing import Server, free_port, run_chunkcast
from tests.integration.cluster import upgrade_database
from tests.integration.live_support import (
    create_stream,
    make_chunks,
    push_chunk,
    wait_for_renditions,
    ws_url,
)
from tests.servers.postgres import PostgresServer, create_database, run_postgres
from tests.servers.redis import RedisServer, run_redis
from tests.servers.seaweedfs import SeaweedServer, run_seaweedfs

pytestmark = pytest.mark.integration

READY_WAIT_S = 30.0


@dataclass
class Platform:
    api: Server
    postgres: PostgresServer
    redis: RedisServer
    s3: SeaweedServer
    env: dict[str, str]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One API process and one worker on servers of their own (stopping them disturbs no
    other test). PostgreSQL's dir is outside pytest's, which its OS user cannot enter."""
    root = tmp_path_factory.mktemp("degraded")
    with contextlib.ExitStack() as stack:
        pg_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chunkcast-pg-")))
        postgres = stack.enter_context(run_postgres(pg_dir))
        redis = stack.enter_context(run_redis(root / "redis"))
        weed_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="chunkcast-weed-"))
        s3 = stack.enter_context(run_seaweedfs(Path(weed_dir)))
        s3_client = make_client(s3.endpoint, s3.region, access_key=s3.access_key,
                                secret_key=s3.secret_key)
        s3_client.create_bucket(Bucket="degraded")  # as a deployment has it, before any role
        s3_client.close()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **s3.env(),
            "CHUNKCAST_DATABASE_URL": asyncio.run(create_database(postgres)),
            "CHUNKCAST_STORAGE_URL": s3.storage_url("degraded"),
            "CHUNKCAST_BUS_URL": redis.url,
            "CHUNKCAST_SECRET_KEY": secrets.token_urlsafe(32),
            "CHUNKCAST_ADMIN_TOKEN": secrets.token_urlsafe(16),
            "CHUNKCAST_PUBLIC_URL": url,
            "CHUNKCAST_LADDER_GROUPS": "all=240p",
            "CHUNKCAST_X264_PRESET": "ultrafast",
            # Long: nothing may end the stream or skip its seqs while the catalogue is down.
            "CHUNKCAST_LIVE_GAP_TIMEOUT_SECONDS": "120",
            "CHUNKCAST_LIVE_IDLE_TIMEOUT_SECONDS": "300",
        }
        upgrade_database(env, root)
        proc = stack.enter_context(run_chunkcast(["api", "--port", str(port)], root / "api",
                                                 env=env, health_url=f"{url}/healthz"))
        stack.enter_context(run_chunkcast(["worker"], root / "worker", env=env))
        api = Server(url, root / "api", env["CHUNKCAST_ADMIN_TOKEN"], proc.pid,
                     root / "api" / "server.log")
        yield Platform(api, postgres, redis, s3, env)


def readiness(api: Server) -> httpx.Response:
    return httpx.get(f"{api.url}/readyz", timeout=10)


def wait_ready(api: Server, ready: bool) -> dict[str, Any]:
    """``/readyz`` once it says ``ready`` (a driver notices a server back on its own time)."""
    deadline = time.monotonic() + READY_WAIT_S
    while (answer := readiness(api)).json()["ready"] is not ready:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    assert answer.status_code == (200 if ready else 503)
    body: dict[str, Any] = answer.json()
    return body


def dependency_up(api: Server) -> dict[str, float]:
    text = httpx.get(f"{api.url}/metrics").text
    return {name: float(value) for name, value in re.findall(
        r'^chunkcast_dependency_up\{dependency="(\w+)"\} (\S+)$', text, re.MULTILINE)}


def no_internals(text: str, platform: Platform) -> None:
    """No host, port, URL or traceback in what a client is shown."""
    for port in (platform.postgres.port, platform.redis.port,
                 int(platform.s3.endpoint.rsplit(":", 1)[1])):
        assert str(port) not in text
    assert "127.0.0.1" not in text and "://" not in text and "Traceback" not in text


@contextlib.contextmanager
def stopped(server: PostgresServer | SeaweedServer) -> Iterator[None]:
    server.stop()
    try:
        yield
    finally:
        server.start()


def test_the_embedded_platform_is_ready(server: Server) -> None:
    """SQLite, the local folder and the in-process bus answer too."""
    body = wait_ready(server, True)
    assert {name for name, check in body["dependencies"].items() if check["ok"]} == {
        "catalogue", "storage", "bus"}


def test_ready_when_every_dependency_answers(platform: Platform) -> None:
    body = wait_ready(platform.api, True)
    assert set(body["dependencies"]) == {"catalogue", "storage", "bus"}
    assert all(check["ok"] and check["ms"] >= 0 for check in body["dependencies"].values())
    assert dependency_up(platform.api) == {"catalogue": 1.0, "storage": 1.0, "bus": 1.0}


@dataclass
class Live:
    stream: dict[str, Any]
    rendition: str
    last_seq: int  # the newest segment delivered so far


@pytest.fixture(scope="module")
def live(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Live:
    """A live stream with its first segments transcoded."""
    chunks = make_chunks(tmp_path_factory.mktemp("chunks"), seconds=2, size="320x240")
    stream = create_stream(platform.api)
    for seq, chunk in enumerate(chunks):
        assert push_chunk(platform.api, stream, seq, chunk.read_bytes()).status_code == 202
    rendition = wait_for_renditions(platform.api, stream["id"])[0]
    playlist = f"{platform.api.url}/play/{stream['id']}/{rendition}/index.m3u8"
    deadline = time.monotonic() + 60
    while f"{len(chunks) - 1:08d}.m4s" not in (text := httpx.get(playlist).text):
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    return Live(stream, rendition, len(chunks) - 1)


def test_a_request_that_needs_the_catalogue_gets_503_while_it_is_down(
    platform: Platform, live: Live,
) -> None:
    admin = {"Authorization": f"Bearer {platform.api.token}"}
    with stopped(platform.postgres):
        for method, path, body in (
                ("GET", f"/api/v1/videos/{live.stream['id']}", None),
                ("GET", "/api/v1/videos", None),
                ("POST", "/api/v1/videos", {"title": "while the catalogue is down"})):
            answer = httpx.request(method, platform.api.url + path, json=body, headers=admin,
                                   timeout=30)
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
            assert answer.headers["retry-after"] == "1"
            assert answer.json() == {"error": {
                "code": "unavailable",
                "message": "the catalogue is unreachable just now; try again shortly"}}
            no_internals(answer.text, platform)
    wait_ready(platform.api, True)
    assert httpx.get(f"{platform.api.url}/api/v1/videos/{live.stream['id']}").status_code == 200


async def publish_segments(platform: Platform, live: Live, seqs: range) -> None:
    """What a worker publishes once a segment is stored and recorded (events of segments
    finished just before the catalogue went, here for new seqs)."""
    bus = open_bus(platform.redis.url, load_settings())
    try:
        video_id, rendition = live.stream["id"], live.rendition
        for seq in seqs:
            await bus.publish(events.SEGMENTS, events.SegmentReady(
                video_id, rendition, seq, keys.segment(video_id, rendition, seq),
                keys.init_segment(video_id, rendition), float(seq), 1.0,
                "2026-11-24T10:00:00.000Z", "2026-11-24T10:00:01.000Z"))
    finally:
        await bus.close()


@contextlib.asynccontextmanager
async def viewer(url: str) -> AsyncIterator[websockets.ClientConnection]:
    async with websockets.connect(url, open_timeout=10) as ws:
        yield ws


async def next_segment(ws: websockets.ClientConnection) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await ws.recv())
        if message["type"] == "segment":
            return message


async def watch_through_outage(platform: Platform, live: Live) -> None:
    url = ws_url(platform.api, live.stream["id"], live.rendition)
    async with asyncio.timeout(60), viewer(url) as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "init" and first["codecs"]
        while (await next_segment(ws))["seq"] != live.last_seq:  # caught up to the edge
            pass
        platform.postgres.stop()
        new = range(live.last_seq + 1, live.last_seq + 3)
        await publish_segments(platform, live, new)
        for seq in new:
            assert (await next_segment(ws))["seq"] == seq
        # A viewer arriving now joins the channel this process holds, without the catalogue.
        async with viewer(f"{url.split('?')[0]}?since={live.last_seq}") as late:
            init = json.loads(await late.recv())
            assert init["type"] == "init" and init["codecs"] == first["codecs"]
            assert [(await next_segment(late))["seq"] for _ in new] == list(new)
        # One of a video this process holds nothing of is told to try again later.
        async with viewer(ws_url(platform.api, "a" * 16, live.rendition)) as other:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await other.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    live.last_seq = new[-1]


def test_live_viewers_keep_getting_segments_while_the_catalogue_is_down(
    platform: Platform, live: Live,
) -> None:
    master = f"{platform.api.url}/play/{live.stream['id']}/master.m3u8"
    media = f"{platform.api.url}/play/{live.stream['id']}/{live.rendition}/index.m3u8"
    served = {url: httpx.get(url) for url in (master, media)}
    assert all(answer.status_code == 200 for answer in served.values())
    try:
        asyncio.run(watch_through_outage(platform, live))
        # The playlists served before are served again, cached briefly.
        for url, before in served.items():
            again = httpx.get(url, timeout=30)
            assert again.status_code == 200, again.text
            assert again.text == before.text
            assert again.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=1"
        # One never served before has nothing to fall back on.
        dvr = httpx.get(media + "?dvr=1", timeout=30)
        assert dvr.status_code == 503 and dvr.headers["retry-after"] == "1"
    finally:
        platform.postgres.start()
    wait_ready(platform.api, True)
    assert httpx.get(media).status_code == 200


@pytest.mark.parametrize("down", ["catalogue", "storage"])
def test_readiness_names_the_dependency_that_is_down(platform: Platform, down: str) -> None:
    server = platform.postgres if down == "catalogue" else platform.s3
    wait_ready(platform.api, True)
    with stopped(server):
        started = time.monotonic()
        answer = readiness(platform.api)
        assert time.monotonic() - started < 5  # each check waits about 2 s at most
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["ready"] is False
        failed = {name for name, check in body["dependencies"].items() if not check["ok"]}
        assert failed == {down}, body
        assert body["dependencies"][down]["reason"]
        no_internals(answer.text, platform)
        assert dependency_up(platform.api)[down] == 0.0
        # Liveness touches no dependency: the process is not restarted nor taken out.
        assert httpx.get(f"{platform.api.url}/healthz").json() == {"status": "ok"}
    wait_ready(platform.api, True)
    assert dependency_up(platform.api)[down] == 1.0
