"""The publisher's figures on the stream resource: in distributed mode, ``chunkcast ingest``
as a process of its own beside ``chunkcast api`` and ``chunkcast worker`` (Redis bus,
PostgreSQL catalogue, SeaweedFS storage), an OBS-like publisher (Debian's ffmpeg over RTMP),
and the API process showing the publisher, its bitrate and keyframe interval, until the
publisher stops or its ingest process dies; and the ingest inside ``chunkcast up``."""

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkcast.services.ingest_stats import EXPIRE_INTERVALS, REPORT_EVERY_S
from chunkcast.testing import Server, free_port
from tests.conftest import LIVE_ENV
from tests.integration.cluster import Cluster, platform_env, run_role, upgrade_database
from tests.integration.ingest_support import publish, run_ingest_server, stop, wait_listening
from tests.servers.postgres import PostgresServer, create_database
from tests.servers.redis import RedisServer
from tests.servers.seaweedfs import SeaweedServer

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists("/usr/bin/ffmpeg"),
                                 reason="Debian's ffmpeg (the RTMP publisher) is missing")]

GOP_S = 2.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer,
            redis_server: RedisServer, seaweedfs: SeaweedServer) -> Iterator[Cluster]:
    """One API process and one worker (a single 240p rung, to keep the machine free)."""
    root = tmp_path_factory.mktemp("ingest-cluster")
    env = platform_env(
        seaweedfs, f"ingest-{uuid.uuid4().hex[:12]}", asyncio.run(create_database(postgres)),
        f"{redis_server.url}?prefix=ingest-{uuid.uuid4().hex[:12]}",
        CHUNKCAST_LADDER_GROUPS="lo=240p", CHUNKCAST_X264_PRESET="ultrafast",
        CHUNKCAST_WORKER_CONCURRENCY="1", CHUNKCAST_LIVE_IDLE_TIMEOUT_SECONDS="60",
        CHUNKCAST_SRT_PORT="0")
    upgrade_database(env, root)
    cluster = Cluster(root, env, env["CHUNKCAST_ADMIN_TOKEN"], redis_server)
    with cluster.running():
        cluster.start_api("api")
        cluster.start_worker("worker")
        yield cluster


@contextlib.contextmanager
def ingest_process(cluster: Cluster, name: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``chunkcast ingest`` with the cluster's settings on a free RTMP port, once it
    listens; stopped (by PID) on exit."""
    port = free_port()
    with run_role(["ingest"], cluster.root / name,
                  {**cluster.env, "CHUNKCAST_RTMP_PORT": str(port)}) as proc:
        wait_listening(port)
        yield proc, port


def stream_resource(api: Server, stream_id: str, *, admin: bool = True) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api.token}"} if admin else {}
    answer = httpx.get(f"{api.url}/api/v1/streams/{stream_id}", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def new_stream(api: Server) -> dict[str, Any]:
    answer = httpx.post(f"{api.url}/api/v1/streams", json={"title": "obs"}, timeout=10,
                        headers={"Authorization": f"Bearer {api.token}"})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def until_figures(api: Server, stream_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """The stream's ``ingest`` object once it shows a bitrate and a keyframe interval."""
    deadline = time.monotonic() + timeout_s
    while True:
        ingest: dict[str, Any] | None = stream_resource(api, stream_id)["ingest"]
        if ingest is not None and ingest["bitrate_kbps"] > 0 \
                and ingest["keyframe_interval_s"] is not None:
            return ingest
        assert time.monotonic() < deadline, f"the publisher was never shown: {ingest}"
        time.sleep(0.2)


def until_gone(api: Server, stream_id: str, timeout_s: float) -> float:
    """Seconds until the stream shows no publisher (failing after ``timeout_s``)."""
    started = time.monotonic()
    while stream_resource(api, stream_id)["ingest"] is not None:
        assert time.monotonic() - started < timeout_s, "the publisher was shown too long"
        time.sleep(0.1)
    return time.monotonic() - started


def test_the_api_shows_the_publisher_of_a_separate_ingest_process(cluster: Cluster) -> None:
    api = cluster.apis[0]
    stream = new_stream(api)
    assert stream_resource(api, stream["id"])["ingest"] is None
    with ingest_process(cluster, "ingest-1") as (proc, port):
        publisher = publish(f"rtmp://127.0.0.1:{port}/live/{stream['stream_key']}",
                            cluster.root / "publisher-1.log", seconds=60, gop_s=GOP_S)
        try:
            ingest = until_figures(api, stream["id"])
            assert ingest["protocol"] == "rtmp"
            assert ingest["ingest_process"] == f"{socket.gethostname()}-{proc.pid}"
            assert abs(ingest["keyframe_interval_s"] - GOP_S) < 0.1, ingest
            assert ingest["keyframe_warning"] is None and ingest["publishers"] == 1
            assert ingest["connected_at"] is not None
            # It keeps coming while the publisher is live: chunks are cut and counted.
            deadline = time.monotonic() + 20
            while (now := stream_resource(api, stream["id"])["ingest"])["chunks_cut"] < 2:
                assert time.monotonic() < deadline, now
                time.sleep(0.2)
            assert 100 < now["bitrate_kbps"] < 5000, now  # 800k video + 128k audio, in FLV
            shown = stream_resource(api, stream["id"])
            assert shown["status"] == "live"
            assert stream_resource(api, stream["id"], admin=False)["ingest"] is None
        finally:
            stop(publisher)  # the connection drops: the ingest reports it gone
        # Its last chunk is closed and stored, then the next report leaves it out.
        waited = until_gone(api, stream["id"], timeout_s=15)
        assert proc.poll() is None  # the ingest process goes on without publishers
    assert waited < 15


def test_a_killed_ingest_process_expires_with_its_publisher(cluster: Cluster) -> None:
    api = cluster.apis[0]
    stream = new_stream(api)
    with ingest_process(cluster, "ingest-2") as (proc, port):
        publisher = publish(f"rtmp://127.0.0.1:{port}/live/{stream['stream_key']}",
                            cluster.root / "publisher-2.log", seconds=60, gop_s=GOP_S)
        try:
            until_figures(api, stream["id"])
            os.killpg(proc.pid, signal.SIGKILL)  # no goodbye: its report must expire
            killed = time.monotonic()
            proc.wait()
            until_gone(api, stream["id"], timeout_s=15)
            waited = time.monotonic() - killed
        finally:
            stop(publisher)
    # Its last report was at most an interval old when it died.
    assert (EXPIRE_INTERVALS - 1) * REPORT_EVERY_S - 0.2 < waited < 10, waited


def test_the_embedded_ingest_shows_its_publisher_with_a_warning(tmp_path: Path) -> None:
    """``chunkcast up``: its ingest reports through its own (memory) bus like any other."""
    with run_ingest_server(tmp_path, env={**LIVE_ENV, "CHUNKCAST_LADDER_GROUPS": "all=240p"}
                           ) as ingest:
        server = ingest.server
        stream = new_stream(server)
        publisher = publish(ingest.rtmp_url(stream["stream_key"]), tmp_path / "publisher.log",
                            seconds=60, gop_s=4.0)
        try:
            shown = until_figures(server, stream["id"])
            assert shown["protocol"] == "rtmp"
            assert shown["ingest_process"] == f"{socket.gethostname()}-{server.pid}"
            assert abs(shown["keyframe_interval_s"] - 4.0) < 0.1, shown
            assert "4.0 s apart" in shown["keyframe_warning"]
        finally:
            stop(publisher)
        until_gone(server, stream["id"], timeout_s=15)
