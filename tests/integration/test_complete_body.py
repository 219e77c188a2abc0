"""``POST /api/v1/videos/{id}/complete`` takes what JSON clients send for a single PUT: no
body, or ``{}``; a half multipart completion is refused."""

from pathlib import Path

import pytest

from chunkcast.testing import Server
from tests.integration.api import admin, create, put, wait_done

pytestmark = pytest.mark.integration


def test_an_empty_json_object_completes_an_upload(server: Server, clips: Path) -> None:
    with admin(server) as client:
        created = create(client, "empty body")
        assert put(created, (clips / "silent.mp4").read_bytes()).status_code == 200
        half = client.post(f"/api/v1/videos/{created['id']}/complete",
                           json={"upload_id": "u-1"})
        assert half.status_code == 422
        assert "upload_id and parts" in half.json()["error"]["message"]
        completed = client.post(f"/api/v1/videos/{created['id']}/complete", json={})
        assert completed.status_code == 202, completed.text
        assert completed.json()["status"] == "uploaded"
        video = wait_done(client, created["id"])
        assert video["status"] == "ready", video["error"]
