"""Abuse: requests that try to make the server read, allocate or loop more than they are
worth. Each is refused with a clear 4xx (or the video fails with a reason), while /healthz
keeps answering within 0.5 s and the server's memory stays where it was."""

import contextlib
import json
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkcast.adapters.storage.s3 import make_client
from chunkcast.media.process import ffmpeg_path
from chunkcast.testing import Server, run_server
from tests.integration.api import admin, create, put, wait_done
from tests.integration.live_support import create_stream, make_chunks, push_chunk
from tests.servers.seaweedfs import SeaweedServer, new_bucket_name

pytestmark = pytest.mark.integration

HEALTH_LIMIT_S = 0.5
MiB = 1024 * 1024


class HealthWatch:
    """Polls /healthz in a thread while a test abuses the server; records the slowest
    answer (a refused or failed answer counts as infinitely slow)."""

    def __init__(self, server: Server) -> None:
        self._url = f"{server.url}/healthz"
        self._stop = threading.Event()
        self.slowest = 0.0
        self.answers = 0
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get(self._url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                took = time.monotonic() - started if ok else float("inf")
                self.slowest = max(self.slowest, took)
                self.answers += 1
                self._first.set()
                self._stop.wait(0.05)

    def __enter__(self) -> "HealthWatch":
        self._thread.start()
        assert self._first.wait(5), "/healthz never answered"
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        assert self.slowest < HEALTH_LIMIT_S, f"/healthz took {self.slowest:.2f} s"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def memory_kept(server: Server, limit: int = 60 * MiB) -> Iterator[None]:
    before = rss_bytes(server.pid)
    yield
    grown = rss_bytes(server.pid) - before
    assert grown < limit, f"the server grew by {grown / MiB:.0f} MiB"


def raw_request(server: Server, head: str, body_pieces: Iterator[bytes]) -> tuple[int, str]:
    """Send a request by hand (the body as it comes) and read the answer; the server may
    answer and close before the body is all sent."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        with contextlib.suppress(OSError):
            for piece in body_pieces:
                sock.sendall(piece)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                    break
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")


def zeros(total: int, piece: int = MiB) -> Iterator[bytes]:
    block = b"0" * piece
    for _ in range(total // piece):
        yield block


def test_a_far_sequence_number_is_refused_and_nothing_is_built_for_it(
    live_server: Server, tmp_path: Path
) -> None:
    chunks = make_chunks(tmp_path / "chunks", seconds=2, size="320x240")
    stream = create_stream(live_server)
    with HealthWatch(live_server), memory_kept(live_server):
        assert push_chunk(live_server, stream, 0, chunks[0].read_bytes()).status_code == 202
        base = f"{live_server.url}/api/v1/streams/{stream['id']}"
        headers = {"X-Stream-Key": stream["stream_key"]}
        for far in (99_999_999, 301, 10_000):
            body = {"seq": far, "duration": 1.0, "pts_start": 2.0}
            answer = httpx.post(f"{base}/chunks", json=body, headers=headers)
            assert answer.status_code == 422, answer.text
            assert "out of range" in answer.json()["error"]["message"]
            complete = httpx.post(f"{base}/chunks/{far}/complete", json=body, headers=headers)
            assert complete.status_code == 422, complete.text
        assert push_chunk(live_server, stream, 2, chunks[1].read_bytes()).status_code == 202
    # Playlists list what was sent, with one gap entry for the missing seq 1.
    deadline = time.monotonic() + 60
    while True:
        playlist = httpx.get(f"{live_server.url}/play/{stream['id']}/240p/index.m3u8?dvr=1")
        if playlist.status_code == 200 and playlist.text.count("#EXTINF") == 3:
            break
        assert time.monotonic() < deadline, playlist.text
        time.sleep(0.2)
    assert playlist.text.count("#EXT-X-GAP") == 1
    assert len(playlist.text) < 2000
    # A jump within the window: the live playlist still lists at most its window of seqs.
    assert push_chunk(live_server, stream, 250, chunks[1].read_bytes()).status_code == 202
    deadline = time.monotonic() + 60
    while True:
        live = httpx.get(f"{live_server.url}/play/{stream['id']}/240p/index.m3u8").text
        if "#EXT-X-MEDIA-SEQUENCE:251" in live:  # Media Sequence Numbers are seq + 1
            break
        assert time.monotonic() < deadline, live
        time.sleep(0.2)
    assert live.count("#EXTINF") == 1


def test_a_huge_body_is_refused_before_it_is_read(server: Server) -> None:
    with HealthWatch(server), memory_kept(server):
        # Declared: refused from the headers alone, anonymous or not.
        status, body = raw_request(server, (
            "POST /api/v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {300 * MiB}\r\n\r\n"), zeros(300 * MiB))
        assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
        # Chunked, without a length: refused once past the cap.
        def chunked() -> Iterator[bytes]:
            for piece in zeros(300 * MiB, 256 * 1024):
                yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        status, body = raw_request(server, (
            "POST /api/v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {server.token}\r\nTransfer-Encoding: chunked\r\n\r\n"),
            chunked())
        assert status == 413, body
    # A normal request still works.
    with admin(server) as client:
        assert client.post("/api/v1/videos", json={"title": "after"}).status_code == 201


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(live_server: Server, number: str) -> None:
    stream = create_stream(live_server)
    base = f"{live_server.url}/api/v1/streams/{stream['id']}"
    headers = {"X-Stream-Key": stream["stream_key"], "Content-Type": "application/json"}
    for body in (f'{{"seq": 0, "duration": {number}}}',
                 f'{{"seq": 0, "duration": 1.0, "pts_start": {number}}}'):
        answer = httpx.post(f"{base}/chunks", content=body, headers=headers)
        assert answer.status_code == 422, (body, answer.text)
        answer = httpx.post(f"{base}/chunks/0/complete", content=body, headers=headers)
        assert answer.status_code == 422, (body, answer.text)
    answer = httpx.post(f"{live_server.url}/api/v1/videos",
                        content=f'{{"title": "x", "size": {number}}}',
                        headers={"Authorization": f"Bearer {live_server.token}",
                                 "Content-Type": "application/json"})
    assert answer.status_code == 422


def duration_bomb(path: Path) -> Path:
    """A small Matroska file whose header says it lasts a million hours."""
    plain = path.with_suffix(".plain.mkv")
    subprocess.run([ffmpeg_path(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=blue:size=160x120:rate=10:duration=2", "-c:v", "libx264",
                    "-preset", "ultrafast", str(plain)], check=True)
    data = plain.read_bytes()
    at = data.index(b"\x44\x89\x88")  # Segment Info > Duration, an 8-byte float (ms)
    path.write_bytes(data[:at + 3] + struct.pack(">d", 3.6e12) + data[at + 11:])
    return path


def test_a_declared_duration_bomb_fails_with_a_reason(server: Server, tmp_path: Path) -> None:
    bomb = duration_bomb(tmp_path / "bomb.mkv")
    assert bomb.stat().st_size < 20_000
    with HealthWatch(server), memory_kept(server), admin(server) as client:
        created = create(client)
        assert put(created, bomb.read_bytes()).status_code == 200
        assert client.post(f"/api/v1/videos/{created['id']}/complete").status_code == 202
        video = wait_done(client, created["id"], timeout_s=60)
    assert video["status"] == "failed"
    assert "forged" in video["error"]
    assert "/" not in video["error"] and "http" not in video["error"]


def test_public_errors_name_no_path_or_url(server: Server) -> None:
    with admin(server) as client:
        created = create(client)
        assert put(created, b"#EXTM3U\n#EXTINF:1,\n/etc/passwd\n").status_code == 200
        client.post(f"/api/v1/videos/{created['id']}/complete")
        video = wait_done(client, created["id"])
    assert video["status"] == "failed"
    assert "/" not in video["error"] and "http" not in video["error"]


def test_pages_carry_a_content_security_policy_and_docs_load_nothing_remote(
    server: Server,
) -> None:
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    for path in ("/docs", "/redoc"):
        assert httpx.get(f"{server.url}{path}").status_code == 404
    assert httpx.get(f"{server.url}/openapi.json").json()["info"]["title"] == "chunkcast"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory,
              seaweedfs: SeaweedServer) -> Iterator[tuple[Server, str]]:
    """An embedded server on SeaweedFS with small caps: 200 KB uploads, 100 KB chunks."""
    bucket = new_bucket_name("abuse")
    env = {**seaweedfs.env(), "CHUNKCAST_STORAGE_URL": seaweedfs.storage_url(bucket),
           "CHUNKCAST_MAX_UPLOAD_BYTES": str(200_000), "CHUNKCAST_MAX_CHUNK_BYTES": "100000",
           "CHUNKCAST_X264_PRESET": "ultrafast"}
    with run_server(tmp_path_factory.mktemp("s3abuse"), env=env) as running:
        yield running, bucket


def object_exists(seaweedfs: SeaweedServer, bucket: str, key: str) -> bool:
    client = make_client(seaweedfs.endpoint, seaweedfs.region,
                         access_key=seaweedfs.access_key, secret_key=seaweedfs.secret_key)
    try:
        listed: dict[str, Any] = dict(client.list_objects_v2(Bucket=bucket, Prefix=key))
        return bool(listed.get("Contents"))
    finally:
        client.close()


def test_an_oversized_s3_upload_fails_and_is_not_kept(
    s3_server: tuple[Server, str], seaweedfs: SeaweedServer
) -> None:
    server, bucket = s3_server
    with admin(server) as client:
        # A declared size over the cap is refused at once, multipart or not.
        refused = client.post("/api/v1/videos", json={"title": "big", "size": 10**12})
        assert refused.status_code == 413
        # A pre-signed PUT does not bind the length: the size is checked at complete.
        created = create(client)
        assert put(created, b"\0" * 300_000).status_code == 200
        assert client.post(f"/api/v1/videos/{created['id']}/complete").status_code == 202
        video = client.get(f"/api/v1/videos/{created['id']}").json()
    assert video["status"] == "failed"
    assert "larger than the limit" in video["error"]
    assert not object_exists(seaweedfs, bucket, f"sources/{created['id']}/")


def test_an_oversized_live_chunk_is_refused_and_the_stream_goes_on(
    s3_server: tuple[Server, str], seaweedfs: SeaweedServer, tmp_path: Path
) -> None:
    server, bucket = s3_server
    chunks = make_chunks(tmp_path / "chunks", seconds=2, size="160x120")
    stream = create_stream(server)
    assert push_chunk(server, stream, 0, chunks[0].read_bytes()).status_code == 202
    answer = push_chunk(server, stream, 1, b"\x47" * 150_000)
    assert answer.status_code == 413 and "limit" in answer.json()["error"]["message"]
    assert not object_exists(seaweedfs, bucket, f"chunks/{stream['id']}/00000001.ts")
    assert push_chunk(server, stream, 2, chunks[1].read_bytes()).status_code == 202


def test_an_oversized_chunk_is_refused_at_the_local_store(tmp_path: Path) -> None:
    env = {"CHUNKCAST_MAX_CHUNK_BYTES": "100000", "CHUNKCAST_MAX_UPLOAD_BYTES": "300000"}
    with run_server(tmp_path / "small", env=env) as server:
        stream = create_stream(server)
        headers = {"X-Stream-Key": stream["stream_key"]}
        asked = httpx.post(f"{server.url}/api/v1/streams/{stream['id']}/chunks",
                           json={"seq": 0, "duration": 1.0}, headers=headers)
        upload = asked.json()["upload"]
        answer = httpx.put(upload["url"], content=b"\x47" * 150_000, headers=upload["headers"])
        assert answer.status_code == 413
        assert not (server.data_dir / "objects" / "chunks" / stream["id"]).exists()
        # A source may still be larger than a chunk.
        with admin(server) as client:
            created = create(client)
            assert put(created, b"\0" * 150_000).status_code == 200
