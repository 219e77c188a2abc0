"""Raw HTTP steps of the upload flow, as any client would do them."""

import time
from pathlib import Path
from typing import Any

import httpx

from chunkcast.testing import Server


def admin(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30,
                        headers={"Authorization": f"Bearer {server.token}"})


def create(client: httpx.Client, title: str = "clip") -> dict[str, Any]:
    response = client.post("/api/v1/videos", json={"title": title})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def put(created: dict[str, Any], data: bytes) -> httpx.Response:
    upload = created["upload"]
    return httpx.request(upload["method"], upload["url"], content=data,
                         headers=upload["headers"], timeout=60)


def wait_done(client: httpx.Client, video_id: str, timeout_s: float = 120) -> dict[str, Any]:
    """Poll until the video is ready or failed; progress never goes backwards."""
    deadline = time.monotonic() + timeout_s
    last = 0
    while True:
        video: dict[str, Any] = client.get(f"/api/v1/videos/{video_id}").json()
        assert 0 <= video["progress"] <= 100 and video["progress"] >= last, video
        last = video["progress"]
        if video["status"] in ("ready", "failed"):
            return video
        assert time.monotonic() < deadline, f"still {video['status']} after {timeout_s} s"
        time.sleep(0.2)


def upload(server: Server, path: Path, title: str = "clip") -> dict[str, Any]:
    """Create, PUT, complete and wait: the whole upload flow over HTTP."""
    with admin(server) as client:
        created = create(client, title)
        assert put(created, path.read_bytes()).status_code == 200
        response = client.post(f"/api/v1/videos/{created['id']}/complete")
        assert response.status_code == 202, response.text
        return wait_done(client, created["id"])
