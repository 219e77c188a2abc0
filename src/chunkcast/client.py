"""A small client for the chunkcast HTTP API (used by the CLI)."""

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from chunkcast.domain.errors import ChunkcastError

PIECE = 1 << 20
PART_ATTEMPTS = 4


class ApiError(ChunkcastError):
    """The server answered with an error; ``message`` is its explanation."""


class Client:
    def __init__(self, server: str, token: str | None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text or response.reason_phrase
            raise ApiError(f"{response.status_code}: {message}")
        return response.json() if response.content else None

    def create_video(self, title: str, size: int | None = None, *, private: bool = False
                     ) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/api/v1/videos", json={
            "title": title, "size": size, "private": private})
        return result

    def complete(self, video_id: str, parts: dict[str, Any] | None = None) -> dict[str, Any]:
        """``parts``: what :meth:`put_file` returned for a multipart upload."""
        result: dict[str, Any] = self._call("POST", f"/api/v1/videos/{video_id}/complete",
                                            json=parts)
        return result

    def create_stream(self, title: str, *, private: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/api/v1/streams",
                                            json={"title": title, "private": private})
        return result

    def video(self, video_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/videos/{video_id}")
        return result

    @staticmethod
    def put_file(target: dict[str, Any], path: Path,
                 on_progress: Callable[[int], None] = lambda _: None) -> dict[str, Any] | None:
        """Send ``path`` to a pre-signed ``target``: one streamed PUT, or for a multipart
        target each part to its URL (a failed part is retried on its own). Returns what
        ``complete`` needs for a multipart upload, else None."""
        if target.get("upload_id"):
            return Client._put_parts(target, path, on_progress)
        Client._put_whole(target, path, on_progress)
        return None

    @staticmethod
    def _put_parts(target: dict[str, Any], path: Path,
                   on_progress: Callable[[int], None]) -> dict[str, Any]:
        done = []
        part_size: int = target["part_size"]
        with path.open("rb") as src, httpx.Client(timeout=300.0) as http:
            for part in target["parts"]:
                src.seek((part["number"] - 1) * part_size)
                data = src.read(part_size)
                for attempt in range(PART_ATTEMPTS):
                    try:
                        response = http.put(part["url"], content=data)
                        if not response.is_error:
                            break
                        problem = f"{response.status_code}: {response.text[:200]}"
                    except httpx.TransportError as exc:
                        problem = str(exc)
                    if attempt + 1 == PART_ATTEMPTS:
                        raise ApiError(f"part {part['number']} refused by storage ({problem})")
                    time.sleep(0.5 * 2**attempt)
                done.append({"number": part["number"], "etag": response.headers["ETag"]})
                on_progress(len(data))
        return {"upload_id": target["upload_id"], "parts": done}

    @staticmethod
    def _put_whole(target: dict[str, Any], path: Path,
                   on_progress: Callable[[int], None]) -> None:
        size = path.stat().st_size

        def pieces() -> Iterator[bytes]:
            with path.open("rb") as src:
                while piece := src.read(PIECE):
                    yield piece
                    on_progress(len(piece))

        headers = {**target.get("headers", {}), "Content-Length": str(size)}
        response = httpx.request(target["method"], target["url"], content=pieces(),
                                 headers=headers, timeout=120.0)
        if response.is_error:
            raise ApiError(f"upload refused by storage ({response.status_code}): "
                           f"{response.text[:200]}")
