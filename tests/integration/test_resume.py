"""A restarted broadcaster resumes through the HTTP interface: it asks where its stream goes
on, and a chunk already stored is never handed out for writing again."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkcast.testing import Server
from tests.integration.live_support import (
    create_stream,
    make_chunks,
    push_chunk,
    seqs,
    watch,
    ws_url,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_chunks(tmp_path_factory.mktemp("chunks"), seconds=3, size="320x240")


def resume(server: Server, stream: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {} if key == "" else {"X-Stream-Key": key or stream["stream_key"]}
    return httpx.get(f"{server.url}/api/v1/streams/{stream['id']}/resume", headers=headers)


def test_a_restarted_broadcaster_goes_on_after_the_last_stored_chunk(
    live_server: Server, chunks: list[Path],
) -> None:
    stream = create_stream(live_server)
    assert resume(live_server, stream).json() == {"next_seq": 0, "next_pts": 0.0,
                                                  "status": "idle"}
    for seq in (0, 1):  # 1 s chunks at pts 0 and 1
        assert push_chunk(live_server, stream, seq, chunks[seq].read_bytes()).status_code == 202
    assert resume(live_server, stream).json() == {"next_seq": 2, "next_pts": 2.0,
                                                  "status": "live"}

    # A broadcaster that starts over at seq 0 is stopped before it overwrites anything.
    restarted = push_chunk(live_server, stream, 0, chunks[2].read_bytes())
    assert restarted.status_code == 409, restarted.text
    message = restarted.json()["error"]["message"]
    assert "chunk 0 is already stored" in message
    assert f"continues at seq 2: GET /api/v1/streams/{stream['id']}/resume" in message
    stored = live_server.data_dir / "objects" / "chunks" / stream["id"] / "00000000.ts"
    assert stored.read_bytes() == chunks[0].read_bytes()
    # Reporting a stored chunk again is still the same harmless answer.
    again = httpx.post(f"{live_server.url}/api/v1/streams/{stream['id']}/chunks/1/complete",
                       json={"seq": 1, "duration": 1.0, "pts_start": 1.0},
                       headers={"X-Stream-Key": stream["stream_key"]})
    assert (again.status_code, again.json()) == (202, {"seq": 1, "new": False})

    # Resumed where it said, the stream flows on.
    assert push_chunk(live_server, stream, 2, chunks[2].read_bytes()).status_code == 202
    messages = asyncio.run(watch(ws_url(live_server, stream["id"], "240p", since=-1),
                                 until_seq=2))
    assert seqs(messages) == [0, 1, 2]


def test_resume_is_for_the_stream_key_holder_of_a_stream_still_open(
    live_server: Server, chunks: list[Path],
) -> None:
    stream = create_stream(live_server)
    assert resume(live_server, stream, key="").status_code == 401
    assert resume(live_server, stream, key="x" * 43).status_code == 403
    unknown = httpx.get(f"{live_server.url}/api/v1/streams/{'a' * 16}/resume",
                        headers={"X-Stream-Key": stream["stream_key"]})
    assert unknown.status_code == 404
    ended = httpx.post(f"{live_server.url}/api/v1/streams/{stream['id']}/end",
                       headers={"X-Stream-Key": stream["stream_key"]})
    assert ended.status_code == 200
    refused = resume(live_server, stream)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "conflict"


def test_the_schema_documents_resume_and_the_refused_overwrite(live_server: Server) -> None:
    paths = httpx.get(f"{live_server.url}/openapi.json").json()["paths"]
    answers = paths["/api/v1/streams/{video_id}/resume"]["get"]["responses"]
    assert {"200", "401", "403", "404", "409"} <= set(answers)
    assert "already stored" in paths["/api/v1/streams/{video_id}/chunks"]["post"][
        "responses"]["409"]["description"]
