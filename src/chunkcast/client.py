"""A small client for the chunkcast HTTP API (used by the CLI)."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from chunkcast.domain.errors import ChunkcastError

PIECE = 1 << 20


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

    def create_video(self, title: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/api/v1/videos", json={"title": title})
        return result

    def complete(self, video_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/v1/videos/{video_id}/complete")
        return result

    def create_stream(self, title: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/api/v1/streams", json={"title": title})
        return result

    def video(self, video_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/videos/{video_id}")
        return result

    @staticmethod
    def put_file(target: dict[str, Any], path: Path,
                 on_progress: Callable[[int], None] = lambda _: None) -> None:
        """PUT ``path`` to a pre-signed ``target`` (``{url, method, headers}``), streaming it
        in pieces so memory stays flat whatever the file size."""
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
