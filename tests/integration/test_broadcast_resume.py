"""`chunkcast broadcast` continues its stream: after a restart of the broadcaster, and through
an outage of the server (frozen with SIGSTOP, or killed and started again)."""

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from chunkcast.media.broadcast_argv import AUDIO_PRIMING_S
from chunkcast.testing import Server, free_port, make_clip, run_chunkcast
from tests.integration.live_support import (
    create_stream,
    seqs,
    start_broadcast,
    wait_for_renditions,
    watch,
    ws_url,
)
from tests.integration.media_checks import continuity_problems

pytestmark = pytest.mark.integration

# Long enough for a broadcaster to come back, or an outage to end, before the server ends
# the stream (idle) or gives up on a missing chunk (gap).
PATIENT = {"CHUNKCAST_LIVE_GAP_TIMEOUT_SECONDS": "10",
           "CHUNKCAST_LIVE_IDLE_TIMEOUT_SECONDS": "25", "CHUNKCAST_X264_PRESET": "ultrafast"}
OUTAGE_S = 12.0  # longer than one attempt's timeout (10 s) and than the old retries (~4 s)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("resume") / "clip.mp4", seconds=8, size="426x240")


@contextlib.contextmanager
def patient_server(data_dir: Path, port: int) -> Iterator[Server]:
    """``chunkcast up`` on ``port`` (so that it can be started again on the same one)."""
    url = f"http://127.0.0.1:{port}"
    with run_chunkcast(["up", "--port", str(port)], data_dir,
                       env={**PATIENT, "CHUNKCAST_PUBLIC_URL": url},
                       health_url=f"{url}/healthz") as proc:
        token = (data_dir / "admin-token").read_text().strip()
        yield Server(url, data_dir, token, proc.pid, data_dir / "server.log")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with patient_server(tmp_path_factory.mktemp("patient"), free_port()) as running:
        yield running


def resume_point(server: Server, stream: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/v1/streams/{stream['id']}/resume",
                       headers={"X-Stream-Key": stream["stream_key"]})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def stored_chunks(server: Server, stream_id: str) -> dict[str, str]:
    folder = server.data_dir / "objects" / "chunks" / stream_id
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.ts")}


def chunk_file(seq: int) -> str:
    return f"{seq:08d}.ts"


def test_a_restarted_broadcaster_continues_the_stream_where_it_stopped(
    server: Server, clip: Path, tmp_path: Path
) -> None:
    stream = create_stream(server)

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, str]]:
        messages: list[dict[str, Any]] = []
        three_seen = asyncio.Event()

        async def viewer() -> None:  # from the first segment to the end, across the restart
            async with websockets.connect(ws_url(server, stream["id"], "240p", since=-1)) as ws:
                async for raw in ws:
                    message = json.loads(raw)
                    messages.append(message)
                    if message.get("seq") == 3:
                        three_seen.set()
                    if message.get("status") == "ended":
                        return

        first = start_broadcast(server, stream, clip, tmp_path / "first.log", "--loop")
        try:
            await asyncio.to_thread(wait_for_renditions, server, stream["id"])
            watching = asyncio.create_task(viewer())
            await asyncio.wait_for(three_seen.wait(), 60)
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # no goodbye: its ffmpeg dies with it
            await asyncio.to_thread(first.wait)
        resume = resume_point(server, stream)
        before = stored_chunks(server, stream["id"])
        second = start_broadcast(server, stream, clip, tmp_path / "second.log")
        try:
            assert await asyncio.to_thread(second.wait, 60) == 0
        finally:
            if second.poll() is None:
                os.killpg(second.pid, signal.SIGKILL)
        await asyncio.wait_for(watching, 60)
        return messages, resume, before

    messages, resume, before = asyncio.run(scenario())
    resumed_at = resume["next_seq"]
    assert resume["status"] == "live" and resumed_at >= 4
    log = (tmp_path / "second.log").read_text()
    assert f"resuming stream {stream['id']} at chunk {resumed_at} " in log
    assert "stream ended after 8 chunks (0 skipped)" in log, log

    # Every seq once, in order, none lost, none sent twice.
    segments = [m for m in messages if m["type"] == "segment"]
    assert seqs(messages) == list(range(resumed_at + 8)) and not seqs(messages, "gap")
    # What the viewers already had was not overwritten.
    after = stored_chunks(server, stream["id"])
    for seq in range(resumed_at):
        assert after[chunk_file(seq)] == before[chunk_file(seq)], seq
    # One timeline: each segment starts where the one before ended (the resumed encode's
    # first packet is its audio priming, one AAC frame before its first picture).
    for earlier, later in itertools.pairwise(segments):
        step = later["pts_start"] - (earlier["pts_start"] + earlier["duration"])
        assert abs(step) <= AUDIO_PRIMING_S + 1e-3, (earlier, later)
    # Decoded: the pictures run on without a jump; in the sound only the join itself.
    problems = continuity_problems(f"{server.url}/play/{stream['id']}/240p/index.m3u8?dvr=1")
    assert [p for p in problems if p.startswith("video")] == []
    assert len(problems) <= 1, problems


def test_a_broadcaster_refuses_to_resume_an_ended_stream(
    server: Server, clip: Path, tmp_path: Path
) -> None:
    stream = create_stream(server)
    ended = httpx.post(f"{server.url}/api/v1/streams/{stream['id']}/end",
                       headers={"X-Stream-Key": stream["stream_key"]})
    assert ended.status_code == 200, ended.text
    proc = start_broadcast(server, stream, clip, tmp_path / "ended.log")
    assert proc.wait(timeout=30) == 1
    assert "the server refused the broadcast: resume: 409" in (tmp_path / "ended.log").read_text()


# An outage of the server: over when it returns, as a context for the server that follows.
Outage = Callable[[subprocess.Popen[bytes], Path, int], contextlib.AbstractContextManager[object]]


def _freeze(proc: subprocess.Popen[bytes], data_dir: Path, port: int
            ) -> contextlib.AbstractContextManager[object]:
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE_S)  # the outage itself
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    return contextlib.nullcontext()


def _restart(proc: subprocess.Popen[bytes], data_dir: Path, port: int
             ) -> contextlib.AbstractContextManager[object]:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(OUTAGE_S - 4)  # the outage itself (starting again takes a few seconds more)
    return patient_server(data_dir, port)


@pytest.mark.parametrize("outage", [_freeze, _restart], ids=["frozen", "killed-and-restarted"])
def test_every_chunk_cut_during_an_outage_of_the_server_arrives(
    outage: Outage, tmp_path: Path
) -> None:
    source = make_clip(tmp_path / "twelve.mp4", seconds=12, size="426x240")
    data, port = tmp_path / "data", free_port()
    log = tmp_path / "broadcast.log"
    url = f"http://127.0.0.1:{port}"
    with run_chunkcast(["up", "--port", str(port)], data,
                       env={**PATIENT, "CHUNKCAST_PUBLIC_URL": url},
                       health_url=f"{url}/healthz") as proc:
        server = Server(url, data, (data / "admin-token").read_text().strip(), proc.pid,
                        data / "server.log")
        stream = create_stream(server)
        broadcast = start_broadcast(server, stream, source, log)
        try:
            wait_for_renditions(server, stream["id"])
            asyncio.run(watch(ws_url(server, stream["id"], "240p", since=-1), until_seq=1))
            with outage(proc, data, port):
                assert broadcast.wait(timeout=90) == 0, log.read_text()
                messages = asyncio.run(watch(ws_url(server, stream["id"], "240p", since=-1),
                                             until_status="ended"))
        finally:
            if broadcast.poll() is None:
                os.killpg(broadcast.pid, signal.SIGKILL)
    text = log.read_text()
    assert "stream ended after 12 chunks (0 skipped)" in text, text
    # The outage was real: some chunk waited it out.
    waits = [int(ms) for ms in re.findall(r"chunk \d+ sent in (\d+) ms", text)]
    assert max(waits) >= (OUTAGE_S - 6) * 1000, waits
    assert seqs(messages) == list(range(12)) and not seqs(messages, "gap")
