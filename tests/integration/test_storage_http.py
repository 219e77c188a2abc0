"""The local store as clients and CDNs meet it over HTTP: size cap, Range, cache headers."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chunkcast.testing import Server, run_server
from tests.integration.api import admin, create, put, upload

pytestmark = pytest.mark.integration


def test_an_upload_over_the_size_cap_is_refused_and_not_stored(tmp_path: Path) -> None:
    cap = {"CHUNKCAST_MAX_UPLOAD_BYTES": "100000"}
    with run_server(tmp_path / "data", env=cap) as server, admin(server) as client:
        created = create(client)
        response = put(created, b"\0" * 200_000)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"

        def chunked() -> Iterator[bytes]:  # no Content-Length: the cap applies while streaming
            for _ in range(20):
                yield b"\0" * 10_000

        upload_ = created["upload"]
        response = httpx.put(upload_["url"], content=chunked(), headers=upload_["headers"])
        assert response.status_code == 413
        sources = server.data_dir / "objects" / "sources"
        assert not sources.exists() or not any(sources.rglob("*"))
        assert not any((server.data_dir / "objects" / ".tmp").iterdir())
        assert put(created, b"\0" * 1000).status_code == 200


def test_segments_serve_ranges_and_cache_headers(server: Server, clips: Path) -> None:
    video = upload(server, clips / "silent.mp4")
    base = video["playback"]["hls"].rsplit("/", 1)[0]
    playlist = httpx.get(f"{base}/240p/index.m3u8")
    assert "max-age" in playlist.headers["cache-control"]
    segment_url = next(line for line in playlist.text.splitlines() if line.endswith(".m4s"))
    whole = httpx.get(segment_url)
    assert whole.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert whole.headers["content-type"] == "video/iso.segment"
    part = httpx.get(segment_url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == whole.content[100:200]
    assert httpx.head(segment_url).headers["content-length"] == str(len(whole.content))
    init = httpx.get(segment_url.rsplit("/", 1)[0] + "/init.mp4")
    assert init.headers["content-type"] == "video/mp4"
    assert init.headers["cache-control"].endswith("immutable")


def test_sources_are_not_public(server: Server, clips: Path) -> None:
    video = upload(server, clips / "silent.mp4")
    response = httpx.get(f"{server.url}/media/sources/{video['id']}/source")
    assert response.status_code == 403


def test_delete_removes_the_video_and_its_objects(server: Server, clips: Path) -> None:
    video = upload(server, clips / "silent.mp4")
    with admin(server) as client:
        assert client.delete(f"/api/v1/videos/{video['id']}").status_code == 204
        assert client.get(f"/api/v1/videos/{video['id']}").status_code == 404
    objects = server.data_dir / "objects"
    assert not (objects / "media" / video["id"]).exists()
    assert not (objects / "sources" / video["id"]).exists()
    assert httpx.get(video["playback"]["hls"]).status_code == 404


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    env = {**os.environ, "CHUNKCAST_DATA_DIR": str(tmp_path)}
    for _ in range(2):  # idempotent
        proc = subprocess.run([sys.executable, "-m", "chunkcast", "db", "upgrade"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    import sqlite3

    tables = {row[0] for row in sqlite3.connect(tmp_path / "chunkcast.db").execute(
        "select name from sqlite_master where type='table'")}
    assert {"videos", "renditions", "chunks", "segments", "chunk_jobs"} <= tables


def test_players_on_other_sites_may_fetch_playlists_and_segments(
    server: Server, clips: Path,
) -> None:
    video = upload(server, clips / "silent.mp4")
    site = {"Origin": "https://player.example"}
    master = httpx.get(f"{server.url}/play/{video['id']}/master.m3u8", headers=site)
    segment = httpx.get(f"{server.url}/media/media/{video['id']}/240p/00000000.m4s",
                        headers=site)
    for answer in (master, segment):
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "*"
    preflight = httpx.options(f"{server.url}/api/v1/videos", headers={
        **site, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
