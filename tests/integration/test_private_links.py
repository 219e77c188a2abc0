"""Signed links of private videos never renew themselves: whatever a link leads to (the
video resource, playlists, WebSocket messages) carries that link's own expiry, an expired
link is refused everywhere, and only the admin is given fresh links. A private stream's
status is not public either."""

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chunkcast.domain.signing import playback_secret, playback_signature
from chunkcast.testing import Server, run_server
from tests.conftest import LIVE_ENV
from tests.integration.api import admin, put, wait_done
from tests.integration.live_support import make_chunks, push_chunk

pytestmark = pytest.mark.integration

FRESH_S = 4 * 3600  # CHUNKCAST_PLAYBACK_URL_SECONDS: the lifetime of the admin's links


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("private"),
                    env={**LIVE_ENV, "CHUNKCAST_VOD_CHUNK_SECONDS": "4"}) as running:
        yield running


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_chunks(tmp_path_factory.mktemp("chunks"), seconds=4, size="320x240")


@pytest.fixture(scope="module")
def video(platform: Server, clips: Path) -> dict[str, Any]:
    """A private upload, ready, as the admin reads it."""
    with admin(platform) as client:
        created = client.post("/api/v1/videos", json={"title": "secret", "private": True})
        assert created.status_code == 201, created.text
        assert put(created.json(), (clips / "silent.mp4").read_bytes()).status_code == 200
        assert client.post(f"/api/v1/videos/{created.json()['id']}/complete").status_code == 202
        ready = wait_done(client, created.json()["id"])
    assert ready["status"] == "ready" and ready["private"], ready
    return ready


def link(server: Server, video_id: str, expires: int) -> str:
    """The token of a link to ``video_id`` that expires at ``expires``, as the admin would
    have minted it (long ago, for one expiring soon)."""
    secret = playback_secret((server.data_dir / "secret-key").read_text().strip())
    return f"e={expires}&st={playback_signature(secret, video_id, expires)}"


def expiries(text: str) -> set[int]:
    """Every ``e`` of the URLs in ``text``."""
    return {int(e) for e in re.findall(r"[?&]e=(\d+)", text)}


def expiry(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["e"][0])


def playlist_uris(text: str) -> list[str]:
    init = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)
    return init + [line for line in text.splitlines() if line and not line.startswith("#")]


async def first_messages(url: str, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(30), websockets.connect(url) as ws:
        return [json.loads(await ws.recv()) for _ in range(count)]


async def refusal(url: str) -> int:
    """The close code (or handshake status) a viewer socket is refused with."""
    try:
        async with asyncio.timeout(10), websockets.connect(url) as ws:
            await ws.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code
    except InvalidStatus as rejected:
        return rejected.response.status_code
    raise AssertionError("the socket was not refused")


def ws_base(server: Server) -> str:
    return server.url.replace("http", "ws", 1)


def test_the_admin_is_given_fresh_links(platform: Server, video: dict[str, Any]) -> None:
    with admin(platform) as client:
        again = client.get(f"/api/v1/videos/{video['id']}").json()
    minted = expiry(again["playback"]["hls"])
    assert minted >= time.time() + FRESH_S - 5
    assert expiries(json.dumps(again["playback"])) == {minted}


def test_everything_a_link_leads_to_keeps_its_expiry(platform: Server,
                                                     video: dict[str, Any]) -> None:
    vid = video["id"]
    soon = int(time.time()) + 120
    token = link(platform, vid, soon)

    # The video resource: its playback block is that link, not a renewed one.
    held = httpx.get(f"{platform.url}/api/v1/videos/{vid}?{token}")
    assert held.status_code == 200, held.text
    assert held.json()["playback"]["token"] == token
    assert expiries(json.dumps(held.json()["playback"])) == {soon}

    # The playlists: variant URIs and segment URIs, all with the same token.
    master = httpx.get(held.json()["playback"]["hls"])
    assert master.status_code == 200, master.text
    variants = [line for line in master.text.splitlines() if line and not line.startswith("#")]
    assert variants and all(v.endswith(f"?{token}") for v in variants), variants
    media = httpx.get(f"{platform.url}/play/{vid}/{variants[0]}")
    assert media.status_code == 200, media.text
    uris = playlist_uris(media.text)
    assert len(uris) >= 2 and all(u.endswith(f"?{token}") for u in uris), uris
    assert all(httpx.get(u).status_code == 200 for u in uris[:2])

    # The WebSocket: init and segment URLs carry the viewer's own token. Two viewers with
    # different links, at once, each get theirs.
    rendition = variants[0].split("/")[0]
    later = int(time.time()) + 600
    other = link(platform, vid, later)

    async def both() -> list[list[dict[str, Any]]]:
        base = f"{ws_base(platform)}/ws/{vid}/{rendition}?since=-1"
        return list(await asyncio.gather(first_messages(f"{base}&{token}", 3),
                                         first_messages(f"{base}&{other}", 3)))

    for messages, wanted in zip(asyncio.run(both()), (token, other), strict=True):
        urls = [m["init_url"] for m in messages if m["type"] == "init"] + [
            m["url"] for m in messages if m["type"] == "segment"]
        assert len(urls) == 3 and all(u.endswith(f"?{wanted}") for u in urls), urls
        assert all(httpx.get(u).status_code == 200 for u in urls)


def test_an_expired_link_is_refused_everywhere(platform: Server,
                                               video: dict[str, Any]) -> None:
    vid = video["id"]
    gone = link(platform, vid, int(time.time()) - 5)
    segment = playlist_uris(httpx.get(
        f"{platform.url}/play/{vid}/240p/index.m3u8?{video['playback']['token']}").text)[1]
    for path in (f"/api/v1/videos/{vid}", f"/play/{vid}/master.m3u8",
                 f"/play/{vid}/240p/index.m3u8", urlsplit(segment).path):
        answer = httpx.get(f"{platform.url}{path}?{gone}")
        assert answer.status_code == 410, (path, answer.text)
    assert asyncio.run(refusal(f"{ws_base(platform)}/ws/{vid}/240p?{gone}")) == 4410
    # And a link for another video, or a tampered one, is no link at all.
    tampered = gone.replace("st=", "st=x", 1)
    assert httpx.get(f"{platform.url}/api/v1/videos/{vid}?{tampered}").status_code == 403
    assert asyncio.run(refusal(f"{ws_base(platform)}/ws/{vid}/240p?{tampered}")) == 4403


def create_private_stream(server: Server, title: str = "secret live") -> dict[str, Any]:
    with admin(server) as client:
        created = client.post("/api/v1/streams", json={"title": title, "private": True})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def admin_renditions(server: Server, video_id: str, timeout_s: float = 30) -> list[str]:
    """A private stream's ladder, as the admin reads it, once its first chunk is in."""
    deadline = time.monotonic() + timeout_s
    with admin(server) as client:
        while time.monotonic() < deadline:
            video = client.get(f"/api/v1/videos/{video_id}").json()
            if video["renditions"]:
                return [r["name"] for r in video["renditions"]]
            time.sleep(0.1)
    raise AssertionError("the first chunk was never transcoded")


def test_a_live_viewer_s_urls_expire_with_its_link(platform: Server,
                                                   chunks: list[Path]) -> None:
    """Segments pushed while a private stream's viewers watch carry each viewer's own link,
    not a fresh one, though the channel was loaded before they came."""
    stream = create_private_stream(platform)
    sid = stream["id"]
    assert push_chunk(platform, stream, 0, chunks[0].read_bytes()).status_code == 202
    rendition = admin_renditions(platform, sid)[0]
    soon = link(platform, sid, int(time.time()) + 120)
    with admin(platform) as client:
        minted = client.get(f"/api/v1/videos/{sid}").json()["playback"]["token"]
    assert minted != soon

    async def watch_live(token: str, started: asyncio.Event) -> list[dict[str, Any]]:
        url = f"{ws_base(platform)}/ws/{sid}/{rendition}?since=-1&{token}"
        messages: list[dict[str, Any]] = []
        async with asyncio.timeout(60), websockets.connect(url) as ws:
            async for raw in ws:
                messages.append(json.loads(raw))
                if messages[-1].get("seq") == 0:
                    started.set()  # the replay is over: what comes next is live
                if messages[-1].get("seq") == 2:
                    return messages
        raise AssertionError("the socket closed early")

    async def scenario() -> list[list[dict[str, Any]]]:
        ready = [asyncio.Event(), asyncio.Event()]
        viewers = [asyncio.create_task(watch_live(token, event))
                   for token, event in zip((soon, minted), ready, strict=True)]
        await asyncio.gather(*(event.wait() for event in ready))
        for seq in (1, 2):
            answer = await asyncio.to_thread(push_chunk, platform, stream, seq,
                                             chunks[seq].read_bytes())
            assert answer.status_code == 202, answer.text
        return list(await asyncio.gather(*viewers))

    for messages, token in zip(asyncio.run(scenario()), (soon, minted), strict=True):
        assert [m["seq"] for m in messages if m["type"] == "segment"] == [0, 1, 2]
        urls = [m["init_url"] for m in messages if m["type"] == "init"] + [
            m["url"] for m in messages if m["type"] == "segment"]
        assert len(urls) == 4 and all(u.endswith(f"?{token}") for u in urls), urls
        assert all(httpx.get(u).status_code == 200 for u in urls)
    # Its live playlist keeps the link too.
    media = httpx.get(f"{platform.url}/play/{sid}/{rendition}/index.m3u8?{soon}")
    assert media.status_code == 200 and expiries(media.text) == {expiry(f"?{soon}")}


def test_a_private_stream_s_status_is_given_to_the_admin_and_link_holders_only(
    platform: Server,
) -> None:
    stream = create_private_stream(platform, "the board meeting")
    sid = stream["id"]
    url = f"{platform.url}/api/v1/streams/{sid}"
    unknown = httpx.get(f"{platform.url}/api/v1/streams/{'a' * 16}")
    assert unknown.status_code == 404
    tampered = link(platform, sid, int(time.time()) + 120).replace("st=", "st=x", 1)
    other = link(platform, "b" * 16, int(time.time()) + 120)
    for query in ("", f"?{tampered}", f"?{other}"):
        refused = httpx.get(url + query)
        assert (refused.status_code, refused.json()) == (404, unknown.json()), query
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 404
    expired = httpx.get(f"{url}?{link(platform, sid, int(time.time()) - 5)}")
    assert expired.status_code == 410
    wanted = {"id": sid, "title": "the board meeting", "status": "idle", "viewers": 0,
              "last_chunk_at": None, "ingest": None}
    with admin(platform) as client:
        assert client.get(url).json() == wanted
    assert httpx.get(f"{url}?{link(platform, sid, int(time.time()) + 120)}").json() == wanted

    # Its dashboard page carries neither its title nor its status; a public one's does.
    page = httpx.get(f"{platform.url}/streams/{sid}")
    assert page.status_code == 200
    assert "the board meeting" not in page.text and "status-idle" not in page.text
    assert "data-private" in page.text
    with admin(platform) as client:
        public = client.post("/api/v1/streams", json={"title": "open house"}).json()
    shown = httpx.get(f"{platform.url}/streams/{public['id']}").text
    assert "open house" in shown and "status-idle" in shown and "data-private" not in shown
    assert httpx.get(f"{platform.url}/api/v1/streams/{public['id']}").json()["title"] == \
        "open house"


def test_ending_a_private_stream_with_its_key_mints_no_links(platform: Server) -> None:
    created = httpx.post(f"{platform.url}/api/v1/streams", json={"title": "k", "private": True},
                         headers={"Authorization": f"Bearer {platform.token}"})
    assert created.status_code == 201, created.text
    stream = created.json()
    ended = httpx.post(f"{platform.url}/api/v1/streams/{stream['id']}/end",
                       headers={"X-Stream-Key": stream["stream_key"]})
    assert ended.status_code == 200, ended.text
    playback = ended.json()["playback"]
    assert playback["token"] is None
    assert "st=" not in playback["hls"] and "st=" not in playback["watch"]
