"""Delivering chunks through the API: pre-signed PUT, complete, retries with backoff.
"""

import contextlib
import enum
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from chunkcast.broadcaster.timing import ClosedChunk, format_utc
from chunkcast.domain.errors import ChunkcastError

ATTEMPTS = 5



class Verdict(enum.Enum):
    """What to do after one HTTP attempt."""

    DONE = "done"
    RETRY = "retry"  # network error, 5xx, 429: try again after a backoff
    SKIP = "skip"  # this chunk was refused: report it and go on with the next
    FATAL = "fatal"  # the stream refuses us (bad key, no such stream, ended): stop


def verdict(status: int | None, *, api: bool = True) -> Verdict:
    """Classify an HTTP status (None: no answer at all). Refusals from the API about the
    stream itself are fatal; storage refusals and other 4xx only lose the chunk."""
    if status is None or status == 429 or status >= 500:
        return Verdict.RETRY
    if status < 400:
        return Verdict.DONE
    if api and status in (401, 403, 404, 409):
        return Verdict.FATAL
    return Verdict.SKIP


def backoff_s(attempt: int, *, retry_after: float | None = None, base: float = 0.25,
              cap: float = 4.0) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0): doubling
    from ``base``, at most ``cap``; a server's ``Retry-After`` wins when longer."""
    delay = min(cap, base * 2.0**attempt)
    if retry_after is not None:
        delay = max(delay, min(cap, retry_after))
    return delay


def chunk_report(seq: int, chunk: ClosedChunk, captured_at: float, offset: float) -> dict[str, Any]:
    """The JSON body of both chunk calls. ``pts_start`` is the chunk's first timestamp as
    written in the file (the list's time plus the file's timeline ``offset``)."""
    return {"seq": seq, "duration": round(chunk.duration, 6),
            "captured_at": format_utc(captured_at), "pts_start": round(chunk.start + offset, 6)}


def error_message(response: httpx.Response) -> str:
    """The server's ``{"error": {"message"}}``, else the body or the reason."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    return f"{response.status_code}: {message}"


class UploadFailed(ChunkcastError):
    """A chunk could not be delivered; ``fatal`` when the broadcast cannot go on."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class ChunkUploader:
    """Delivers chunks through the API (thread-safe: one pooled client shared by the
    upload threads). Setting ``aborted`` cuts retries short when the broadcast is out of
    time; ``on_retry`` is told of every failed attempt that will be retried."""

    def __init__(self, server: str, stream_id: str, key: str, *, timeout: float = 10.0,
                 on_retry: Callable[[], None] = lambda: None) -> None:
        self._http = httpx.Client(base_url=server.rstrip("/"), timeout=timeout)
        self._key = {"X-Stream-Key": key}  # for the API only: never sent to storage
        self._base = f"/api/v1/streams/{stream_id}"
        self.aborted = threading.Event()
        self._on_retry = on_retry

    def close(self) -> None:
        self._http.close()

    def _request(self, what: str, method: str, url: str, *, api: bool = True,
                 **kwargs: Any) -> httpx.Response:
        """One call with retries on network errors, 5xx and 429."""
        problem = ""
        for attempt in range(ATTEMPTS):
            retry_after = None
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                status, problem = None, f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if response.is_error:
                    problem = error_message(response)
                    with contextlib.suppress(ValueError):
                        retry_after = float(response.headers.get("Retry-After", ""))
            decision = verdict(status, api=api)
            if decision is Verdict.DONE:
                return response
            if decision is not Verdict.RETRY:
                raise UploadFailed(f"{what}: {problem}", fatal=decision is Verdict.FATAL)
            if attempt + 1 == ATTEMPTS or self.aborted.is_set():
                break
            self._on_retry()
            if self.aborted.wait(backoff_s(attempt, retry_after=retry_after)):
                break
        raise UploadFailed(f"{what}: {problem} (gave up)")

    def upload(self, seq: int, path: Path, report: dict[str, Any]) -> None:
        """Pre-signed PUT, the bytes, then "complete"."""
        asked = self._request(f"chunk {seq}: upload URL", "POST", f"{self._base}/chunks",
                              json=report, headers=self._key)
        try:
            target = asked.json()["upload"]
            url, method = target["url"], target.get("method", "PUT")
            headers = dict(target.get("headers") or {})
        except (ValueError, KeyError, TypeError) as exc:
            raise UploadFailed(f"chunk {seq}: unexpected answer {asked.text[:200]!r}") from exc
        self._request(f"chunk {seq}: storage", method, url, api=False,
                      content=path.read_bytes(), headers=headers)
        self._request(f"chunk {seq}: complete", "POST", f"{self._base}/chunks/{seq}/complete",
                      json=report, headers=self._key)

    def end(self) -> None:
        self._request("end", "POST", f"{self._base}/end", headers=self._key)


