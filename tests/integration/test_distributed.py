"""The distributed mode with real processes: Redis or Kafka + PostgreSQL + SeaweedFS (S3),
two `chunkcast api` and two `chunkcast worker` processes, the same code as embedded. The
module runs once per bus."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from chunkcast.media.process import ffmpeg_path
from chunkcast.testing import Server, make_clip
from tests.integration.cluster import Cluster, platform_env, upgrade_database
from tests.integration.live_support import (
    seqs,
    start_broadcast,
    wait_for_renditions,
    watch,
    ws_url,
)
from tests.integration.media_checks import check_rendition
from tests.servers.kafka import PERSISTENT, run_kafka
from tests.servers.postgres import PostgresServer, create_database
from tests.servers.redis import run_redis
from tests.servers.seaweedfs import SeaweedServer, drop_bucket, new_bucket_name

pytestmark = pytest.mark.integration

GROUPS = "hi=480p,720p,1080p;lo=240p,360p"


# Kafka: a crashed worker's partitions move after the session timeout, here the ack timeout.
KAFKA_OPTIONS = "?topic_prefix=dist&partitions=6&session_timeout_ms=3000"


@pytest.fixture(scope="module", params=["redis", "kafka"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            postgres: PostgresServer, seaweedfs: SeaweedServer) -> Iterator[Cluster]:
    """The cluster on the session's PostgreSQL (a database of its own) and SeaweedFS (a
    bucket of its own, dropped afterwards), with a bus of its own."""
    root = tmp_path_factory.mktemp("cluster")
    bucket = new_bucket_name("dist")
    with contextlib.ExitStack() as stack:
        stack.callback(drop_bucket, seaweedfs, bucket)
        redis = None
        if request.param == "redis":
            redis = stack.enter_context(run_redis(root / "redis"))
            bus_url = redis.url
        else:
            try:
                kafka = stack.enter_context(run_kafka(root / "kafka"))
            except (RuntimeError, OSError) as exc:
                pytest.skip(f"no Kafka-protocol broker can run here: {exc}")
            bus_url = kafka.url + KAFKA_OPTIONS
        env = platform_env(
            seaweedfs, bucket, asyncio.run(create_database(postgres)), bus_url,
            CHUNKCAST_LADDER_GROUPS=GROUPS, CHUNKCAST_X264_PRESET="ultrafast",
            CHUNKCAST_ACK_TIMEOUT_SECONDS="3", CHUNKCAST_LIVE_GAP_TIMEOUT_SECONDS="10",
            # Six chunks per upload: on Kafka a chunk's worker is the owner of the partition
            # its key (video, seq) hashes to, so a few chunks could all land on one worker.
            CHUNKCAST_VOD_CHUNK_SECONDS="2", CHUNKCAST_WORKER_CONCURRENCY="1")
        env["CHUNKCAST_STORAGE_URL"] += "&multipart_mb=5"
        upgrade_database(env, root)
        cluster = Cluster(root, env, env["CHUNKCAST_ADMIN_TOKEN"], redis, groups=("hi", "lo"))
        with cluster.running():
            cluster.start_apis("api-1", "api-2")
            cluster.start_worker("worker-a")
            cluster.start_worker("worker-b")
            yield cluster


@pytest.fixture(scope="module")
def clip480(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("src") / "src480.mp4", seconds=12,
                     size="854x480")


def _admin(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30,
                        headers={"Authorization": f"Bearer {server.token}"})


def _stream(server: Server) -> dict[str, Any]:
    with _admin(server) as client:
        body: dict[str, Any] = client.post("/api/v1/streams", json={"title": "dist"}).json()
        return body


def _all_seqs(server: Server, stream_id: str, rendition: str) -> list[int]:
    """Everything a viewer joining from the start gets, once the stream is announced ended
    (which happens after its last chunk is transcoded); gaps are not segments."""
    url = ws_url(server, stream_id, rendition, since=-1)
    messages = asyncio.run(watch(url, until_status="ended", timeout_s=120))
    return seqs(messages)


def wait_for_segment(server: Server, stream_id: str, seq: int, rendition: str = "240p",
                     timeout_s: float = 60) -> None:
    """Until segment ``seq`` of the live stream's ``rendition`` is in its playlist."""
    playlist = f"{server.url}/play/{stream_id}/{rendition}/index.m3u8"
    deadline = time.monotonic() + timeout_s
    while f"{seq:08d}.m4s" not in (text := httpx.get(playlist, timeout=10).text):
        assert time.monotonic() < deadline, text
        time.sleep(0.1)


def test_a_vod_upload_is_spread_over_both_workers(cluster: Cluster, clip480: Path) -> None:
    api1, api2 = cluster.apis
    with _admin(api1) as client:
        created = client.post("/api/v1/videos", json={"title": "vod"}).json()
        put = httpx.put(created["upload"]["url"], content=clip480.read_bytes(),
                        headers=created["upload"]["headers"])
        assert put.status_code == 200, put.text
        assert client.post(f"/api/v1/videos/{created['id']}/complete").status_code == 202
        deadline = time.monotonic() + 120
        while (video := client.get(f"/api/v1/videos/{created['id']}").json())["status"] not in (
                "ready", "failed"):
            assert time.monotonic() < deadline, video
            time.sleep(0.2)
    assert video["status"] == "ready", video["error"]
    assert [r["name"] for r in video["renditions"]] == ["240p", "360p", "480p"]
    # Chunks were shared by the two workers (each is a member of both groups).
    for name in ("worker-a", "worker-b"):
        assert f'"video_id": "{created["id"]}"' in cluster.worker_log(name), name
    # Any API process serves it; segments come from S3 through pre-signed redirects.
    with httpx.Client(timeout=30, follow_redirects=True) as plain:
        for rendition in ("240p", "480p"):
            url = f"{api2.url}/play/{created['id']}/{rendition}/index.m3u8"
            check_rendition(plain, url, clip480)


def test_viewers_on_both_api_processes_get_every_segment_in_order(
    cluster: Cluster, clip480: Path
) -> None:
    api1, api2 = cluster.apis
    stream = _stream(api1)
    proc = start_broadcast(api1, stream, clip480, cluster.root / "broadcast-1.log")
    try:
        renditions = wait_for_renditions(api1, stream["id"], timeout_s=60)

        async def everyone() -> list[list[dict[str, Any]]]:
            return await asyncio.gather(*(
                watch(ws_url(api, stream["id"], r, since=-1), until_status="ended", timeout_s=90)
                for api in (api1, api2) for r in renditions))

        received = asyncio.run(everyone())
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    for messages in received:
        assert seqs(messages) == list(range(12))


def test_a_killed_worker_loses_no_segment(cluster: Cluster, clip480: Path) -> None:
    api1, api2 = cluster.apis
    stream = _stream(api1)
    proc = start_broadcast(api1, stream, clip480, cluster.root / "broadcast-2.log")
    try:
        wait_for_renditions(api1, stream["id"], timeout_s=60)
        wait_for_segment(api1, stream["id"], 3)  # a quarter of the way in
        victim = cluster.workers["worker-a"]
        os.killpg(victim.pid, signal.SIGKILL)  # kill -9 in the middle of the stream
        victim.wait()
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    got = {r: _all_seqs(api2, stream["id"], r) for r in ("240p", "360p", "480p")}
    assert all(g == list(range(12)) for g in got.values()), got
    cluster.start_worker("worker-c")  # a replacement for what follows


def test_a_redis_restart_loses_no_event(cluster: Cluster, clip480: Path) -> None:
    if cluster.redis is None:
        pytest.skip(f"a bus restart on Kafka: {PERSISTENT}")
    api1, api2 = cluster.apis
    stream = _stream(api1)
    proc = start_broadcast(api1, stream, clip480, cluster.root / "broadcast-3.log")
    try:
        wait_for_renditions(api1, stream["id"], timeout_s=60)
        wait_for_segment(api1, stream["id"], 2)  # in the middle of the stream
        cluster.redis.restart()  # append-only file on: what was published survives
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    for api in (api1, api2):
        got = {r: _all_seqs(api, stream["id"], r) for r in ("240p", "360p", "480p")}
        assert all(g == list(range(12)) for g in got.values()), got


def test_a_tampered_s3_upload_url_is_refused(cluster: Cluster) -> None:
    api1, _ = cluster.apis
    with _admin(api1) as client:
        created = client.post("/api/v1/videos", json={"title": "tamper"}).json()
        url = created["upload"]["url"]
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        signature = query["X-Amz-Signature"]
        query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
        tampered = parts._replace(query=urlencode(query)).geturl()
        assert httpx.put(tampered, content=b"x" * 1000,
                         headers=created["upload"]["headers"]).status_code == 403
        other_key = url.replace(created["id"], "a" * 16)
        assert httpx.put(other_key, content=b"x" * 1000,
                         headers=created["upload"]["headers"]).status_code == 403
        response = client.post(f"/api/v1/videos/{created['id']}/complete")
        assert response.status_code == 409  # nothing was stored


def test_a_big_source_goes_up_in_parts_through_the_cli(cluster: Cluster,
                                                       tmp_path: Path) -> None:
    api1, _ = cluster.apis
    with _admin(api1) as client:
        offered = client.post("/api/v1/videos", json={"title": "big", "size": 11 * 2**20}).json()
    assert offered["upload"]["upload_id"] and len(offered["upload"]["parts"]) >= 2
    big = tmp_path / "big.mp4"
    subprocess.run([ffmpeg_path(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=30:duration=3,noise=alls=60:allf=t",
                    "-c:v", "libx264", "-preset", "ultrafast", "-qp", "4", str(big)], check=True)
    assert big.stat().st_size > 6 * 2**20
    proc = subprocess.run(
        [sys.executable, "-m", "chunkcast", "upload", str(big), "--server", api1.url,
         f"--token={cluster.token}"], env={**os.environ, **cluster.env},
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "is ready" in proc.stderr
