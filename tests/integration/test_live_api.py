"""Live streams through the HTTP interface: keys, duplicate reports, corrupt chunks."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from chunkcast.testing import Server
from tests.integration.live_support import (
    create_stream,
    make_chunks,
    push_chunk,
    seqs,
    wait_for_renditions,
    watch,
    ws_url,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_chunks(tmp_path_factory.mktemp("chunks"), seconds=5)


def test_a_wrong_or_missing_stream_key_changes_nothing(live_server: Server,
                                                       chunks: list[Path]) -> None:
    stream = create_stream(live_server)
    base = f"{live_server.url}/api/v1/streams/{stream['id']}"
    body = {"seq": 0, "duration": 1.0}
    assert httpx.post(f"{base}/chunks", json=body).status_code == 401
    assert httpx.post(f"{base}/chunks", json=body,
                      headers={"X-Stream-Key": "nope"}).status_code == 403
    assert push_chunk(live_server, stream, 0, chunks[0].read_bytes(),
                      key="x" * 43).status_code == 403
    assert httpx.post(f"{base}/chunks/0/complete", json=body,
                      headers={"X-Stream-Key": "nope"}).status_code == 403
    assert httpx.post(f"{base}/end", headers={"X-Stream-Key": "nope"}).status_code == 403
    video = httpx.get(f"{live_server.url}/api/v1/videos/{stream['id']}").json()
    assert video["status"] == "idle"
    assert not (live_server.data_dir / "objects" / "chunks" / stream["id"]).exists()


def test_a_rotated_key_replaces_the_old_one(live_server: Server, chunks: list[Path]) -> None:
    stream = create_stream(live_server)
    rotated = httpx.post(f"{live_server.url}/api/v1/streams/{stream['id']}/key",
                         headers={"Authorization": f"Bearer {live_server.token}"})
    new_key = rotated.json()["stream_key"]
    assert push_chunk(live_server, stream, 0, chunks[0].read_bytes()).status_code == 403
    assert push_chunk(live_server, stream, 0, chunks[0].read_bytes(),
                      key=new_key).status_code == 202


def test_complete_before_upload_is_a_conflict(live_server: Server) -> None:
    stream = create_stream(live_server)
    response = httpx.post(f"{live_server.url}/api/v1/streams/{stream['id']}/chunks/0/complete",
                          json={"duration": 1.0}, headers={"X-Stream-Key": stream["stream_key"]})
    assert response.status_code == 409


def test_the_same_chunk_reported_twice_makes_one_segment(live_server: Server,
                                                         chunks: list[Path]) -> None:
    stream = create_stream(live_server)
    first = push_chunk(live_server, stream, 0, chunks[0].read_bytes())
    # Reported again (a stored chunk is not handed out for writing again: test_resume.py).
    again = httpx.post(f"{live_server.url}/api/v1/streams/{stream['id']}/chunks/0/complete",
                       json={"seq": 0, "duration": 1.0},
                       headers={"X-Stream-Key": stream["stream_key"]})
    assert first.json() == {"seq": 0, "new": True}
    assert again.json() == {"seq": 0, "new": False}
    push_chunk(live_server, stream, 1, chunks[1].read_bytes())
    messages = asyncio.run(watch(ws_url(live_server, stream["id"], "240p", since=-1),
                                 until_seq=1))
    assert seqs(messages) == [0, 1]
    playlist = httpx.get(f"{live_server.url}/play/{stream['id']}/240p/index.m3u8?dvr=1").text
    assert playlist.count("#EXTINF") == 2


def test_a_corrupt_chunk_is_skipped_with_a_gap_and_later_chunks_flow(
    live_server: Server, chunks: list[Path]
) -> None:
    stream = create_stream(live_server)
    push_chunk(live_server, stream, 0, chunks[0].read_bytes())
    push_chunk(live_server, stream, 1, b"\x47" + b"garbage" * 5000)
    for seq in (2, 3):
        push_chunk(live_server, stream, seq, chunks[seq].read_bytes())
    for rendition in ("240p", "360p"):
        messages = asyncio.run(watch(ws_url(live_server, stream["id"], rendition, since=-1),
                                     until_seq=3))
        assert seqs(messages) == [0, 2, 3]
        assert seqs(messages, "gap") == [1]
    playlist = httpx.get(f"{live_server.url}/play/{stream['id']}/240p/index.m3u8?dvr=1").text
    # The lost chunk keeps its place in the media sequence as a gap.
    lines = playlist.splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith("00000001.m4s"))
    assert lines[at - 2 : at] == ["#EXT-X-GAP", "#EXTINF:1.000000,"]
    assert "#EXT-X-VERSION:8" in lines
    assert [line.rsplit("/", 1)[1] for line in lines if line.endswith(".m4s")] == [
        f"{seq:08d}.m4s" for seq in range(4)]


def test_a_silent_stream_ends_after_the_idle_timeout(live_server: Server,
                                                     chunks: list[Path]) -> None:
    stream = create_stream(live_server)
    push_chunk(live_server, stream, 0, chunks[0].read_bytes())
    assert wait_for_renditions(live_server, stream["id"]) == ["240p", "360p"]
    messages = asyncio.run(watch(ws_url(live_server, stream["id"], "240p"),
                                 until_status="ended", timeout_s=20))
    assert messages[-1] == {"type": "status", "status": "ended"}
    video = httpx.get(f"{live_server.url}/api/v1/videos/{stream['id']}").json()
    assert video["status"] == "ended"
    assert push_chunk(live_server, stream, 1, chunks[1].read_bytes()).status_code == 409


def test_a_stream_reports_its_status_viewers_and_last_chunk(live_server: Server,
                                                            chunks: list[Path]) -> None:
    stream = create_stream(live_server)
    url = f"{live_server.url}/api/v1/streams/{stream['id']}"
    assert httpx.get(url).json() == {"id": stream["id"], "title": "live test", "status": "idle",
                                     "viewers": 0, "last_chunk_at": None, "ingest": None}
    sent = datetime.now(UTC)
    assert push_chunk(live_server, stream, 0, chunks[0].read_bytes()).status_code == 202
    live = httpx.get(url).json()
    assert live["status"] == "live"
    last_chunk = datetime.fromisoformat(live["last_chunk_at"])
    assert sent - timedelta(seconds=1) <= last_chunk <= datetime.now(UTC)
    wait_for_renditions(live_server, stream["id"])

    async def viewers_while_watching() -> tuple[int, int]:
        async with httpx.AsyncClient() as http:
            async with websockets.connect(ws_url(live_server, stream["id"], "240p")) as ws:
                await ws.recv()  # init: the viewer is being served
                watching = await _poll_viewers(http, url, until=1)
            return watching, await _poll_viewers(http, url, until=0)

    assert asyncio.run(viewers_while_watching()) == (1, 0)


async def _poll_viewers(http: httpx.AsyncClient, url: str, *, until: int) -> int:
    """The viewer count, once it is ``until`` or after 10 s."""
    status: dict[str, Any] = {}
    for _ in range(100):
        status = (await http.get(url)).json()
        if status["viewers"] == until:
            break
        await asyncio.sleep(0.1)
    count: int = status["viewers"]
    return count


def test_the_status_of_an_unknown_stream_or_a_vod_is_not_found(live_server: Server) -> None:
    vod = httpx.post(f"{live_server.url}/api/v1/videos", json={"title": "not live"},
                     headers={"Authorization": f"Bearer {live_server.token}"}).json()
    for video_id in ("a" * 16, vod["id"]):
        response = httpx.get(f"{live_server.url}/api/v1/streams/{video_id}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_a_viewer_who_comes_before_the_first_segment_gets_a_usable_init(
    live_server: Server, chunks: list[Path],
) -> None:
    """The ladder is known as soon as the first chunk is probed, its codecs only once that
    rendition's first segment is stored: a viewer arriving in between waits for them."""
    stream = create_stream(live_server)

    async def scenario() -> list[dict[str, Any]]:
        pushing = asyncio.create_task(asyncio.to_thread(
            push_chunk, live_server, stream, 0, chunks[0].read_bytes()))
        rendition = None
        async with httpx.AsyncClient() as client:
            while rendition is None:
                video = (await client.get(
                    f"{live_server.url}/api/v1/videos/{stream['id']}")).json()
                rendition = next((r["name"] for r in video["renditions"]), None)
                await asyncio.sleep(0.01)
        messages = await watch(ws_url(live_server, stream["id"], rendition), until_seq=0,
                               timeout_s=30)
        await pushing
        return messages

    messages = asyncio.run(scenario())
    assert messages[0]["type"] == "init" and messages[0]["codecs"], messages[0]
    assert seqs(messages) == [0]
