"""Bad input gets a clear 4xx or a failed status with a reason; the server keeps serving."""

import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from chunkcast.domain.signing import signature
from chunkcast.testing import Server
from tests.integration.api import admin, create, put, upload, wait_done

pytestmark = pytest.mark.integration


def _complete_and_wait(server: Server, data: bytes) -> dict[str, object]:
    with admin(server) as client:
        created = create(client)
        assert put(created, data).status_code == 200
        response = client.post(f"/api/v1/videos/{created['id']}/complete")
        assert response.status_code == 202, response.text
        return wait_done(client, created["id"])


def test_a_text_file_fails_with_a_reason(server: Server) -> None:
    video = _complete_and_wait(server, b"hello, this is not a video\n" * 50)
    assert video["status"] == "failed"
    assert "not a readable video file" in str(video["error"])


def test_an_empty_file_fails_with_a_reason(server: Server) -> None:
    video = _complete_and_wait(server, b"")
    assert video["status"] == "failed"
    assert video["error"] == "the uploaded file is empty"


def test_a_truncated_mp4_fails_and_keeps_the_source(server: Server, clips: Path) -> None:
    data = (clips / "long.mp4").read_bytes()
    video = _complete_and_wait(server, data[: len(data) // 2])
    assert video["status"] == "failed"
    assert video["error"]
    # What was stored is not lost: the source is still there for inspection.
    assert (server.data_dir / "objects" / "sources" / str(video["id"]) / "source").stat().st_size


def test_a_faststart_mp4_cut_short_fails_at_the_cut(server: Server, clips: Path,
                                                    tmp_path: Path) -> None:
    import subprocess

    from chunkcast.media.process import ffmpeg_path

    faststart = tmp_path / "faststart.mp4"
    subprocess.run([ffmpeg_path(), "-v", "error", "-i", str(clips / "long.mp4"), "-c", "copy",
                    "-movflags", "+faststart", str(faststart)], check=True)
    data = faststart.read_bytes()
    video = _complete_and_wait(server, data[: int(len(data) * 0.4)])
    assert video["status"] == "failed"
    assert "truncated" in str(video["error"]) or "ffmpeg failed" in str(video["error"])


def _tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def test_tampered_or_expired_upload_urls_are_refused(server: Server) -> None:
    with admin(server) as client:
        created = create(client)
    url = created["upload"]["url"]
    sig = parse_qs(urlsplit(url).query)["signature"][0]
    bad_sig = _tamper(url, signature=("0" if sig[0] != "0" else "1") + sig[1:])
    other_key = url.replace(created["id"], "a" * 16)
    later = _tamper(url, expires=str(int(time.time()) + 999_999))
    key = f"sources/{created['id']}/source"
    secret = (server.data_dir / "secret-key").read_text().strip().encode()
    past = int(time.time()) - 10
    expired = _tamper(url, expires=str(past), signature=signature(secret, "PUT", key, past))
    unsigned = url.split("?", 1)[0]
    for bad in (bad_sig, other_key, later, expired, unsigned):
        response = httpx.put(bad, content=b"x" * 100)
        assert response.status_code == 403, (bad, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    # Nothing was stored by the refused requests.
    assert not (server.data_dir / "objects" / "sources" / created["id"]).exists()
    # A signed PUT URL does not allow a GET of the same key.
    assert httpx.get(url).status_code == 403


def test_complete_before_any_upload_is_a_conflict(server: Server) -> None:
    with admin(server) as client:
        created = create(client)
        response = client.post(f"/api/v1/videos/{created['id']}/complete")
        assert response.status_code == 409
        assert "upload" in response.json()["error"]["message"]
        assert client.get(f"/api/v1/videos/{created['id']}").json()["status"] == "created"


def test_path_like_titles_and_keys_never_escape_the_storage_root(
    server: Server, clips: Path
) -> None:
    video = upload(server, clips / "silent.mp4", title="../../../etc/passwd")
    assert video["status"] == "ready" and video["title"] == "../../../etc/passwd"
    for path in ("/media/..%2F..%2Fetc%2Fpasswd", "/media/media/..%2F..%2F..%2Fetc%2Fpasswd",
                 "/media/sources/%2Fetc%2Fpasswd", "/api/v1/videos/..%2F..%2Fetc",
                 "/play/..%2F..%2Fetc/master.m3u8", f"/play/{video['id']}/..%2F/index.m3u8"):
        response = httpx.get(server.url + path)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert "root:" not in response.text
    outside = server.data_dir.parent / "escaped"
    response = httpx.put(server.url + "/media/..%2F..%2Fescaped?expires=9999999999&signature=x",
                         content=b"x")
    assert 400 <= response.status_code < 500
    assert not outside.exists()


def test_requests_without_the_admin_token_are_refused(server: Server) -> None:
    response = httpx.post(f"{server.url}/api/v1/videos", json={"title": "x"})
    assert response.status_code == 401
    response = httpx.post(f"{server.url}/api/v1/videos", json={"title": "x"},
                          headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


@pytest.mark.parametrize("body", [{}, {"title": ""}, {"title": "x" * 201}, {"title": 5}])
def test_malformed_requests_get_a_4xx_with_a_json_error(server: Server,
                                                        body: dict[str, object]) -> None:
    with admin(server) as client:
        response = client.post("/api/v1/videos", json=body)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_input"
        assert client.post("/api/v1/videos", content=b"{not json").status_code == 422
        assert client.get("/api/v1/videos/nope").status_code == 422
        assert client.get(f"/api/v1/videos/{'a' * 16}").status_code == 404
        assert client.get("/api/v1/videos?limit=0").status_code == 422


def test_the_server_keeps_serving_after_bad_input(server: Server, clips: Path) -> None:
    _complete_and_wait(server, b"garbage" * 10)
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert upload(server, clips / "silent.mp4")["status"] == "ready"
