"""Delivering chunks through the API: where the stream resumes, pre-signed PUT, complete,
each call retried while the chunk is still useful (the shared client of
:mod:`chunkcast.http`)."""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from chunkcast.broadcaster.timing import ClosedChunk
from chunkcast.domain.clock import iso_from_epoch
from chunkcast.http import HttpClient, RequestFailed

BACKOFF_CAP_S = 2.0  # an outage is noticed within this long of its end


def chunk_report(seq: int, chunk: ClosedChunk, captured_at: float, offset: float) -> dict[str, Any]:
    """The JSON body of both chunk calls. ``pts_start`` is the chunk's first timestamp as
    written in the file (the list's time plus the file's timeline ``offset``)."""
    return {"seq": seq, "duration": round(chunk.duration, 6),
            "captured_at": iso_from_epoch(captured_at), "pts_start": round(chunk.start + offset, 6)}


# A chunk that could not be delivered; ``fatal`` when the broadcast cannot go on.
UploadFailed = RequestFailed


@dataclass(frozen=True)
class ResumePoint:
    """Where a stream goes on: the seq of its next chunk and the media time that chunk
    starts at (the end of its timeline so far; 0 for a stream without chunks)."""

    next_seq: int
    next_pts: float


def parse_resume(body: Any) -> ResumePoint:
    """The resume answer ``{next_seq, next_pts, …}``, checked (ValueError otherwise)."""
    if not isinstance(body, dict):
        raise ValueError("not an object")
    seq, pts = body.get("next_seq"), body.get("next_pts")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError("next_seq is not a seq")
    if not isinstance(pts, int | float) or isinstance(pts, bool) or not math.isfinite(pts) \
            or pts < 0:
        raise ValueError("next_pts is not a media time")
    return ResumePoint(seq, float(pts))


class ChunkUploader:
    """Delivers chunks through the API (thread-safe: one pooled client shared by the
    upload threads). Setting ``aborted`` cuts retries short when the broadcast is out of
    time; ``on_retry`` is told of every failed attempt that will be retried."""

    def __init__(self, server: str, stream_id: str, key: str, *, timeout: float = 10.0,
                 on_retry: Callable[[], None] = lambda: None,
                 transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = HttpClient(server, timeout=timeout, backoff_cap=BACKOFF_CAP_S,
                                on_retry=on_retry, transport=transport, clock=clock)
        self._key = {"X-Stream-Key": key}  # for the API only: never sent to storage
        self._base = f"/api/v1/streams/{stream_id}"
        self.aborted = self._http.aborted

    def close(self) -> None:
        self._http.close()

    def _request(self, what: str, method: str, url: str, *, api: bool = True,
                 deadline: float | None = None, **kwargs: Any) -> httpx.Response:
        return self._http.request(method, url, what=what, api=api, deadline=deadline,
                                  **kwargs)

    def resume(self, *, deadline: float | None = None) -> ResumePoint:
        """Where the stream's chunks and timeline go on. Refused (fatal) when the stream
        is unknown, the key wrong, or the stream over (409)."""
        answer = self._request("resume", "GET", f"{self._base}/resume", headers=self._key,
                               deadline=deadline)
        try:
            return parse_resume(answer.json())
        except ValueError as exc:
            raise UploadFailed(f"resume: unexpected answer {answer.text[:200]!r}") from exc

    def upload(self, seq: int, path: Path, report: dict[str, Any], *,
               deadline: float | None = None) -> None:
        """Pre-signed PUT, the bytes, then "complete", each retried until ``deadline`` (on
        the uploader's clock; None: a few attempts). A 409 is fatal only when the stream
        itself is over: one about this chunk (already stored, say) loses only the chunk."""
        try:
            self._deliver(seq, path, report, deadline)
        except UploadFailed as exc:
            if not (exc.fatal and exc.http_status == 409):
                raise
            try:
                self.resume(deadline=deadline)  # raises the stream's own refusal, if any
            except UploadFailed as asked:
                if asked.fatal:
                    raise asked from exc
            raise UploadFailed(exc.message, status=409) from exc

    def _deliver(self, seq: int, path: Path, report: dict[str, Any],
                 deadline: float | None) -> None:
        asked = self._request(f"chunk {seq}: upload URL", "POST", f"{self._base}/chunks",
                              json=report, headers=self._key, deadline=deadline)
        try:
            target = asked.json()["upload"]
            url, method = target["url"], target.get("method", "PUT")
            headers = dict(target.get("headers") or {})
        except (ValueError, KeyError, TypeError) as exc:
            raise UploadFailed(f"chunk {seq}: unexpected answer {asked.text[:200]!r}") from exc
        self._request(f"chunk {seq}: storage", method, url, api=False,
                      content=path.read_bytes(), headers=headers, deadline=deadline)
        self._request(f"chunk {seq}: complete", "POST", f"{self._base}/chunks/{seq}/complete",
                      json=report, headers=self._key, deadline=deadline)

    def end(self) -> None:
        self._request("end", "POST", f"{self._base}/end", headers=self._key)
