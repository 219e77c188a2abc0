"""Delivering chunks through the API: pre-signed PUT, complete, retries with backoff (the
shared client of :mod:`chunkcast.http`)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from chunkcast.broadcaster.timing import ClosedChunk
from chunkcast.domain.clock import iso_from_epoch
from chunkcast.http import HttpClient, RequestFailed


def chunk_report(seq: int, chunk: ClosedChunk, captured_at: float, offset: float) -> dict[str, Any]:
    """The JSON body of both chunk calls. ``pts_start`` is the chunk's first timestamp as
    written in the file (the list's time plus the file's timeline ``offset``)."""
    return {"seq": seq, "duration": round(chunk.duration, 6),
            "captured_at": iso_from_epoch(captured_at), "pts_start": round(chunk.start + offset, 6)}


# A chunk that could not be delivered; ``fatal`` when the broadcast cannot go on.
UploadFailed = RequestFailed


class ChunkUploader:
    """Delivers chunks through the API (thread-safe: one pooled client shared by the
    upload threads). Setting ``aborted`` cuts retries short when the broadcast is out of
    time; ``on_retry`` is told of every failed attempt that will be retried."""

    def __init__(self, server: str, stream_id: str, key: str, *, timeout: float = 10.0,
                 on_retry: Callable[[], None] = lambda: None) -> None:
        self._http = HttpClient(server, timeout=timeout, on_retry=on_retry)
        self._key = {"X-Stream-Key": key}  # for the API only: never sent to storage
        self._base = f"/api/v1/streams/{stream_id}"
        self.aborted = self._http.aborted

    def close(self) -> None:
        self._http.close()

    def _request(self, what: str, method: str, url: str, *, api: bool = True,
                 **kwargs: Any) -> httpx.Response:
        return self._http.request(method, url, what=what, api=api, **kwargs)

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


