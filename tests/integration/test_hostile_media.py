"""Hostile media: uploads and live chunks that are really DASH manifests, HLS playlists,
ffconcat scripts or image-sequence patterns, pointing at another (private) video's objects,
at local files, at the storage itself or at a host on the network.

Whatever a file says, the platform reads it only as the media it must be: an upload fails
with a plain reason, a live chunk becomes a gap and the stream goes on, no victim frame
reaches the attacker and nothing on the network is contacted. On local storage and on S3.
"""

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from chunkcast.adapters.storage.s3 import make_client
from chunkcast.testing import Server, run_server
from tests.conftest import LIVE_ENV
from tests.integration.api import admin, put, wait_done
from tests.integration.hostile_files import (
    CASES,
    Listener,
    PrivateFiles,
    Targets,
    is_red,
    make_private_files,
    make_red_clip,
    mean_colours,
)
from tests.integration.live_support import create_stream, make_chunks, push_chunk, ws_url
from tests.servers.seaweedfs import SeaweedServer, drop_bucket, new_bucket_name

pytestmark = pytest.mark.integration

RENDITION = "240p"  # the victim's and the attacker's only rung (sources of 240 lines)
ENV = {**LIVE_ENV, "CHUNKCAST_VOD_CHUNK_SECONDS": "4", "CHUNKCAST_LIVE_GAP_TIMEOUT_SECONDS": "1",
       "CHUNKCAST_LIVE_IDLE_TIMEOUT_SECONDS": "20"}
WATCH_TIMEOUT_S = 30.0
# How long a refused first chunk is left alone: longer than a worker's retries of a failing
# event take (3 attempts, 1 s and 2 s apart, with the defaults).
FIRST_CHUNK_ALONE_S = 6.0


@dataclass(frozen=True)
class Deployment:
    """A running server on one kind of storage, with a private red victim on it."""

    storage: str
    server: Server
    victim_id: str
    bucket_url: str | None  # the bucket's own http address (S3 only)
    keys: Callable[[str], list[str]]  # every stored object key under a prefix, sorted


def _local_keys(root: Path) -> Callable[[str], list[str]]:
    def keys(prefix: str) -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.glob(prefix + "**/*")
                      if p.is_file())
    return keys


@contextlib.contextmanager
def _server(storage: str, root: Path, request: pytest.FixtureRequest
            ) -> Iterator[tuple[Server, str | None, Callable[[str], list[str]]]]:
    if storage == "local":
        with run_server(root / "server", env=ENV) as server:
            yield server, None, _local_keys(server.data_dir / "objects")
        return
    weed: SeaweedServer = request.getfixturevalue("seaweedfs")
    bucket = new_bucket_name("hostile")
    client = make_client(weed.endpoint, weed.region, access_key=weed.access_key,
                         secret_key=weed.secret_key)

    def keys(prefix: str) -> list[str]:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    env = {**ENV, **weed.env(), "CHUNKCAST_STORAGE_URL": weed.storage_url(bucket)}
    try:
        with run_server(root / "server", env=env) as server:
            yield server, f"{weed.endpoint}/{bucket}", keys
    finally:
        client.close()
        drop_bucket(weed, bucket)


@pytest.fixture(scope="module", params=["local", "s3"])
def deployment(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    storage: str = request.param
    root = tmp_path_factory.mktemp(f"hostile-{storage}")
    red = make_red_clip(root / "red.mp4")
    with _server(storage, root, request) as (server, bucket_url, keys), admin(server) as client:
        created = client.post("/api/v1/videos", json={"title": "victim", "private": True})
        assert created.status_code == 201, created.text
        victim = created.json()
        assert put(victim, red.read_bytes()).status_code == 200
        assert client.post(f"/api/v1/videos/{victim['id']}/complete").status_code == 202
        assert wait_done(client, victim["id"])["status"] == "ready"
        prefix = f"media/{victim['id']}/{RENDITION}/"
        assert {prefix + "init.mp4", prefix + "00000000.m4s"} <= set(keys(prefix))
        yield Deployment(storage, server, victim["id"], bucket_url, keys)


@pytest.fixture(scope="module")
def private_files(tmp_path_factory: pytest.TempPathFactory) -> PrivateFiles:
    return make_private_files(tmp_path_factory.mktemp("private"))


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_chunks(tmp_path_factory.mktemp("chunks"), seconds=3, size="426x240")


@pytest.fixture
def listener() -> Iterator[Listener]:
    with Listener().running() as running:
        yield running


@pytest.fixture
def targets(deployment: Deployment, private_files: PrivateFiles,
            listener: Listener) -> Targets:
    victim_dir = f"media/{deployment.victim_id}/{RENDITION}/"
    if deployment.storage == "local":
        file_dir = (deployment.server.data_dir / "objects" / victim_dir).as_uri() + "/"
        storage_dir = f"{deployment.server.url}/media/{victim_dir}"
    else:  # nothing of the bucket is on this disk: the red copy outside any storage
        file_dir = private_files.folder.as_uri() + "/"
        storage_dir = f"{deployment.bucket_url}/{victim_dir}"
    return Targets(deployment.victim_id, RENDITION, file_dir, storage_dir, private_files,
                   listener.url)


# -- what an attacker's video holds ----------------------------------------------------------

def _red_frames(deployment: Deployment, video_id: str, tmp: Path) -> list[str]:
    """The attacker's stored segments that show the victim (red frames)."""
    prefix = f"media/{video_id}/{RENDITION}/"
    stored = deployment.keys(prefix)
    if prefix + "init.mp4" not in stored:
        return []
    with httpx.Client(base_url=deployment.server.url, follow_redirects=True,
                      timeout=30) as http:
        init = http.get(f"/media/{prefix}init.mp4").content
        found = []
        for key in (k for k in stored if k.endswith(".m4s")):
            media = tmp / key.replace("/", "_")
            media.write_bytes(init + http.get(f"/media/{key}").content)
            if any(is_red(c) for c in mean_colours(media)):
                found.append(key)
    return found


def _common_problems(deployment: Deployment, listener: Listener, video_id: str,
                     tmp: Path) -> list[str]:
    problems = []
    if listener.connections:
        problems.append(f"the loopback listener was contacted: {listener.connections}")
    red = _red_frames(deployment, video_id, tmp)
    if red:
        problems.append(f"the victim's red frames are in the attacker's video: {red}")
    return problems


# -- uploads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_upload_fails_with_a_plain_reason(
    case: str, deployment: Deployment, targets: Targets, listener: Listener, tmp_path: Path,
) -> None:
    with admin(deployment.server) as client:
        created = client.post("/api/v1/videos", json={"title": f"hostile {case}"}).json()
        assert put(created, CASES[case](targets)).status_code == 200
        assert client.post(f"/api/v1/videos/{created['id']}/complete").status_code == 202
        video = wait_done(client, created["id"], timeout_s=60)
    problems = _common_problems(deployment, listener, created["id"], tmp_path)
    error = str(video.get("error") or "")
    if video["status"] != "failed":
        problems.append(f"the upload ended {video['status']}, not failed")
    if not error or "/" in error or "http" in error.lower():
        problems.append(f"the reason is empty or names a path or URL: {error!r}")
    published = deployment.keys(f"media/{created['id']}/")
    if published:
        problems.append(f"media objects were published for it: {published}")
    assert not problems, "\n".join(problems)


# -- live chunks -----------------------------------------------------------------------------

async def _collect(url: str, *, until_seq: int | None = None, until_status: str | None = None,
                   timeout_s: float = WATCH_TIMEOUT_S) -> tuple[list[dict[str, Any]], bool]:
    """A viewer's messages until ``until_seq`` arrives (segment or gap) or the status is
    ``until_status``; whether that happened before the deadline."""
    messages: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s), websockets.connect(url) as ws:
            async for raw in ws:
                message = json.loads(raw)
                messages.append(message)
                if until_seq is not None and message.get("seq") == until_seq:
                    return messages, True
                if until_status is not None and message.get("status") == until_status:
                    return messages, True
    return messages, False


def _kinds(messages: list[dict[str, Any]]) -> dict[int, str]:
    return {m["seq"]: m["type"] for m in messages if m["type"] in ("segment", "gap")}


def _playlist_problems(server: Server, stream_id: str, hostile: int, name: str,
                       query: str) -> list[str]:
    """The hostile seq keeps its place in the playlist as an #EXT-X-GAP entry (or, when it
    came first, the media sequence starts after it)."""
    text = httpx.get(f"{server.url}/play/{stream_id}/{RENDITION}/index.m3u8{query}").text
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if line.endswith(f"{hostile:08d}.m4s")), None)
    if at is not None and "#EXT-X-GAP" in lines[max(0, at - 2):at]:
        return []
    first = next((int(line.split(":", 1)[1]) for line in lines
                  if line.startswith("#EXT-X-MEDIA-SEQUENCE:")), 0)
    if at is None and first > hostile:
        return []
    return [f"the {name} does not list seq {hostile} as a gap:\n{text}"]


def _stream_problems(deployment: Deployment, stream: dict[str, Any], hostile: int,
                     good: list[int]) -> list[str]:
    """Push done: watch it live up to the last good seq, end it, then replay it whole."""
    server = deployment.server
    url = ws_url(server, stream["id"], RENDITION, since=-1)
    live, arrived = asyncio.run(_collect(url, until_seq=good[-1]))
    problems = []
    if not arrived:
        problems.append(f"while live, the viewer never got seq {good[-1]}: {_kinds(live)}")
    problems += _playlist_problems(server, stream["id"], hostile, "live DVR playlist", "?dvr=1")
    ended = httpx.post(f"{server.url}/api/v1/streams/{stream['id']}/end",
                       headers={"X-Stream-Key": stream["stream_key"]})
    assert ended.status_code == 200, ended.text
    replay, finished = asyncio.run(_collect(url, until_status="ended"))
    if not finished:
        problems.append("the ended stream was never announced as ended (a chunk job that "
                        "never finished?)")
    for phase, messages in (("live", live), ("replay", replay)):
        kinds = _kinds(messages)
        if kinds.get(hostile) != "gap":
            problems.append(f"{phase}: seq {hostile} is {kinds.get(hostile)!r}, not a gap")
        if any(kinds.get(seq) != "segment" for seq in good):
            problems.append(f"{phase}: the good chunks {good} are not all segments: {kinds}")
    if finished:
        problems += _playlist_problems(server, stream["id"], hostile, "replay playlist", "")
    stored = [k for k in deployment.keys(f"media/{stream['id']}/")
              if k.endswith(f"/{hostile:08d}.m4s")]
    if stored:
        problems.append(f"a segment was stored for the hostile seq: {stored}")
    with httpx.Client(follow_redirects=True, timeout=30) as http:
        key = f"media/{stream['id']}/{RENDITION}/{hostile:08d}.m4s"
        answer = http.get(f"{server.url}/media/{key}")
        if answer.status_code != 404:
            problems.append(f"GET /media/{key} answered {answer.status_code}, not 404")
    return problems


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_live_chunk_is_a_gap_and_the_stream_goes_on(
    case: str, deployment: Deployment, targets: Targets, listener: Listener,
    chunks: list[Path], tmp_path: Path,
) -> None:
    server = deployment.server
    stream = create_stream(server)
    for seq, data in ((0, chunks[0].read_bytes()), (1, CASES[case](targets)),
                      (2, chunks[2].read_bytes())):
        pushed = push_chunk(server, stream, seq, data)
        assert pushed.status_code == 202, (seq, pushed.text)
    problems = _stream_problems(deployment, stream, hostile=1, good=[2])
    problems += _common_problems(deployment, listener, stream["id"], tmp_path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", ["dash-relative", "dash-listener"])
def test_a_hostile_first_chunk_is_a_gap_and_the_next_one_starts_the_stream(
    case: str, deployment: Deployment, targets: Targets, listener: Listener,
    chunks: list[Path], tmp_path: Path,
) -> None:
    """The first chunk is also the one probed to choose the ladder; the next ones follow at
    once, as a broadcaster sends them."""
    server = deployment.server
    stream = create_stream(server)
    for seq, data in ((0, CASES[case](targets)), (1, chunks[1].read_bytes()),
                      (2, chunks[2].read_bytes())):
        pushed = push_chunk(server, stream, seq, data)
        assert pushed.status_code == 202, (seq, pushed.text)
    problems = _stream_problems(deployment, stream, hostile=0, good=[1, 2])
    problems += _common_problems(deployment, listener, stream["id"], tmp_path)
    assert not problems, "\n".join(problems)


def test_a_refused_first_chunk_left_alone_does_not_end_the_stream(
    deployment: Deployment, targets: Targets, listener: Listener, chunks: list[Path],
) -> None:
    """A broadcaster's next chunk may come seconds later (2 s chunks, a slow upload): until
    then the refused first chunk must not have failed the stream, however long the worker
    retries it."""
    server = deployment.server
    stream = create_stream(server)
    pushed = push_chunk(server, stream, 0, CASES["dash-listener"](targets))
    assert pushed.status_code == 202, pushed.text
    video = _unless_failed(server, stream["id"], FIRST_CHUNK_ALONE_S)
    assert video["status"] in ("idle", "live"), (
        f"the stream is {video['status']} ({video.get('error')!r}) after its first chunk was "
        f"refused, instead of going on with a gap")
    for seq in (1, 2):
        pushed = push_chunk(server, stream, seq, chunks[seq].read_bytes())
        assert pushed.status_code == 202, (seq, pushed.text)
    problems = _stream_problems(deployment, stream, hostile=0, good=[1, 2])
    assert not problems + listener.connections, "\n".join(problems + listener.connections)


def _unless_failed(server: Server, video_id: str, seconds: float) -> dict[str, Any]:
    """The video once it has failed, or after ``seconds`` if it has not."""
    deadline = time.monotonic() + seconds
    while True:
        video: dict[str, Any] = httpx.get(f"{server.url}/api/v1/videos/{video_id}").json()
        if video["status"] == "failed" or time.monotonic() > deadline:
            return video
        time.sleep(0.2)


# -- afterwards ------------------------------------------------------------------------------

def test_the_server_still_serves_after_every_hostile_file(deployment: Deployment) -> None:
    server = deployment.server
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    with admin(server) as client:
        victim = client.get(f"/api/v1/videos/{deployment.victim_id}").json()
    assert victim["status"] == "ready"
    prefix = f"media/{deployment.victim_id}/{RENDITION}/"
    assert prefix + "00000000.m4s" in deployment.keys(prefix)
