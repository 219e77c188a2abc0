"""Work in flight when the process dies resumes after a restart (the journaled bus)."""

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from chunkcast.testing import run_server
from tests.integration.api import admin, create, put, wait_done
from tests.integration.media_checks import check_rendition

pytestmark = pytest.mark.integration

SLOW = {"CHUNKCAST_VOD_CHUNK_SECONDS": "2", "CHUNKCAST_WORKER_CONCURRENCY": "1",
        "CHUNKCAST_X264_PRESET": "slow"}


def test_a_killed_server_finishes_the_video_after_restart(clips: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with run_server(data, env=SLOW) as server, admin(server) as client:
        created = create(client)
        assert put(created, (clips / "long.mp4").read_bytes()).status_code == 200
        assert client.post(f"/api/v1/videos/{created['id']}/complete").status_code == 202
        deadline = time.monotonic() + 60
        while True:  # kill -9 once some, not all, chunks are done
            video = client.get(f"/api/v1/videos/{created['id']}").json()
            if video["status"] == "processing" and 0 < video["progress"] < 70:
                break
            assert video["status"] in ("uploaded", "processing"), video
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)
    # Same settings: segments must match the init segment the first run stored.
    with run_server(data, env=SLOW) as server, admin(server) as client:
        video = wait_done(client, created["id"])
        assert video["status"] == "ready", video["error"]
        with httpx.Client(timeout=30) as plain:
            url = video["playback"]["hls"].replace("master.m3u8", "240p/index.m3u8")
            check_rendition(plain, url, clips / "long.mp4")
