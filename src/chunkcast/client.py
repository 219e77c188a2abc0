"""A small client for the chunkcast HTTP API (used by the CLI), on the shared retrying
client of :mod:`chunkcast.http`."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from chunkcast.http import HttpClient, RequestFailed

PIECE = 1 << 20
PART_ATTEMPTS = 4

ApiError = RequestFailed  # the server refused, or could not be reached; ``message`` says why


class Client:
    def __init__(self, server: str, token: str | None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = HttpClient(server, headers=headers, timeout=timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
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
        with path.open("rb") as src, HttpClient(timeout=300.0, attempts=PART_ATTEMPTS) as http:
            for part in target["parts"]:
                src.seek((part["number"] - 1) * part_size)
                data = src.read(part_size)
                # A failed part is sent again on its own.
                response = http.request("PUT", part["url"], content=data, api=False,
                                        what=f"part {part['number']} refused by storage")
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
        with HttpClient(timeout=120.0) as http:  # a streamed body is sent once
            http.request(target["method"], target["url"], content=pieces(), headers=headers,
                         api=False, attempts=1, what="upload refused by storage")
