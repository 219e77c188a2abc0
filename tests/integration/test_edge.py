"""The nginx edge that `chunkcast deploy nginx` writes, in front of a real `chunkcast up`:
request coalescing, live playlist micro-caching, signed playback of private videos checked
at the edge and at the origin, the privacy check before every `/media/` object, and the
edge secret that makes an S3-backed API hand over objects."""

import asyncio
import contextlib
import json
import math
import os
import pwd
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from chunkcast.adapters.storage.s3 import make_client
from chunkcast.domain.signing import edge_secret, playback_secret, playback_signature
from chunkcast.testing import Server, free_port, make_clip, origin_served, run_server
from tests.conftest import LIVE_ENV
from tests.integration.api import admin, put, wait_done
from tests.integration.live_support import (
    create_stream,
    make_chunks,
    push_chunk,
    start_broadcast,
    wait_for_renditions,
    watch,
)
from tests.servers.nginx import (
    Nginx,
    as_user,
    deploy,
    deploy_argv,
    open_folder,
    run_nginx,
    write_static_conf,
)
from tests.servers.seaweedfs import SeaweedServer, drop_bucket, new_bucket_name

pytestmark = pytest.mark.integration

BURST = 200


@dataclass(frozen=True)
class Edge:
    api: Server
    edge: Nginx
    secret: str  # the playback secret the edge checks links with

    def served(self, kind: str) -> float:
        """The origin's count of objects or playlists of ``kind`` it has served."""
        return origin_served(self.api).get(kind, 0.0)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    root = tmp_path_factory.mktemp("edge")
    edge_port = free_port()
    env = {**LIVE_ENV, "CHUNKCAST_CDN_URL": f"http://127.0.0.1:{edge_port}",
           "CHUNKCAST_VOD_CHUNK_SECONDS": "4"}
    with run_server(root / "api", env=env) as api:
        api_host = api.url.removeprefix("http://")
        deploy(root / "nginx", [api_host], api.url, edge_port, free_port(),
               {"CHUNKCAST_DATA_DIR": str(api.data_dir)})
        with run_nginx(root / "nginx", "edge", edge_port) as nginx:
            yield Edge(api, nginx, playback_secret(secret_key(api)))


def upload(server: Server, path: Path, *, private: bool = False) -> dict[str, Any]:
    with admin(server) as client:
        created = client.post("/api/v1/videos", json={"title": path.stem, "private": private})
        assert created.status_code == 201, created.text
        assert put(created.json(), path.read_bytes()).status_code == 200
        assert client.post(f"/api/v1/videos/{created.json()['id']}/complete").status_code == 202
        video = wait_done(client, created.json()["id"])
        assert video["status"] == "ready", video
        return video


def secret_key(server: Server) -> str:
    return (server.data_dir / "secret-key").read_text().strip()


def wait_status(url: str, status: int, timeout_s: float = 10.0) -> float:
    """Poll ``url`` until it answers ``status``; the seconds that took."""
    started = time.monotonic()
    while (answer := httpx.get(url, follow_redirects=False)).status_code != status:
        assert time.monotonic() - started < timeout_s, (url, answer.status_code)
        time.sleep(0.1)
    return time.monotonic() - started


def no_signatures_logged(nginx: Nginx, last: str) -> None:
    """Signed links (``e=…&st=…``, ``signature=``) are replayable: not in the access log
    (read once it has the request for the path ``last``)."""
    lines = nginx.wait_logged(f" {last} ")
    assert not [line for line in lines if re.search(r"[?&](st|e|signature|expires)=", line)]


def playlist_uris(text: str) -> list[str]:
    """Segment URIs of a media playlist, the init segment's first."""
    init = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)
    return init + [line for line in text.splitlines() if line and not line.startswith("#")]


async def burst(urls: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        return await asyncio.gather(*(client.get(url) for url in urls))


def test_the_edge_answers_its_health_check(edge: Edge) -> None:
    response = httpx.get(f"{edge.edge.url}/edge/healthz")
    assert response.status_code == 200 and response.text == "ok\n"


def test_a_burst_for_an_uncached_segment_costs_the_origin_one_fetch(
    edge: Edge, clips: Path,
) -> None:
    video = upload(edge.api, clips / "long.mp4")
    rendition = video["renditions"][0]["name"]
    # The playlist, fetched through the edge, points at the edge.
    media = httpx.get(f"{edge.edge.url}/play/{video['id']}/{rendition}/index.m3u8")
    assert media.status_code == 200
    uris = playlist_uris(media.text)
    assert all(u.startswith(edge.edge.url + "/media/") for u in uris), uris
    target = uris[2]  # a segment no one has asked for yet
    before = edge.served("segment")
    answers = asyncio.run(burst([target] * BURST))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1 and len(answers[0].content) > 1000
    assert edge.served("segment") - before == 1
    assert edge.edge.upstream_requests(target.removeprefix(edge.edge.url)) == 1
    assert answers[0].headers["cache-control"] == "public, max-age=31536000, immutable"
    # Later requests are hits.
    again = httpx.get(target)
    assert again.headers["x-cache"] == "HIT" and edge.served("segment") - before == 1


def test_a_live_playlist_is_fetched_once_per_cache_period(
    edge: Edge, clips: Path, tmp_path: Path,
) -> None:
    stream = create_stream(edge.api)
    broadcast = start_broadcast(edge.api, stream, clips / "long.mp4", tmp_path / "broadcast.log",
                                "--chunk-seconds", "1", "--loop")
    try:
        rendition = wait_for_renditions(edge.api, stream["id"])[0]
        url = f"{edge.edge.url}/play/{stream['id']}/{rendition}/index.m3u8"
        deadline = time.monotonic() + 30
        while httpx.get(url).status_code != 200:  # the first segment is on its way
            assert time.monotonic() < deadline
            time.sleep(0.2)
        before = edge.served("playlist")
        started = time.monotonic()
        newest = []
        for _ in range(5):
            answers = asyncio.run(burst([url] * BURST))
            assert {a.status_code for a in answers} == {200}
            assert all(a.text.startswith("#EXTM3U") for a in answers)
            newest.append(max(playlist_uris(a.text)[-1] for a in answers))
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        fetched = edge.served("playlist") - before
        # max-age=1: about one origin fetch per second of the test, for 1,000 requests (plus
        # the one in flight when it started, and one where nginx's whole-second clock puts an
        # expiry and a refresh on either side of a second boundary).
        assert 1 <= fetched <= math.ceil(elapsed) + 2, (fetched, elapsed)
        assert newest[-1] > newest[0], "the cached playlist never moved on"
        # WebSocket viewers through the edge are sent segment URLs on the edge.
        first = asyncio.run(watch(f"{edge.edge.url.replace('http', 'ws', 1)}/ws/"
                                  f"{stream['id']}/{rendition}?since=-1", until_seq=0,
                                  timeout_s=30))
        urls = [m["init_url"] for m in first if m["type"] == "init"] + [
            m["url"] for m in first if m["type"] == "segment"]
        assert urls and all(u.startswith(edge.edge.url + "/media/") for u in urls), urls
        assert all(httpx.get(u).status_code == 200 for u in urls)
    finally:
        broadcast.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            broadcast.wait(20)
        if broadcast.poll() is None:
            broadcast.kill()


def signed(edge: Edge, path: str, video_id: str, expires: int) -> str:
    return f"{path}?e={expires}&st={playback_signature(edge.secret, video_id, expires)}"


def test_private_videos_play_only_through_valid_signed_links(edge: Edge, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "secret.mp4", seconds=3, size="320x240")
    video = upload(edge.api, clip, private=True)
    other = upload(edge.api, clip, private=True)
    vid = video["id"]
    token = video["playback"]["token"]
    assert token and video["playback"]["hls"].endswith(f"master.m3u8?{token}")
    assert video["private"] is True

    # Valid link: master → media playlist → init and segments, all through the edge.
    master = httpx.get(video["playback"]["hls"].replace(edge.api.url, edge.edge.url))
    assert master.status_code == 200, master.text
    variant = next(line for line in master.text.splitlines() if line.endswith(token))
    media = httpx.get(f"{edge.edge.url}/play/{vid}/{variant}")
    assert media.status_code == 200
    uris = playlist_uris(media.text)
    assert all(u.startswith(f"{edge.edge.url}/private/media/{vid}/") for u in uris), uris
    assert all(httpx.get(u).status_code == 200 for u in uris)
    segment_path = uris[1].removeprefix(edge.edge.url).split("?")[0]

    # Refused at the edge (the origin never sees these): tampered, expired, other video's,
    # missing signature.
    future = int(time.time()) + 3600
    other_token = signed(edge, segment_path, other["id"], future).split("?")[1]
    refused = {
        "tampered": (f"{segment_path}?{token[:-2]}xx", 403),
        "expired": (signed(edge, segment_path, vid, int(time.time()) - 5), 410),
        "other video": (f"{segment_path}?{other_token}", 403),
        "unsigned": (segment_path, 403),
        "tampered playlist": (f"/play/{vid}/master.m3u8?{token[:-2]}xx", 403),
        "expired playlist": (signed(edge, f"/play/{vid}/master.m3u8", vid,
                                    int(time.time()) - 5), 410),
    }
    served_before = edge.served("segment") + edge.served("playlist")
    for name, (path, status) in refused.items():
        answer = httpx.get(edge.edge.url + path)
        assert answer.status_code == status, (name, answer.status_code)
        assert edge.edge.upstream_requests(path.split("?")[0]) <= 1, name
    assert edge.served("segment") + edge.served("playlist") == served_before

    # Refused at the origin too, for whoever goes around the edge.
    origin = {
        "unsigned playlist": (f"/play/{vid}/master.m3u8", 403),
        "public path": (segment_path.replace("/private/", "/media/", 1), 403),
        "tampered": (f"{segment_path}?{token[:-2]}xx", 403),
        "expired": (signed(edge, segment_path, vid, int(time.time()) - 5), 410),
        "other video": (f"{segment_path}?{other_token}", 403),
        "metadata": (f"/api/v1/videos/{vid}", 403),
        "socket": None,
    }
    for name, case in origin.items():
        if case is None:
            continue
        path, status = case
        answer = httpx.get(edge.api.url + path)
        assert answer.status_code == status, (name, answer.text)
        assert answer.headers["cache-control"] == "no-store"
    # The public path through the edge is refused there (the API says the video is
    # private), and the object is never fetched.
    public = segment_path.replace("/private/", "/media/", 1)
    assert httpx.get(edge.edge.url + public).status_code == 403
    assert httpx.get(edge.edge.url + public).headers.get("x-cache") != "HIT"
    assert edge.edge.upstream_requests(public) == 0
    # A private video is not listed for everyone, but is for the admin.
    listed = httpx.get(f"{edge.api.url}/api/v1/videos?limit=100").json()["items"]
    assert vid not in {v["id"] for v in listed}
    with admin(edge.api) as client:
        assert vid in {v["id"] for v in client.get("/api/v1/videos?limit=100").json()["items"]}
        # Public again: plain links work (the origin and the edge remember privacy for 2 s
        # each).
        assert client.patch(f"/api/v1/videos/{vid}", json={"private": False}).status_code == 200
    wait_status(edge.api.url + public, 200)
    wait_status(edge.edge.url + public, 200)
    no_signatures_logged(edge.edge, public)


def test_playlist_arguments_the_api_ignores_do_not_split_the_cache(
    edge: Edge, clips: Path,
) -> None:
    """Made-up query arguments neither miss the cache nor reach the API, nor does an
    expiry without a signature (nothing checks it); ``dvr`` counts as the API reads it."""
    video = upload(edge.api, clips / "silent.mp4")
    rendition = video["renditions"][0]["name"]
    base = f"{edge.edge.url}/play/{video['id']}/{rendition}/index.m3u8"
    first = httpx.get(f"{base}?dvr=1&x={secrets.token_hex(8)}")
    assert first.status_code == 200 and first.text.startswith("#EXTM3U")
    before = edge.served("playlist")
    for dvr in ("1", "true", "on"):
        again = httpx.get(f"{base}?x={secrets.token_hex(8)}&dvr={dvr}&y=&_HLS_x=1"
                          f"&e={secrets.randbelow(10**10)}")
        assert again.status_code == 200 and again.headers["x-cache"] == "HIT", dvr
        assert again.text == first.text
    assert edge.served("playlist") == before


def test_a_public_video_made_private_stops_playing_at_the_edge_within_seconds(
    edge: Edge, clips: Path,
) -> None:
    video = upload(edge.api, clips / "silent.mp4")
    vid = video["id"]
    media = httpx.get(f"{edge.edge.url}/play/{vid}/{video['renditions'][0]['name']}/index.m3u8")
    segment = playlist_uris(media.text)[1]
    assert httpx.get(segment).status_code == 200
    assert httpx.get(segment).headers["x-cache"] == "HIT"  # the edge has the object
    with admin(edge.api) as client:
        assert client.patch(f"/api/v1/videos/{vid}", json={"private": True}).status_code == 200
        token = client.get(f"/api/v1/videos/{vid}").json()["playback"]["token"]
    # The API remembers privacy for 2 s, the edge its answer for 2 s.
    assert wait_status(segment, 403, timeout_s=10) < 6
    signed_url = segment.replace("/media/", "/private/", 1) + f"?{token}"
    assert httpx.get(signed_url).status_code == 200
    no_signatures_logged(edge.edge, signed_url.removeprefix(edge.edge.url).split("?")[0])


def test_the_edge_caps_request_bodies(edge: Edge) -> None:
    """Viewers only read: a large body is refused by nginx before the API sees it."""
    answer = httpx.post(f"{edge.edge.url}/api/v1/videos", json={"title": "x" * 100_000},
                        headers={"Authorization": f"Bearer {edge.api.token}"})
    assert answer.status_code == 413 and "text/html" in answer.headers["content-type"]
    assert httpx.put(f"{edge.edge.url}/media/media/{'a' * 16}/x.m4s",
                     content=b"x" * 1000).status_code == 403


def a_segment_path(edge: Edge, tmp_path: Path) -> str:
    """The path (``/media/…``) of a segment of a new public upload."""
    video = upload(edge.api, make_clip(tmp_path / "clip.mp4", seconds=3, size="320x240"))
    media = httpx.get(f"{edge.api.url}/play/{video['id']}/{video['renditions'][0]['name']}"
                      "/index.m3u8")
    return urlsplit(playlist_uris(media.text)[1]).path


def cached_twice(nginx: Nginx, path: str) -> None:
    """The object comes through the edge, then from its cache (never a 500)."""
    first = httpx.get(nginx.url + path)
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS", first.text
    second = httpx.get(nginx.url + path)
    assert second.status_code == 200 and second.headers["x-cache"] == "HIT"
    assert second.content == first.content


def worker_users(nginx: Nginx) -> set[str]:
    """The users nginx's worker processes run as."""
    children = Path(f"/proc/{nginx.pid}/task/{nginx.pid}/children").read_text().split()
    uids = {int(re.findall(r"^Uid:\s+(\d+)", Path(f"/proc/{c}/status").read_text(),
                           re.MULTILINE)[0]) for c in children}
    return {pwd.getpwuid(uid).pw_name for uid in uids}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (as a service starts nginx)")
def test_an_edge_started_as_root_caches_as_its_worker_user(edge: Edge, tmp_path: Path) -> None:
    """As a service starts nginx: as root, its configs in a folder only root may enter
    (pytest's are 0700). ``deploy nginx`` refuses to put the cache where the workers could
    not reach it, before writing anything; given a ``--cache-dir`` they can, it works."""
    path = a_segment_path(edge, tmp_path)
    out, port = tmp_path / "nginx", free_port()
    api = [edge.api.url.removeprefix("http://")]
    env = {**os.environ, "CHUNKCAST_DATA_DIR": str(edge.api.data_dir)}
    refused = subprocess.run(deploy_argv(out, api, edge.api.url, port, free_port()), env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "cannot enter" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and not out.exists()
    state = open_folder() / "state"
    deploy(out, api, edge.api.url, port, free_port(), {"CHUNKCAST_DATA_DIR":
           str(edge.api.data_dir)}, f"--cache-dir={state}")
    with run_nginx(out, "edge", port) as nginx:
        assert worker_users(nginx) == {"www-data"}
        cached_twice(nginx, path)
        cached = [p for p in (state / "cache" / "edge").rglob("*") if p.is_file()]
        assert cached and {pwd.getpwuid(p.stat().st_uid).pw_name for p in cached} == {
            "www-data"}


def test_an_edge_started_by_a_plain_user_caches(edge: Edge, tmp_path: Path) -> None:
    """nginx run by a user without privileges (``nobody`` here when the tests run as root),
    with the configs that user wrote into a folder of its own."""
    path = a_segment_path(edge, tmp_path)
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    out, port = open_folder() / "nginx", free_port()
    out.mkdir()
    os.chown(out, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    argv = deploy_argv(out, [edge.api.url.removeprefix("http://")], edge.api.url, port,
                       free_port())
    done = subprocess.run(as_user(user, argv) if os.geteuid() == 0 else argv,
                          env={**os.environ, "CHUNKCAST_SECRET_KEY": secret_key(edge.api),
                               "CHUNKCAST_DATA_DIR": str(out)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    with run_nginx(out, "edge", port, user=user if os.geteuid() == 0 else None) as nginx:
        assert worker_users(nginx) == {user}
        cached_twice(nginx, path)


@dataclass
class LiveEdge:
    """A live stream of an embedded API behind an edge of its own."""

    api: Server
    nginx: Nginx
    stream: dict[str, Any]
    chunks: list[Path]  # three 1 s chunks to push

    def push(self, seq: int) -> None:
        push_chunk(self.api, self.stream, seq, self.chunks[seq].read_bytes())


@contextlib.contextmanager
def live_behind_an_edge(tmp_path: Path) -> Iterator[LiveEdge]:
    edge_port = free_port()
    env = {**LIVE_ENV, "CHUNKCAST_CDN_URL": f"http://127.0.0.1:{edge_port}",
           "CHUNKCAST_LIVE_IDLE_TIMEOUT_SECONDS": "120"}  # live until the end of the test
    chunks = make_chunks(tmp_path / "chunks", seconds=3, size="320x240")
    with run_server(tmp_path / "api", env=env) as api:
        deploy(tmp_path / "nginx", [api.url.removeprefix("http://")], api.url, edge_port,
               free_port(), {"CHUNKCAST_DATA_DIR": str(api.data_dir)})
        with run_nginx(tmp_path / "nginx", "edge", edge_port) as nginx:
            yield LiveEdge(api, nginx, create_stream(api), chunks)


def listing(url: str, segment: str, timeout_s: float = 30) -> httpx.Response:
    """The playlist at ``url`` once it lists ``segment`` (a file name)."""
    deadline = time.monotonic() + timeout_s
    while segment not in (answer := httpx.get(url)).text:
        assert time.monotonic() < deadline, (answer.status_code, answer.text)
        time.sleep(0.2)
    return answer


def test_the_edge_serves_what_it_has_when_the_origin_is_down(tmp_path: Path) -> None:
    """Stale entries are served when the origin errors, cached objects need no origin."""
    with live_behind_an_edge(tmp_path) as live:
        for seq in (0, 1):
            live.push(seq)
        rendition = wait_for_renditions(live.api, live.stream["id"])[0]
        playlist = f"{live.nginx.url}/play/{live.stream['id']}/{rendition}/index.m3u8"
        text = listing(playlist, "00000001.m4s").text
        segment = playlist_uris(text)[-1]
        assert httpx.get(segment).status_code == 200
        fetched = time.monotonic()
        os.kill(live.api.pid, signal.SIGKILL)  # the origin is gone
        # The live playlist (max-age=1, whole seconds) turns stale, and is served so.
        deadline = time.monotonic() + 10
        while (stale := httpx.get(playlist)).headers.get("x-cache") != "STALE":
            assert time.monotonic() < deadline, stale.headers
            time.sleep(0.1)
        assert stale.status_code == 200 and stale.text == text
        # The segment too, for longer than the edge trusts the API's word that its video
        # is public (2 s): while the API is down, its last answer stands.
        while time.monotonic() - fetched < 3:
            cached = httpx.get(segment)
            assert cached.status_code == 200 and cached.headers["x-cache"] == "HIT"
            time.sleep(0.2)
        assert httpx.get(f"{live.nginx.url}/edge/healthz").status_code == 200


def test_a_live_playlist_nobody_asked_for_lately_is_fetched_not_served_old(
    tmp_path: Path,
) -> None:
    """A live playlist past its age is served stale only while the API allows it
    (stale-while-revalidate, 1 s): asked for again later, the edge fetches the current one
    first. Served as it was, it would start a player as far behind as it was old."""
    with live_behind_an_edge(tmp_path) as live:
        live.push(0)
        rendition = wait_for_renditions(live.api, live.stream["id"])[0]
        path = f"/play/{live.stream['id']}/{rendition}/index.m3u8"
        first = listing(live.nginx.url + path, "00000000.m4s")
        cached_at = time.monotonic()
        assert "00000001.m4s" not in first.text
        live.push(1)
        listing(live.api.url + path, "00000001.m4s")
        # Past its age (1 s, in nginx's whole seconds) and the stale-while-revalidate second
        # after it: the passing of time is what this is about.
        time.sleep(max(0.0, cached_at + 3.5 - time.monotonic()))
        again = httpx.get(live.nginx.url + path)
        assert again.status_code == 200
        assert "00000001.m4s" in again.text, again.headers.get("x-cache")


def test_a_bucket_can_be_the_origin_of_objects(tmp_path: Path, clips: Path) -> None:
    """``--origin http://HOST/BUCKET``: objects read path-style from a bucket that lets the
    edge read (here nginx serving the store's files at /chunkcast/); signed links of private
    videos are then checked at the edge alone."""
    edge_port, bucket_port = free_port(), free_port()
    env = {"CHUNKCAST_CDN_URL": f"http://127.0.0.1:{edge_port}",
           "CHUNKCAST_VOD_CHUNK_SECONDS": "4"}
    with run_server(tmp_path / "api", env=env) as api:
        out = tmp_path / "nginx"
        deploy(out, [api.url.removeprefix("http://")],
               f"http://127.0.0.1:{bucket_port}/chunkcast", edge_port, free_port(),
               {"CHUNKCAST_DATA_DIR": str(api.data_dir)})
        write_static_conf(out, "bucket", bucket_port, "/chunkcast/", api.data_dir / "objects")
        with run_nginx(out, "bucket", bucket_port) as bucket, \
                run_nginx(out, "edge", edge_port) as nginx:
            public = upload(api, clips / "silent.mp4")
            private = upload(api, clips / "silent.mp4", private=True)
            edge = Edge(api, nginx, playback_secret(
                (api.data_dir / "secret-key").read_text().strip()))
            media = httpx.get(f"{nginx.url}/play/{public['id']}/240p/index.m3u8")
            target = playlist_uris(media.text)[1]
            answers = asyncio.run(burst([target] * 50))
            stored = api.data_dir / "objects" / target.split("/media/", 1)[1]
            assert {a.content for a in answers} == {stored.read_bytes()}
            key = target.split("/media/", 1)[1]
            assert sum(f"/chunkcast/{key}" in line for line in bucket.access_log()) == 1

            token = private["playback"]["token"]
            signed_media = httpx.get(f"{nginx.url}/play/{private['id']}/240p/index.m3u8?{token}")
            uris = playlist_uris(signed_media.text)
            assert all("/private/media/" in u for u in uris)
            assert all(httpx.get(u).status_code == 200 for u in uris)
            path = uris[1].removeprefix(nginx.url).split("?")[0]
            assert httpx.get(nginx.url + path + f"?{token[:-2]}xx").status_code == 403
            late = signed(edge, path, private["id"], int(time.time()) - 5)
            assert httpx.get(nginx.url + late).status_code == 410


def test_with_s3_storage_the_api_gives_the_edge_objects_and_viewers_redirects(
    tmp_path: Path, clips: Path, seaweedfs: SeaweedServer,
) -> None:
    """The bucket stays private: a viewer asking the API is redirected to a pre-signed GET,
    the edge is given the object, once, and caches it."""
    edge_port = free_port()
    env = {**seaweedfs.env(), "CHUNKCAST_STORAGE_URL": seaweedfs.storage_url(
        new_bucket_name("edge")), "CHUNKCAST_CDN_URL": f"http://127.0.0.1:{edge_port}"}
    with run_server(tmp_path / "api", env=env) as api:
        deploy(tmp_path / "nginx", [api.url.removeprefix("http://")], api.url, edge_port,
               free_port(), {"CHUNKCAST_DATA_DIR": str(api.data_dir)})
        with run_nginx(tmp_path / "nginx", "edge", edge_port) as nginx:
            video = upload(api, clips / "silent.mp4")
            media = httpx.get(f"{nginx.url}/play/{video['id']}/240p/index.m3u8")
            segment = playlist_uris(media.text)[1]
            direct = httpx.get(f"{api.url}{segment.removeprefix(nginx.url)}",
                               follow_redirects=False)
            assert direct.status_code == 307  # the API itself only redirects
            first = httpx.get(segment, follow_redirects=False)
            assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
            assert first.content == httpx.get(direct.headers["location"]).content
            assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
            again = httpx.get(segment, follow_redirects=False)
            assert again.status_code == 200 and again.headers["x-cache"] == "HIT"
            assert again.content == first.content
            assert nginx.upstream_requests(segment.removeprefix(nginx.url)) == 1
            # Only the edge secret makes the API hand over the object; a header without it
            # (or with another platform's) gets the redirect.
            path = segment.removeprefix(nginx.url)
            secret = edge_secret(secret_key(api))
            for value in (None, "1", "0" * 64, edge_secret("another platform")):
                headers = {} if value is None else {"X-Chunkcast-Edge": value}
                answer = httpx.get(api.url + path, headers=headers, follow_redirects=False)
                assert answer.status_code == 307, value
            handed = httpx.get(api.url + path, headers={"X-Chunkcast-Edge": secret},
                               follow_redirects=False)
            assert handed.status_code == 200 and handed.content == first.content
            # Nor is the API's privacy check for the edge an oracle for others.
            check = f"{api.url}/edge/public/{video['id']}"
            assert httpx.get(check).status_code == 403
            assert httpx.get(check, headers={"X-Chunkcast-Edge": "1"}).status_code == 403
            assert httpx.get(check, headers={"X-Chunkcast-Edge": secret}).status_code == 204
            assert httpx.get(f"{nginx.url}/edge/public/{video['id']}").status_code == 404


def allow_anonymous_reads(seaweedfs: SeaweedServer, bucket: str, prefix: str) -> None:
    """A bucket policy: anyone may GET objects under ``prefix`` (what a bucket origin of
    the edge needs), nothing else."""
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*"]}]}
    client = make_client(seaweedfs.endpoint, seaweedfs.region,
                         access_key=seaweedfs.access_key, secret_key=seaweedfs.secret_key)
    try:
        client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    finally:
        client.close()


def test_with_a_bucket_origin_the_edge_checks_privacy_before_media(
    tmp_path: Path, clips: Path, seaweedfs: SeaweedServer,
) -> None:
    """``--origin http://S3/BUCKET`` whose media/ anyone may read: the edge alone stands
    between viewers and the objects. A private video's objects are refused under /media/
    (an expired signed link with /private/ swapped for /media/ included) while its signed
    links play; a public video made private stops playing there within seconds."""
    bucket = new_bucket_name("edge-origin")
    edge_port = free_port()
    env = {**seaweedfs.env(), "CHUNKCAST_STORAGE_URL": seaweedfs.storage_url(bucket),
           "CHUNKCAST_CDN_URL": f"http://127.0.0.1:{edge_port}",
           "CHUNKCAST_VOD_CHUNK_SECONDS": "4"}
    try:
        with run_server(tmp_path / "api", env=env) as api:  # it makes the bucket
            allow_anonymous_reads(seaweedfs, bucket, "media/")
            out = tmp_path / "nginx"
            deploy(out, [api.url.removeprefix("http://")], f"{seaweedfs.endpoint}/{bucket}",
                   edge_port, free_port(), {"CHUNKCAST_DATA_DIR": str(api.data_dir)})
            with run_nginx(out, "edge", edge_port) as nginx:
                edge = Edge(api, nginx, playback_secret(secret_key(api)))
                public = upload(api, clips / "silent.mp4")
                private = upload(api, clips / "silent.mp4", private=True)

                media = httpx.get(f"{nginx.url}/play/{public['id']}/240p/index.m3u8")
                segment = playlist_uris(media.text)[1]
                played = httpx.get(segment)
                assert played.status_code == 200 and len(played.content) > 1000
                key = segment.split("/media/", 1)[1]
                assert played.content == httpx.get(f"{seaweedfs.endpoint}/{bucket}/{key}").content

                token = private["playback"]["token"]
                signed_media = httpx.get(
                    f"{nginx.url}/play/{private['id']}/240p/index.m3u8?{token}")
                uris = playlist_uris(signed_media.text)
                assert uris and all("/private/media/" in u for u in uris)
                assert all(httpx.get(u).status_code == 200 for u in uris)
                path = uris[1].removeprefix(nginx.url).split("?")[0]
                late = signed(edge, path, private["id"], int(time.time()) - 5)
                assert httpx.get(nginx.url + late).status_code == 410
                for url in (path, late):
                    swapped = url.replace("/private/", "/media/", 1)
                    assert httpx.get(nginx.url + swapped).status_code == 403, swapped
                    assert nginx.upstream_requests(swapped.split("?")[0]) == 0

                with admin(api) as client:
                    assert client.patch(f"/api/v1/videos/{public['id']}",
                                        json={"private": True}).status_code == 200
                assert wait_status(segment, 403, timeout_s=10) < 6
                no_signatures_logged(nginx, segment.removeprefix(nginx.url))
    finally:
        drop_bucket(seaweedfs, bucket)
