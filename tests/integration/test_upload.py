"""Upload generated clips through raw HTTP and through the CLI; every rendition plays."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from chunkcast.testing import Server
from tests.integration.api import upload
from tests.integration.media_checks import check_rendition

pytestmark = pytest.mark.integration

LADDERS = {
    "landscape.mp4": (["240p", "360p"], True),
    "silent.mp4": (["240p"], False),
    "portrait.mp4": (["240p"], True),  # 480x270 rotated 90° plays as 270x480
    "odd.mp4": (["182p"], True),  # below the lowest rung: one rendition at its own size
    "long.mp4": (["240p"], True),  # several chunks, transcoded in parallel
}


@pytest.mark.parametrize("name", sorted(LADDERS))
def test_upload_over_http_plays_at_every_rung(server: Server, clips: Path, name: str) -> None:
    video = upload(server, clips / name, title=name)
    assert video["status"] == "ready", video["error"]
    assert video["progress"] == 100
    renditions, has_audio = LADDERS[name]
    assert [r["name"] for r in video["renditions"]] == renditions
    assert video["has_audio"] is has_audio
    with httpx.Client(timeout=30) as client:
        master = client.get(video["playback"]["hls"])
        assert master.status_code == 200
        assert master.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        for r in video["renditions"]:
            assert f"RESOLUTION={r['width']}x{r['height']}" in master.text
            assert r["codecs"].startswith("avc1.64")
            assert ("mp4a.40.2" in r["codecs"]) is has_audio
            url = video["playback"]["hls"].replace("master.m3u8", f"{r['name']}/index.m3u8")
            check_rendition(client, url, clips / name)


def test_portrait_keeps_its_orientation(server: Server, clips: Path) -> None:
    video = upload(server, clips / "portrait.mp4")
    (r,) = video["renditions"]
    assert (r["width"], r["height"]) == (240, 426)


def test_static_playlists_are_written_to_storage(server: Server, clips: Path) -> None:
    video = upload(server, clips / "silent.mp4")
    objects = server.data_dir / "objects" / "media" / video["id"]
    assert "240p/index.m3u8" in (objects / "master.m3u8").read_text()
    static = (objects / "240p" / "index.m3u8").read_text()
    assert static.startswith("#EXTM3U") and "#EXT-X-ENDLIST" in static
    assert '#EXT-X-MAP:URI="init.mp4"' in static


def test_cli_upload_prints_a_playable_hls_url(server: Server, clips: Path) -> None:
    env = {**os.environ, "CHUNKCAST_DATA_DIR": str(server.data_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "chunkcast", "upload", str(clips / "landscape.mp4"),
         "--title", "from the CLI", "--server", server.url],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    hls = next(line.split(None, 1)[1] for line in proc.stdout.splitlines()
               if line.startswith("hls:"))
    with httpx.Client(timeout=30) as client:
        master = client.get(hls).text
        assert master.count("#EXT-X-STREAM-INF") == 2
        check_rendition(client, hls.replace("master.m3u8", "360p/index.m3u8"),
                        clips / "landscape.mp4")


def test_cli_private_upload_prints_signed_links_that_alone_play(
    server: Server, clips: Path,
) -> None:
    env = {**os.environ, "CHUNKCAST_DATA_DIR": str(server.data_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "chunkcast", "upload", str(clips / "silent.mp4"), "--private",
         "--server", server.url], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    hls = next(line.split(None, 1)[1] for line in proc.stdout.splitlines()
               if line.startswith("hls:"))
    assert "?e=" in hls and "&st=" in hls
    with httpx.Client(timeout=30) as client:
        master = client.get(hls)
        assert master.status_code == 200
        variant = next(line for line in master.text.splitlines() if "index.m3u8?e=" in line)
        media = client.get(hls.split("master.m3u8")[0] + variant)
        assert media.status_code == 200
        segment = next(line for line in media.text.splitlines() if line.endswith(".m4s")
                       or ".m4s?" in line)
        assert "/private/media/" in segment and client.get(segment).status_code == 200
        assert client.get(hls.split("?")[0]).status_code == 403
        assert client.get(segment.split("?")[0]).status_code == 403


def test_cli_upload_of_a_bad_file_exits_non_zero_with_the_reason(
    server: Server, tmp_path: Path
) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    env = {**os.environ, "CHUNKCAST_DATA_DIR": str(server.data_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "chunkcast", "upload", str(text), "--server", server.url],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "failed" in proc.stderr and "not a readable video" in proc.stderr


def test_metrics_report_uploads_videos_transcodes_and_backlog(
    server: Server, clips: Path
) -> None:
    upload(server, clips / "silent.mp4")
    text = httpx.get(f"{server.url}/metrics").text
    assert 'chunkcast_uploads_total{result="ok"}' in text
    assert 'chunkcast_videos{status="ready"}' in text
    assert 'chunkcast_transcode_realtime_factor_count{group="all"}' in text
    assert 'chunkcast_transcode_seconds_bucket{group="all"' in text
    assert 'chunkcast_bus_backlog{group="all",topic="chunks"} 0.0' in text


def test_the_list_filters_by_status_and_kind(server: Server, clips: Path) -> None:
    video = upload(server, clips / "silent.mp4")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ready = client.get("/api/v1/videos", params={"status": ["ready", "ended"],
                                                     "kind": "vod", "limit": 100}).json()
        assert video["id"] in {v["id"] for v in ready["items"]}
        assert {(v["status"], v["kind"]) for v in ready["items"]} == {("ready", "vod")}
        live = client.get("/api/v1/videos", params={"kind": "live", "limit": 100}).json()
        assert video["id"] not in {v["id"] for v in live["items"]}
        bad = client.get("/api/v1/videos", params={"status": "nonsense"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
