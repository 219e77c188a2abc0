"""Going live from OBS-like publishers: Debian's ffmpeg over RTMP and SRT into the chunk
pipeline (server-side ingest), every rung playing, refusals, reconnects, long GOPs."""

import asyncio
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LIVE_ENV
from tests.integration.ingest_support import (
    IngestServer,
    publish,
    publisher_argv,
    run_ingest_server,
    stop,
    stored_chunks,
    video,
    wait_status,
)
from tests.integration.live_support import create_stream, seqs, wait_for_renditions, watch, ws_url
from tests.integration.media_checks import decodes_cleanly, played_duration

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists("/usr/bin/ffmpeg"),
                                 reason="Debian's ffmpeg (the RTMP and SRT publisher) is missing")]


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    with run_ingest_server(tmp_path_factory.mktemp("ingest"), env=LIVE_ENV) as running:
        yield running


def _log(ingest: IngestServer, name: str) -> Path:
    return ingest.server.data_dir / f"publisher-{name}.log"


async def _follow(ingest: IngestServer, stream_id: str, renditions: list[str]
                  ) -> dict[str, list[dict[str, Any]]]:
    """One viewer per rendition, from the first segment until the stream ends."""
    server = ingest.server
    got = await asyncio.gather(*(watch(ws_url(server, stream_id, r, since=-1),
                                       until_status="ended", timeout_s=90)
                                 for r in renditions))
    return dict(zip(renditions, got, strict=True))


def _plays_end_to_end(ingest: IngestServer, stream_id: str, renditions: list[str],
                      seconds: float) -> None:
    for rendition in renditions:
        url = f"{ingest.server.url}/play/{stream_id}/{rendition}/index.m3u8"
        played, kinds = played_duration(url)
        assert kinds == {"video", "audio"}, rendition
        assert abs(played - seconds) < 1.5, (rendition, played)
        assert decodes_cleanly(url) == "", rendition


@pytest.mark.parametrize("protocol", ["rtmp", "srt"])
def test_a_publisher_goes_live_and_every_rung_plays(ingest: IngestServer, protocol: str
                                                    ) -> None:
    stream = create_stream(ingest.server)
    key = stream["stream_key"]
    url = ingest.rtmp_url(key) if protocol == "rtmp" else ingest.srt_url(key, prefix="publish:")
    started = time.monotonic()
    publisher = publish(url, _log(ingest, stream["id"]), seconds=8, size="640x360")
    try:
        wait_status(ingest.server, stream["id"], "live", timeout_s=15)
        live_after = time.monotonic() - started
        renditions = wait_for_renditions(ingest.server, stream["id"])
        assert renditions == ["240p", "360p"]
        received = asyncio.run(_follow(ingest, stream["id"], renditions))
        assert publisher.wait(timeout=30) == 0
    finally:
        stop(publisher)
    assert live_after < 6.0
    for rendition, messages in received.items():
        got = seqs(messages)
        assert got == list(range(len(got))) and len(got) >= 6, (rendition, got)
        assert not seqs(messages, "gap")
    assert len(stored_chunks(ingest.server, stream["id"])) == len(got)
    _plays_end_to_end(ingest, stream["id"], renditions, seconds=8.0)


def test_three_publishers_on_one_port_each_on_its_own_stream(ingest: IngestServer) -> None:
    streams = [create_stream(ingest.server) for _ in range(3)]
    publishers = [publish(ingest.rtmp_url(s["stream_key"]), _log(ingest, s["id"]), seconds=5)
                  for s in streams]
    try:
        for s in streams:
            wait_status(ingest.server, s["id"], "live", timeout_s=20)
        metrics = httpx.get(f"{ingest.server.url}/metrics").text
        assert 'chunkcast_ingest_publishers{protocol="rtmp"} 3.0' in metrics
        assert all(p.wait(timeout=30) == 0 for p in publishers)
    finally:
        for p in publishers:
            stop(p)
    for s in streams:
        wait_status(ingest.server, s["id"], "ended")
        messages = asyncio.run(watch(ws_url(ingest.server, s["id"], "240p", since=-1),
                                     until_status="ended"))
        got = seqs(messages)
        assert got == list(range(len(got))) and len(got) >= 4, got


def _refused(url: str) -> str:
    """Publish for a moment; the publisher's error output (it must fail)."""
    container = "mpegts" if url.startswith("srt:") else "flv"
    done = subprocess.run(publisher_argv(url, seconds=3, container=container),
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0, done.stderr
    return done.stderr


def test_wrong_and_rotated_keys_are_refused_before_anything_is_stored(
        ingest: IngestServer) -> None:
    server = ingest.server
    stream = create_stream(server)
    key = stream["stream_key"]
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert "wrong stream key" in _refused(ingest.rtmp_url(wrong))
    assert "reject" in _refused(ingest.srt_url(wrong)).lower()
    assert "not a stream key" in _refused(ingest.rtmp_url("nonsense"))
    rotated = httpx.post(f"{server.url}/api/v1/streams/{stream['id']}/key",
                         headers={"Authorization": f"Bearer {server.token}"})
    assert rotated.status_code == 200, rotated.text
    assert "wrong stream key" in _refused(ingest.rtmp_url(key))
    assert stored_chunks(server, stream["id"]) == []
    assert video(server, stream["id"])["status"] == "idle"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert re.search(r'chunkcast_ingest_refused_total\{reason="key"\} [1-9]', metrics)
    page = httpx.get(f"{server.url}/streams/{stream['id']}").text  # where OBS points
    assert f'data-rtmp-port="{ingest.rtmp_port}"' in page and "obs-server" in page


def test_a_second_publisher_is_refused_and_garbage_hurts_nobody(ingest: IngestServer) -> None:
    server = ingest.server
    stream = create_stream(server)
    first = publish(ingest.rtmp_url(stream["stream_key"]), _log(ingest, stream["id"]),
                    seconds=6)
    try:
        wait_status(server, stream["id"], "live", timeout_s=15)
        assert "already has a publisher" in _refused(ingest.rtmp_url(stream["stream_key"]))
        assert "reject" in _refused(ingest.srt_url(stream["stream_key"])).lower()
        for junk in (os.urandom(4096), b"\x03" + os.urandom(1536 * 2 + 64)):
            with socket.create_connection(("127.0.0.1", ingest.rtmp_port), timeout=5) as s:
                s.sendall(junk)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(os.urandom(1316), ("127.0.0.1", ingest.srt_port))
        assert first.wait(timeout=30) == 0  # the first publisher went on undisturbed
    finally:
        stop(first)
    messages = asyncio.run(watch(ws_url(server, stream["id"], "240p", since=-1),
                                 until_status="ended"))
    got = seqs(messages)
    assert got == list(range(len(got))) and len(got) >= 5, got
    assert not seqs(messages, "gap")


def test_a_publisher_that_comes_back_continues_its_stream(ingest: IngestServer) -> None:
    server = ingest.server
    stream = create_stream(server)
    url = ingest.rtmp_url(stream["stream_key"])
    first = publish(url, _log(ingest, stream["id"]), seconds=30)
    try:
        wait_status(server, stream["id"], "live", timeout_s=15)
        while len(stored_chunks(server, stream["id"])) < 3:
            time.sleep(0.1)
        time.sleep(0.5)  # stopped in the middle of a chunk
    finally:
        stop(first)
    before = len(stored_chunks(server, stream["id"]))
    second = publish(url, _log(ingest, stream["id"]), seconds=4)
    try:
        assert second.wait(timeout=30) == 0
    finally:
        stop(second)
    messages = asyncio.run(watch(ws_url(server, stream["id"], "240p", since=-1),
                                 until_status="ended"))
    got = seqs(messages)
    assert got == list(range(len(got))) and len(got) >= before + 3, got
    segments = [m for m in messages if m["type"] == "segment"]
    starts = [m["pts_start"] for m in segments]
    assert starts == sorted(starts)  # the timeline runs on, never back
    assert video(server, stream["id"])["status"] == "ended"


def test_keyframes_four_seconds_apart_still_play_with_a_warning(ingest: IngestServer) -> None:
    server = ingest.server
    stream = create_stream(server)
    publisher = publish(ingest.rtmp_url(stream["stream_key"]), _log(ingest, stream["id"]),
                        seconds=13, gop_s=4.0)
    try:
        wait_status(server, stream["id"], "live", timeout_s=20)
        pattern = (r'chunkcast_ingest_keyframe_interval_seconds\{stream="'
                   + stream["id"] + r'"\} (\S+)')
        deadline = time.monotonic() + 20
        interval = None
        while interval is None and time.monotonic() < deadline:
            found = re.search(pattern, httpx.get(f"{server.url}/metrics").text)
            interval = float(found.group(1)) if found else None
            time.sleep(0.2)
        assert interval is not None and abs(interval - 4.0) < 0.1
        assert publisher.wait(timeout=40) == 0
    finally:
        stop(publisher)
    messages = asyncio.run(watch(ws_url(server, stream["id"], "240p", since=-1),
                                 until_status="ended"))
    durations = [m["duration"] for m in messages if m["type"] == "segment"]
    assert len(durations) >= 3 and all(abs(d - 4.0) < 0.2 for d in durations[:-1]), durations
    _plays_end_to_end(ingest, stream["id"], ["240p"], seconds=13.0)
