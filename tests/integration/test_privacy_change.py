"""A privacy change takes effect at once on the viewers' sockets: a live stream made private
while it is watched closes the viewer without a link (4403), keeps the one with a link and
refuses new ones without; made public again, a viewer without a link is served unsigned
URLs."""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from chunkcast.domain.signing import playback_secret, playback_signature
from chunkcast.testing import Server, run_server
from tests.integration.api import admin
from tests.integration.live_support import (
    create_stream,
    make_chunks,
    push_chunk,
    wait_for_renditions,
    ws_url,
)

pytestmark = pytest.mark.integration

FORBIDDEN = 4403


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A stream stays live through the whole test (no idle end)."""
    env = {"CHUNKCAST_X264_PRESET": "ultrafast", "CHUNKCAST_LIVE_IDLE_TIMEOUT_SECONDS": "300"}
    with run_server(tmp_path_factory.mktemp("privacy"), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_chunks(tmp_path_factory.mktemp("chunks"), seconds=4, size="320x240")


def link(server: Server, video_id: str) -> str:
    """A link's token, as the admin mints them for a private video (valid for an hour)."""
    secret = playback_secret((server.data_dir / "secret-key").read_text().strip())
    expires = int(time.time()) + 3600
    return f"e={expires}&st={playback_signature(secret, video_id, expires)}"


def set_private(server: Server, video_id: str, private: bool) -> None:
    with admin(server) as client:
        answer = client.patch(f"/api/v1/videos/{video_id}", json={"private": private})
    assert answer.status_code == 200 and answer.json()["private"] is private, answer.text


async def until_seq(ws: websockets.ClientConnection, seq: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while not messages or messages[-1].get("seq") != seq:
        messages.append(json.loads(await ws.recv()))
    return messages


async def close_code(ws: websockets.ClientConnection) -> int:
    """Read until the server closes the socket; its close code."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code


async def refusal(url: str) -> int:
    async with asyncio.timeout(10), websockets.connect(url) as ws:
        return await close_code(ws)


def test_made_private_while_watched_then_public_again(platform: Server,
                                                      chunks: list[Path]) -> None:
    stream = create_stream(platform)
    sid = stream["id"]
    assert push_chunk(platform, stream, 0, chunks[0].read_bytes()).status_code == 202
    rendition = wait_for_renditions(platform, sid)[0]
    url = ws_url(platform, sid, rendition, since=-1)

    held = link(platform, sid)

    async def scenario() -> None:
        async with asyncio.timeout(60), websockets.connect(url) as watching, \
                websockets.connect(f"{url}&{held}") as linked:
            first = await until_seq(watching, 0)
            assert first[0]["type"] == "init" and "/media/" in first[0]["init_url"]
            await until_seq(linked, 0)

            await asyncio.to_thread(set_private, platform, sid, True)
            assert await close_code(watching) == FORBIDDEN
            # A viewer who came with a link stays, and is sent URLs signed with it.
            answer = await asyncio.to_thread(push_chunk, platform, stream, 1,
                                             chunks[1].read_bytes())
            assert answer.status_code == 202
            assert (await until_seq(linked, 1))[-1]["url"].endswith(f"/private/media/{sid}/"
                                                                    f"{rendition}/00000001"
                                                                    f".m4s?{held}")
        assert await refusal(url) == FORBIDDEN
        with admin(platform) as client:
            token = client.get(f"/api/v1/videos/{sid}").json()["playback"]["token"]
        async with asyncio.timeout(60), websockets.connect(f"{url}&{token}") as signed:
            replay = await until_seq(signed, 0)
            assert replay[-1]["url"].endswith(f"?{token}") and "/private/" in replay[-1]["url"]

            await asyncio.to_thread(set_private, platform, sid, False)
            async with websockets.connect(url) as public:
                again = await until_seq(public, 0)
                assert "/media/" in again[0]["init_url"] and "/media/" in again[-1]["url"]
                answer = await asyncio.to_thread(push_chunk, platform, stream, 2,
                                                 chunks[2].read_bytes())
                assert answer.status_code == 202
                live = (await until_seq(public, 2))[-1]
                assert live["url"].startswith(f"{platform.url}/media/")
                assert httpx.get(live["url"]).status_code == 200
            # The viewer who came with a link stays, and is sent the public URLs now.
            assert (await until_seq(signed, 2))[-1]["url"] == live["url"]

    asyncio.run(scenario())
