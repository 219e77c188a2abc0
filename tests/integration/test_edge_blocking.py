"""Low-Latency HLS blocking playlist reloads through the nginx edge that `chunkcast deploy
nginx` writes, in front of a real `chunkcast up` with live streams whose chunks the tests
send when they choose: viewers waiting for the same part share one origin request and get
its answer together, made-up arguments do not reach the origin, nothing at the edge gives up
before the origin does, and private streams still need valid signed links."""

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chunkcast.domain.media_types import PLAYLIST_BLOCKING
from chunkcast.domain.signing import playback_secret, playback_signature
from chunkcast.services.playback import AHEAD_MSN, BLOCK_TARGETS
from chunkcast.testing import Server, free_port, origin_served, run_server
from tests.conftest import LIVE_ENV
from tests.integration.api import admin
from tests.integration.live_support import make_chunks, push_chunk
from tests.servers.nginx import Nginx, deploy, run_nginx

pytestmark = pytest.mark.integration

VIEWERS = 40
# Viewers waiting on the edge's lock look for the first request's answer every 500 ms
# (nginx's pace); the rest is slack for a loaded 2-core machine.
TOGETHER_S = 1.0
TARGET_S = 1  # the target duration of streams of 1 s chunks


@dataclass(frozen=True)
class Live:
    api: Server
    edge: Nginx
    chunks: list[Path]  # 1 s MPEG-TS chunks, sent in turn to each stream

    def served(self) -> float:
        """Playlists the origin has answered (200s) so far."""
        return origin_served(self.api).get("playlist", 0.0)

    def upstream_requests(self, stream: "Stream", lines: int) -> int:
        """Of the edge's requests for the stream's playlist logged once it has ``lines``
        of them, those it sent to the origin."""
        deadline = time.monotonic() + 10
        while len(logged := [line for line in self.edge.access_log()
                             if f" {stream.path} " in line]) < lines:
            assert time.monotonic() < deadline, logged
            time.sleep(0.05)
        return sum("upstream=-" not in line for line in logged)


@dataclass
class Stream:
    id: str
    key: str
    path: str = ""  # of its media playlist: /play/ID/RENDITION/index.m3u8
    token: str = ""  # a private stream's signed link (e=…&st=…)
    sent: int = 0  # chunks sent so far

    def url(self, base: str, query: str) -> str:
        """Its media playlist at ``base`` with ``query`` (and its signed link, if any)."""
        return f"{base}{self.path}?{'&'.join(q for q in (query, self.token) if q)}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("edge-blocking")
    chunks = make_chunks(root / "chunks", seconds=4, size="320x240")
    edge_port = free_port()
    env = {**LIVE_ENV, "CHUNKCAST_CDN_URL": f"http://127.0.0.1:{edge_port}",
           "CHUNKCAST_LIVE_IDLE_TIMEOUT_SECONDS": "120"}  # live while a test waits
    with run_server(root / "api", env=env) as api:
        deploy(root / "nginx", [api.url.removeprefix("http://")], api.url, edge_port,
               free_port(), {"CHUNKCAST_DATA_DIR": str(api.data_dir)})
        with run_nginx(root / "nginx", "edge", edge_port) as edge:
            yield Live(api, edge, chunks)


def newest(playlist: str) -> int:
    """The Media Sequence Number of a media playlist's last segment."""
    first = int(re.findall(r"^#EXT-X-MEDIA-SEQUENCE:(\d+)$", playlist, re.MULTILINE)[0])
    return first + playlist.count("#EXTINF:") - 1


def send(live: Live, stream: Stream) -> int:
    """Send the stream's next chunk; the Media Sequence Number its segment will have (seqs
    count from 0, Media Sequence Numbers from 1)."""
    answer = push_chunk(live.api, {"id": stream.id, "stream_key": stream.key}, stream.sent,
                        live.chunks[stream.sent].read_bytes())
    assert answer.is_success, answer.text
    stream.sent += 1
    return stream.sent


def start(live: Live, *, private: bool = False) -> Stream:
    """A live stream whose first segment (Media Sequence Number 1) is out."""
    with admin(live.api) as client:
        created = client.post("/api/v1/streams", json={"title": "ll", "private": private})
        assert created.status_code == 201, created.text
        stream = Stream(created.json()["id"], created.json()["stream_key"])
        send(live, stream)
        deadline = time.monotonic() + 30
        while not (video := client.get(f"/api/v1/videos/{stream.id}").json())["renditions"]:
            assert time.monotonic() < deadline, video
            time.sleep(0.1)
    stream.path = f"/play/{stream.id}/{video['renditions'][0]['name']}/index.m3u8"
    stream.token = video["playback"].get("token") or ""
    # Asked of the origin as a blocking request, answered the moment the segment is listed
    # (404 until the process has heard of the rendition's first segment).
    while (first := httpx.get(stream.url(live.api.url, "_HLS_msn=1"), timeout=30)
           ).status_code == 404:
        assert time.monotonic() < deadline, first.text
        time.sleep(0.1)
    assert first.status_code == 200 and newest(first.text) == 1, first.text
    return stream


async def timed_get(client: httpx.AsyncClient, url: str) -> tuple[httpx.Response, float]:
    response = await client.get(url)
    return response, time.monotonic()


async def wait_for_part(live: Live, stream: Stream, urls: list[str], *, after_s: float = 0.0
                        ) -> tuple[list[tuple[httpx.Response, float]], float]:
    """Ask for ``urls`` at once through the edge, send the stream's next chunk once every
    request is in (and ``after_s`` later); the answers with when each came, and when the
    chunk was sent."""
    limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=0)
    before = live.edge.client_connections()
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        asked = [asyncio.create_task(timed_get(client, url)) for url in urls]
        deadline = time.monotonic() + 10
        while live.edge.client_connections() < before + len(urls):
            assert time.monotonic() < deadline and not any(t.done() for t in asked)
            await asyncio.sleep(0.02)
        await asyncio.sleep(after_s)
        sent = time.monotonic()
        await asyncio.to_thread(send, live, stream)
        return await asyncio.gather(*asked), sent


def test_viewers_waiting_for_the_next_part_get_it_together_from_one_origin_request(
    live: Live,
) -> None:
    """40 viewers ask for part 0 of the next segment, each with an argument of its own
    (cache busting): the origin is asked once, and every viewer has the part within a
    moment of the first."""
    stream = start(live)
    served = live.served()
    urls = [stream.url(live.edge.url, f"_HLS_msn=2&_HLS_part=0&x={i}") for i in range(VIEWERS)]
    answers, sent = asyncio.run(wait_for_part(live, stream, urls))
    assert {a.status_code for a, _ in answers} == {200}
    assert len({a.text for a, _ in answers}) == 1 and newest(answers[0][0].text) == 2
    assert answers[0][0].headers["cache-control"] == PLAYLIST_BLOCKING
    first = min(at for _, at in answers)
    assert first > sent and max(at for _, at in answers) - first < TOGETHER_S, [
        round(at - first, 3) for _, at in answers]
    assert live.served() - served == 1
    assert live.upstream_requests(stream, VIEWERS) == 1
    # Later viewers of that part, however they spell the request, are served by the edge.
    for query in ("_HLS_part=0&_HLS_msn=02&y=1", f"_HLS_msn=2&_HLS_part=00&e={time.time():.0f}"):
        again = httpx.get(stream.url(live.edge.url, query))
        assert again.status_code == 200 and again.headers["x-cache"] == "HIT", query
        assert again.text == answers[0][0].text
    assert live.served() - served == 1


def test_a_blocking_request_waits_as_long_as_the_origin_holds_it(live: Live) -> None:
    """The part comes about 2 s after the request (its chunk is sent 1 s after, then
    transcoded): the edge waits for it; and when it does not come, the origin's own limit
    (three target durations) ends the wait, with its 503."""
    stream = start(live)
    started = time.monotonic()
    answers, sent = asyncio.run(wait_for_part(live, stream, [
        stream.url(live.edge.url, "_HLS_msn=2&_HLS_part=0")], after_s=1.0))
    (answer, at), = answers
    assert answer.status_code == 200 and newest(answer.text) == 2, answer.text
    assert at > sent and at - started > 1.0
    # Two segments ahead, within what the origin accepts: never sent.
    started = time.monotonic()
    late = httpx.get(stream.url(live.edge.url, f"_HLS_msn={2 + AHEAD_MSN}"), timeout=60)
    waited = time.monotonic() - started
    assert late.status_code == 503 and late.json()["error"]["code"] == "not_yet", late.text
    assert late.headers["retry-after"] == "1"
    assert BLOCK_TARGETS * TARGET_S - 0.5 < waited < BLOCK_TARGETS * TARGET_S + 2, waited


def test_viewers_of_a_part_that_does_not_come_share_the_origin_answer(live: Live) -> None:
    """When the origin gives up on a part (503), every viewer waiting for it at the edge is
    told at once, not each after an origin request of its own."""
    stream = start(live)
    hold = BLOCK_TARGETS * TARGET_S

    async def ask() -> list[tuple[httpx.Response, float]]:
        async with httpx.AsyncClient(timeout=hold + 3) as client:
            return await asyncio.gather(*(timed_get(client, stream.url(
                live.edge.url, f"_HLS_msn={1 + AHEAD_MSN}&v={i}")) for i in range(5)))

    started = time.monotonic()
    answers = asyncio.run(ask())
    assert {a.status_code for a, _ in answers} == {503}
    assert max(at for _, at in answers) - started < hold + TOGETHER_S
    assert live.upstream_requests(stream, 5) == 1


def test_a_viewer_who_leaves_does_not_cancel_the_request_others_wait_on(live: Live) -> None:
    """The first viewer's request is the one sent to the origin; it gives up (a player's
    own timeout): the others still get the part from that one request."""
    stream = start(live)
    served = live.served()
    url = stream.url(live.edge.url, "_HLS_msn=2&_HLS_part=0")

    async def leave_then_wait() -> list[httpx.Response]:
        before = live.edge.client_connections()
        async with httpx.AsyncClient(timeout=60) as client:
            leaving = asyncio.create_task(client.get(url, timeout=1.0))
            while live.edge.client_connections() <= before:
                await asyncio.sleep(0.02)
            staying = [asyncio.create_task(client.get(url)) for _ in range(5)]
            with pytest.raises(httpx.ReadTimeout):
                await leaving
            await asyncio.to_thread(send, live, stream)
            return await asyncio.gather(*staying)

    answers = asyncio.run(leave_then_wait())
    assert {a.status_code for a in answers} == {200}
    assert all(newest(a.text) == 2 for a in answers)
    assert live.served() - served == 1


def test_requests_too_far_ahead_or_malformed_are_refused_at_once(live: Live) -> None:
    """Too far ahead of the live edge: the origin's 400, at once, through the edge. A
    malformed directive: the edge's own 400, the origin never asked."""
    stream = start(live)
    started = time.monotonic()
    ahead = httpx.get(stream.url(live.edge.url, f"_HLS_msn={2 + AHEAD_MSN}"))
    assert ahead.status_code == 400 and time.monotonic() - started < 1.0
    assert ahead.json()["error"]["code"] == "bad_request", ahead.text
    assert "too far ahead" in ahead.json()["error"]["message"]
    assert live.upstream_requests(stream, 1) == 1
    for query in ("_HLS_msn=two", "_HLS_msn=1&_HLS_part=-1", "_HLS_msn=1&_HLS_skip=NO",
                  f"_HLS_msn={'9' * 20}", "_HLS_msn=1&_HLS_part=1.5"):
        refused = httpx.get(stream.url(live.edge.url, query))
        assert refused.status_code == 400, query
        assert refused.json()["error"]["code"] == "bad_request", query
    assert live.upstream_requests(stream, 6) == 1


def test_private_streams_block_only_for_valid_signed_links(live: Live) -> None:
    """A private stream's blocking requests need its signed link at the edge as anywhere;
    the answer (its URIs signed with the viewer's link) is cached for that link only."""
    stream = start(live, private=True)
    assert stream.token
    secret = playback_secret((live.api.data_dir / "secret-key").read_text().strip())
    expired = int(time.time()) - 5
    base = f"{live.edge.url}{stream.path}?_HLS_msn=2"
    refused = {
        "unsigned": (base, 403),
        "tampered": (f"{base}&{stream.token[:-2]}xx", 403),
        "expired": (f"{base}&e={expired}&st="
                    f"{playback_signature(secret, stream.id, expired)}", 410),
        "expiry alone": (f"{base}&e={int(time.time()) + 3600}", 403),
    }
    for name, (url, status) in refused.items():
        answer = httpx.get(url, timeout=30)
        assert answer.status_code == status, (name, answer.text)
    # Signed: held until the segment is out, like any other.
    answers, sent = asyncio.run(wait_for_part(live, stream, [
        stream.url(live.edge.url, f"_HLS_msn=2&x={secrets.token_hex(4)}")] * 3))
    assert {a.status_code for a, _ in answers} == {200}
    text = answers[0][0].text
    assert newest(text) == 2 and min(at for _, at in answers) > sent
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris and all(u.endswith(stream.token) for u in uris), uris
    # The unsigned request for the same part is not given that answer.
    assert httpx.get(base).status_code == 403
