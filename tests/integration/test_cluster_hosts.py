"""The distributed deployment across hosts (network namespaces on one switch, see
:mod:`tests.integration.hosts`): a data host (PostgreSQL, Redis, SeaweedFS), two API hosts,
two worker hosts, an edge and balancer host, and the clients on a host of their own. Nothing
reaches another role over loopback.

An upload and a live stream go end to end through the balancer and the edge; then one API
host's cable is pulled mid-stream: its viewers, which hear nothing more from it, reconnect
through the balancer with ``since`` and get every segment from the other API host, in order
and once, and the balancer sends new requests to the host that answers.
"""

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from chunkcast.testing import Server
from tests.integration.api import upload
from tests.integration.fault_support import Broadcaster
from tests.integration.hosts import API_PORT, HostCluster, host_cluster, listening
from tests.integration.live_support import create_stream, wait_for_renditions
from tests.integration.media_checks import decodes_cleanly, played_duration, source_facts
from tests.servers.netns import NetnsUnavailable
from tests.servers.nginx import Nginx

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SETTINGS = {
    "CHUNKCAST_LADDER_GROUPS": "all=240p",
    "CHUNKCAST_X264_PRESET": "ultrafast",
    "CHUNKCAST_ACK_TIMEOUT_SECONDS": "3",
    "CHUNKCAST_VOD_CHUNK_SECONDS": "2",
    # A chunk held up by the cut is late, not lost: viewers are to get it as a segment.
    "CHUNKCAST_LIVE_GAP_TIMEOUT_SECONDS": "30",
}
VIEWERS = 4
# A host cut off sends no close, nor does the balancer (its read timeout on sockets is an
# hour): viewers ping, and take a connection whose pong is this late for dropped.
PING_S = 1.5
AFTER_CUT = 5  # segments every viewer gets after the cut before the stream ends
PROBES = 12  # new requests through the balancer once the viewers are back
FAIL_TIMEOUT_S = 5.0  # lb.conf: a host that failed is left alone this long
# The edge's own upstream of API processes (its privacy check before each object, its
# playlists) gives up on the cut host within seconds (2 s to connect; 3 s for an answer to
# the privacy check, 5 s for a playlist, on a kept-alive connection), then asks the other.
EDGE_WAIT_S = 10.0
FINAL = frozenset({"ended", "ready", "failed"})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostCluster]:
    with contextlib.ExitStack() as stack:
        try:
            running = stack.enter_context(host_cluster(tmp_path_factory.mktemp("hosts"),
                                                       **SETTINGS))
        except NetnsUnavailable as exc:  # raised before anything is started
            pytest.skip(f"the cluster across hosts needs network namespaces: {exc}")
        yield running


def test_every_role_reaches_the_others_over_the_network(cluster: HostCluster) -> None:
    """Each service listens on its host's address only, the settings name those addresses,
    and the API processes reach the data host (readiness) from their own hosts."""
    for name, host in cluster.net.hosts.items():
        wildcard = [a for a in listening(host) if a.startswith(("0.0.0.0:", "[0000"))]
        assert wildcard == [], (name, wildcard)
    for name in cluster.apis:
        assert listening(cluster.net[name]) == [f"{cluster.net[name].address}:{API_PORT}"]
    assert sorted(listening(cluster.net["edge"])) == sorted(
        [cluster.lb.url.removeprefix("http://"), cluster.edge.url.removeprefix("http://")])
    data = cluster.net["data"]
    backends = [re.search(r"[@/](\d+\.\d+\.\d+\.\d+:\d+)", cluster.env[name])
                for name in ("CHUNKCAST_DATABASE_URL", "CHUNKCAST_BUS_URL",
                             "CHUNKCAST_STORAGE_URL")]
    assert all(b and b[1].startswith(f"{data.address}:") and b[1] in listening(data)
               for b in backends), (backends, listening(data))
    for api in cluster.apis.values():
        ready = httpx.get(f"{api.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text


def test_an_upload_plays_through_the_balancer_and_the_edge(cluster: HostCluster,
                                                           clips: Path) -> None:
    source = clips / "long.mp4"
    video = upload(cluster.client, source)  # created, completed and polled at the balancer
    assert video["status"] == "ready", video
    rendition = video["renditions"][0]["name"]
    assert video["playback"]["hls"].startswith(cluster.edge.url + "/play/")
    playlist = f"{cluster.edge.url}/play/{video['id']}/{rendition}/index.m3u8"
    media = httpx.get(playlist, timeout=10)
    assert media.status_code == 200 and "#EXT-X-ENDLIST" in media.text
    segments = [line for line in media.text.splitlines() if line and line[0] != "#"]
    assert segments and all(s.startswith(cluster.edge.url + "/media/") for s in segments)
    # The edge fetched the first segment from its origin (the balancer), then has it.
    first = [httpx.get(segments[0], timeout=10) for _ in range(2)]
    assert [r.headers.get("x-cache") for r in first] == ["MISS", "HIT"]
    assert first[0].content == first[1].content and first[0].content
    played, kinds = played_duration(playlist)
    assert abs(played - source_facts(source)[0]) <= 0.1 and kinds == {"video", "audio"}
    assert decodes_cleanly(playlist) == ""
    # Both API processes answered some of it: the balancer spreads requests over hosts.
    upstreams = " ".join(cluster.lb.access_log())
    assert all(f"upstream={cluster.net[name].address}:" in upstreams for name in cluster.apis)


# --- a viewer that notices a silent connection ------------------------------------------------

@dataclass
class Viewer:
    """A WebSocket viewer of one rendition as the web player behaves (on a dropped
    connection it reconnects with ``since=<last seq>``), which also takes a connection whose
    pings go unanswered for dropped."""

    url: str
    seqs: list[int] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)
    repeats: list[int] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)
    connections: int = 0
    status: str | None = None
    last_url: str = ""
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def last(self) -> int:
        return max(self.seqs + self.gaps, default=-1)

    async def wait(self, predicate: Callable[["Viewer"], bool], timeout_s: float) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: predicate(self)), timeout_s)

    async def run(self) -> None:
        while self.status not in FINAL:
            try:
                async with websockets.connect(f"{self.url}?since={self.last}", open_timeout=5,
                                              close_timeout=1, ping_interval=PING_S,
                                              ping_timeout=PING_S) as ws:
                    self.connections += 1
                    while self.status not in FINAL:
                        await self._take(json.loads(await ws.recv()))
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.drops.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.25)  # the web player's first backoff

    async def _take(self, message: dict[str, Any]) -> None:
        async with self.changed:
            if message["type"] in ("segment", "gap"):
                seq = int(message["seq"])
                if seq <= self.last:
                    self.repeats.append(seq)
                else:
                    (self.seqs if message["type"] == "segment" else self.gaps).append(seq)
                    if message["type"] == "segment":
                        self.last_url = message["url"]
            elif message["type"] == "status":
                self.status = message["status"]
            self.changed.notify_all()


async def viewers_here(api: Server) -> int:
    """The WebSocket viewers ``api`` serves itself (its own series of ``chunkcast_viewers``,
    which it sets every second)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{api.url}/metrics")).text
    found = re.search(rf'^chunkcast_viewers{{process="[^"]*-{api.pid}"}} (\S+)$', text,
                      re.MULTILINE)
    return int(float(found[1])) if found else 0


async def spread(apis: list[Server], predicate: Callable[[list[int]], bool],
                 timeout_s: float = 10) -> list[int]:
    """The viewers each of ``apis`` serves, once ``predicate`` holds of them."""
    deadline = time.monotonic() + timeout_s
    while not predicate(counts := [await viewers_here(api) for api in apis]):
        assert time.monotonic() < deadline, counts
        await asyncio.sleep(0.2)
    return counts


@contextlib.contextmanager
def broadcasting(cluster: HostCluster, stream: dict[str, Any], clip: Path
                 ) -> Iterator[Broadcaster]:
    broadcaster = Broadcaster(cluster.client, stream, clip, cluster.root / "broadcast")
    broadcaster.start()
    try:
        yield broadcaster
    finally:
        broadcaster.kill()


def tried(nginx: Nginx, path: str, count: int) -> list[list[str]]:
    """The upstreams each of the last ``count`` requests for ``path`` was sent to, in
    order (nginx logs a request just after answering it)."""
    deadline = time.monotonic() + 10
    while len(lines := [line for line in nginx.access_log() if f" {path} " in line]) < count:
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    return [re.findall(r"(\d+\.\d+\.\d+\.\d+:\d+)", line.split("upstream=")[1])
            for line in lines[-count:]]


@dataclass
class Cut:
    """What happened around the cut."""

    cut_viewers: int = 0  # viewers the cut host served
    edge: httpx.Response | None = None  # a segment sent after the cut, through the edge
    edge_s: float = 0.0
    probes_s: float = 0.0


async def ride_out_the_cut(cluster: HostCluster, stream_id: str, viewers: list[Viewer],
                           broadcaster: Broadcaster) -> Cut:
    client, cut, other = cluster.client, cluster.apis["api-1"], cluster.apis["api-2"]
    seen = Cut()
    tasks = [asyncio.create_task(v.run()) for v in viewers]
    try:
        for viewer in viewers:
            await viewer.wait(lambda v: len(v.seqs) >= 3, 60)
        seen.cut_viewers = (await spread([cut, other], lambda n: sum(n) == VIEWERS))[0]
        cluster.net["api-1"].cut()
        at_cut = max(v.last for v in viewers)
        for viewer in viewers:
            await viewer.wait(lambda v: v.last >= at_cut + AFTER_CUT, 60)
        await spread([other], lambda n: n == [VIEWERS])  # every viewer is on api-2 now
        async with httpx.AsyncClient(timeout=EDGE_WAIT_S) as http:
            started = time.monotonic()
            seen.edge = await http.get(viewers[0].last_url)
            seen.edge_s = time.monotonic() - started
        # New requests, on one connection to the balancer (one nginx worker).
        async with httpx.AsyncClient(base_url=client.url, timeout=30) as http:
            started = time.monotonic()
            for _ in range(PROBES):
                assert (await http.get(f"/api/v1/streams/{stream_id}")).status_code == 200
            seen.probes_s = time.monotonic() - started
        await asyncio.to_thread(broadcaster.stop)
        for viewer in viewers:
            await viewer.wait(lambda v: v.status in FINAL, 60)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return seen


def test_viewers_of_a_cut_off_api_host_resume_on_the_other(cluster: HostCluster,
                                                           clips: Path) -> None:
    stream = create_stream(cluster.client)
    with broadcasting(cluster, stream, clips / "long.mp4") as broadcaster:
        rendition = wait_for_renditions(cluster.client, stream["id"], timeout_s=60)[0]
        url = cluster.client.url.replace("http", "ws", 1) + f"/ws/{stream['id']}/{rendition}"
        viewers = [Viewer(url) for _ in range(VIEWERS)]
        try:
            seen = asyncio.run(ride_out_the_cut(cluster, stream["id"], viewers, broadcaster))
        finally:
            cluster.net["api-1"].reconnect()
    assert seen.cut_viewers >= 1  # someone was cut off
    # Every chunk sent reached every viewer as a segment, in order, once.
    sent = sorted({chunk.seq for chunk in broadcaster.chunks() if chunk.skipped is None})
    for viewer in viewers:
        assert viewer.status == "ended"
        assert viewer.repeats == [] and viewer.gaps == [], viewer
        assert viewer.seqs == sent, (viewer.seqs, sent)
    # Those on the cut host noticed (their pings went unanswered) and came back.
    assert sum(v.connections > 1 for v in viewers) >= seen.cut_viewers, viewers
    # Segments sent after the cut play through the edge (its origin: the balancer).
    assert seen.edge is not None and seen.edge.status_code == 200 and seen.edge.content, \
        (seen.edge, seen.edge_s)
    # The balancer answers new requests from the host that is there, trying the cut one
    # again at most once per fail_timeout.
    addresses = {name: f"{cluster.net[name].address}:{API_PORT}" for name in cluster.apis}
    probed = tried(cluster.lb, f"/api/v1/streams/{stream['id']}", PROBES)
    assert all(upstreams[-1] == addresses["api-2"] for upstreams in probed), probed
    retried = sum(addresses["api-1"] in upstreams for upstreams in probed)
    assert retried <= 1 + seen.probes_s / FAIL_TIMEOUT_S, (probed, seen.probes_s)
