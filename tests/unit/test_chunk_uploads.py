"""Chunk delivery through outages, where a stream resumes, and the bounded backlog."""

from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkcast.broadcaster import ResumePoint, parse_resume
from chunkcast.broadcaster.backlog import Backlog, Delivery
from chunkcast.broadcaster.uploads import ChunkUploader, UploadFailed

REPORT = {"seq": 7, "duration": 1.0, "pts_start": 8.0, "captured_at": "2026-11-24T10:00:00.000Z"}


class FakeApi:
    """The stream API and storage behind a MockTransport, on a fake clock that moves only
    when the uploader waits. ``down_until``: every request before it gets a 503."""

    def __init__(self, *, down_until: float = 0.0, chunk_status: int = 201,
                 resume_status: int = 200) -> None:
        self.now = 0.0
        self.down_until = down_until
        self.chunk_status = chunk_status
        self.resume_status = resume_status
        self.done: list[str] = []  # the calls answered with success, in order
        self.last_attempt = 0.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.last_attempt = self.now
        if self.now < self.down_until:
            return httpx.Response(503, headers={"Retry-After": "1"},
                                  json={"error": {"code": "unavailable", "message": "down"}})
        path = request.url.path
        if path.endswith("/resume"):
            if self.resume_status != 200:
                return _error(self.resume_status, "the stream is ended")
            return httpx.Response(200, json={"next_seq": 7, "next_pts": 8.0, "status": "live"})
        if path.endswith("/chunks"):
            if self.chunk_status != 201:
                return _error(self.chunk_status, "chunk 7 is already stored; this stream "
                              "continues at seq 9")
            self.done.append("url")
            return httpx.Response(201, json={"upload": {"url": "http://store/c/7.ts",
                                                        "method": "PUT", "headers": {}}})
        if request.url.host == "store":
            assert request.read() == b"chunk bytes"
            self.done.append("put")
            return httpx.Response(200)
        self.done.append("complete")
        return httpx.Response(202, json={"seq": 7, "new": True})

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.now += timeout
        return False


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": "conflict", "message": message}})


def uploader(api: FakeApi) -> ChunkUploader:
    up = ChunkUploader("http://api", "s1", "key", transport=httpx.MockTransport(api.handle),
                       clock=lambda: api.now)
    up.aborted.wait = api.wait  # type: ignore[method-assign]
    return up


@pytest.fixture
def chunk(tmp_path: Path) -> Path:
    path = tmp_path / "00000007.ts"
    path.write_bytes(b"chunk bytes")
    return path


def test_a_chunk_rides_out_an_outage_shorter_than_its_retry_window(chunk: Path) -> None:
    api = FakeApi(down_until=10.0)
    uploader(api).upload(7, chunk, REPORT, deadline=30.0)
    assert api.done == ["url", "put", "complete"]
    assert api.now <= 12.0  # retried at least every 2 s: delivered soon after the outage


def test_a_chunk_is_given_up_when_its_retry_window_closes(chunk: Path) -> None:
    api = FakeApi(down_until=100.0)
    with pytest.raises(UploadFailed, match="chunk 7: upload URL: 503: down") as failed:
        uploader(api).upload(7, chunk, REPORT, deadline=30.0)
    assert not failed.value.fatal  # the chunk is skipped, the broadcast goes on
    assert 28.0 <= api.last_attempt < 30.0 and api.done == []


def test_a_chunk_already_stored_is_skipped_while_the_stream_is_open(chunk: Path) -> None:
    api = FakeApi(chunk_status=409)
    with pytest.raises(UploadFailed, match="already stored") as failed:
        uploader(api).upload(7, chunk, REPORT, deadline=30.0)
    assert not failed.value.fatal and failed.value.http_status == 409


def test_a_409_from_an_ended_stream_stops_the_broadcast(chunk: Path) -> None:
    api = FakeApi(chunk_status=409, resume_status=409)
    with pytest.raises(UploadFailed, match="resume: 409: the stream is ended") as failed:
        uploader(api).upload(7, chunk, REPORT, deadline=30.0)
    assert failed.value.fatal


@pytest.mark.parametrize("status", [401, 403, 404])
def test_other_refusals_of_the_stream_stay_fatal(chunk: Path, status: int) -> None:
    api = FakeApi(chunk_status=status)
    with pytest.raises(UploadFailed) as failed:
        uploader(api).upload(7, chunk, REPORT, deadline=30.0)
    assert failed.value.fatal and failed.value.http_status == status


def test_resume_says_where_the_stream_goes_on() -> None:
    api = FakeApi(down_until=3.0)
    assert uploader(api).resume(deadline=30.0) == ResumePoint(7, 8.0)


@pytest.mark.parametrize("status", [401, 403, 404, 409])
def test_resume_refused_is_fatal(status: int) -> None:
    with pytest.raises(UploadFailed) as failed:
        uploader(FakeApi(resume_status=status)).resume(deadline=30.0)
    assert failed.value.fatal


@pytest.mark.parametrize("body", [
    {"next_seq": 0, "next_pts": 0.0, "status": "idle"},
    {"next_seq": 12, "next_pts": 13, "status": "live"},
])
def test_resume_answers(body: dict[str, Any]) -> None:
    assert parse_resume(body) == ResumePoint(body["next_seq"], float(body["next_pts"]))


@pytest.mark.parametrize("body", [
    [], {}, {"next_seq": -1, "next_pts": 0.0}, {"next_seq": 1.5, "next_pts": 0.0},
    {"next_seq": True, "next_pts": 0.0}, {"next_seq": 1, "next_pts": "1"},
    {"next_seq": 1, "next_pts": float("nan")}, {"next_seq": 1, "next_pts": -2.0},
])
def test_resume_answers_that_make_no_sense_are_refused(body: Any) -> None:
    with pytest.raises(ValueError):
        parse_resume(body)


# --- the backlog ------------------------------------------------------------------------

def _delivery(seq: int) -> Delivery:
    return Delivery(seq, Path(f"{seq:08d}.ts"), {"seq": seq}, deadline=30.0)


def test_the_backlog_hands_out_the_oldest_chunk_first_and_ends_when_closed() -> None:
    backlog = Backlog(limit=10)
    for seq in range(3):
        assert backlog.put(_delivery(seq)) is None
    backlog.close()
    assert [backlog.take() for _ in range(4)] == [_delivery(0), _delivery(1), _delivery(2),
                                                   None]


def test_a_full_backlog_pushes_out_its_oldest_waiting_chunk() -> None:
    backlog = Backlog(limit=2)
    backlog.put(_delivery(0))
    backlog.put(_delivery(1))
    assert backlog.put(_delivery(2)) == _delivery(0)
    assert len(backlog) == 2
    assert backlog.clear() == [_delivery(1), _delivery(2)] and len(backlog) == 0
