"""A real broadcast: `chunkcast broadcast` -> chunks -> per-chunk transcodes -> viewers."""

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkcast.testing import Server, make_clip
from tests.integration.live_support import (
    create_stream,
    seqs,
    start_broadcast,
    wait_for_renditions,
    watch,
    ws_url,
)
from tests.integration.media_checks import continuity_problems, decodes_cleanly, played_duration

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def match(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("match") / "match.mp4", seconds=10, size="640x360")


async def _viewers(server: Server, stream_id: str, renditions: list[str]
                   ) -> dict[str, list[dict[str, Any]]]:
    """One viewer per rendition from the first segment to the end; the 360p viewer leaves
    after three segments and comes back with ``since``."""

    async def follow(rendition: str) -> list[dict[str, Any]]:
        if rendition != "360p":
            return await watch(ws_url(server, stream_id, rendition, since=-1),
                               until_status="ended")
        first = await watch(ws_url(server, stream_id, rendition, since=-1), until_seq=2)
        await asyncio.sleep(2.5)  # segments keep coming while this viewer is away
        rest = await watch(ws_url(server, stream_id, rendition, since=seqs(first)[-1]),
                           until_status="ended")
        return first + rest

    results = await asyncio.gather(*(follow(r) for r in renditions))
    return dict(zip(renditions, results, strict=True))


def test_a_broadcast_reaches_every_viewer_in_order_and_replays_after_the_end(
    live_server: Server, match: Path
) -> None:
    stream = create_stream(live_server)
    log = live_server.data_dir / f"broadcast-{stream['id']}.log"
    proc = start_broadcast(live_server, stream, match, log)
    try:
        renditions = wait_for_renditions(live_server, stream["id"])
        assert renditions == ["240p", "360p"]
        live = httpx.get(f"{live_server.url}/play/{stream['id']}/240p/index.m3u8")
        while live.status_code == 404:  # the ladder is known before its first segment
            time.sleep(0.1)
            live = httpx.get(f"{live_server.url}/play/{stream['id']}/240p/index.m3u8")
        assert live.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=1"
        assert "#EXT-X-ENDLIST" not in live.text and "#EXT-X-PROGRAM-DATE-TIME" in live.text
        received = asyncio.run(_viewers(live_server, stream["id"], renditions))
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    chunks = httpx.get(f"{live_server.url}/api/v1/videos/{stream['id']}").json()
    assert chunks["status"] == "ended"
    for rendition, messages in received.items():
        got = seqs(messages)
        assert got == list(range(len(got))), (rendition, got)  # every seq, in order, once
        assert len(got) >= 10
        assert not seqs(messages, "gap")
        assert messages[0]["type"] == "init" and messages[0]["codecs"].startswith("avc1.")
    dvr = f"{live_server.url}/play/{stream['id']}/240p/index.m3u8?dvr=1"
    assert continuity_problems(dvr) == []
    # Ended: the whole stream plays as VOD, to the end.
    ended = httpx.get(f"{live_server.url}/play/{stream['id']}/360p/index.m3u8").text
    assert ended.rstrip().endswith("#EXT-X-ENDLIST")
    played, kinds = played_duration(f"{live_server.url}/play/{stream['id']}/360p/index.m3u8")
    assert kinds == {"video", "audio"} and abs(played - 10.0) < 0.2
    assert decodes_cleanly(f"{live_server.url}/play/{stream['id']}/360p/index.m3u8") == ""
    static = live_server.data_dir / "objects" / "media" / stream["id"] / "360p" / "index.m3u8"
    deadline = time.monotonic() + 10
    while not static.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "#EXT-X-ENDLIST" in static.read_text()


def test_a_killed_broadcaster_ends_the_stream_after_the_timeout(
    live_server: Server, match: Path
) -> None:
    stream = create_stream(live_server)
    log = live_server.data_dir / f"broadcast-{stream['id']}.log"
    proc = start_broadcast(live_server, stream, match, log, "--loop")
    try:
        wait_for_renditions(live_server, stream["id"])
        assert httpx.get(f"{live_server.url}/api/v1/videos/{stream['id']}").json()[
            "status"] == "live"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    messages = asyncio.run(watch(ws_url(live_server, stream["id"], "240p"), until_status="ended",
                                 timeout_s=30))
    assert messages[-1] == {"type": "status", "status": "ended"}
