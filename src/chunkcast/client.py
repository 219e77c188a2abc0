"""A small client for the chunkcast HTTP API (used by the CLI), on the shared retrying
client of :mod:`chunkcast.http`, and how the CLI finds its server (:func:`find_server`)."""

import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chunkcast import runfile
from chunkcast.domain.errors import ChunkcastError
from chunkcast.domain.ids import new_secret
from chunkcast.http import HttpClient, RequestFailed

PIECE = 1 << 20
PART_ATTEMPTS = 4
# The first request, the run's challenge, is answered by a middleware before any handler
# (milliseconds, even on a busy server): a server that has not answered it within two
# seconds, twice, is not there, and the user is told so within seconds rather than ten.
PROVE_TIMEOUT_S, PROVE_ATTEMPTS = 2.0, 2

ApiError = RequestFailed  # the server refused; ``message`` says why


class NoServer(ChunkcastError):
    """No server to talk to: none runs from the data dir, or none answers at the URL."""


class NotTheServer(ChunkcastError):
    """What answers at the data dir's URL is not the server that wrote its run file."""


def no_answer(url: str, hint: str) -> NoServer:
    return NoServer(f"no chunkcast server answers at {url}" + (f" ({hint})" if hint else ""))


@dataclass(frozen=True)
class Target:
    """Where the CLI sends its requests and with which admin token (None: without one;
    ``why_no_token`` then says why the data dir's was not sent)."""

    url: str
    token: str | None
    hint: str  # what to check when the server stops answering
    why_no_token: str = ""


FROM_DATA_DIR = "started with `make up`?"
EXPLICIT = "set by --server or CHUNKCAST_PUBLIC_URL"


def find_server(data_dir: Path, data_token: str | None, *, server: str | None = None,
                token: str | None = None) -> Target:
    """The server and admin token a CLI command uses. Without ``server``, the one running
    from ``data_dir`` (its run file, see :mod:`chunkcast.runfile`). ``token`` (given on the
    command line or in the environment) goes wherever the user points; ``data_token``, the
    data dir's, only to the server that wrote the run file, once it has proved it is that
    server. Either way the server must answer a first request within seconds
    (:data:`PROVE_TIMEOUT_S`, :data:`PROVE_ATTEMPTS`). Raises
    :class:`NoServer` or :class:`NotTheServer`."""
    run = runfile.read(data_dir)
    if server is None:
        if run is None:
            raise NoServer(f"no chunkcast server is running from {data_dir}: start one with "
                           "`make up` (or `chunkcast up`), or name one with --server URL")
        if not proves(run.url, run, hint=FROM_DATA_DIR):
            raise NotTheServer(
                f"what answers at {run.url} is not the chunkcast server that "
                f"{data_dir / runfile.RUN_FILE} names (a stale file: the server is gone?); "
                "it was sent no token")
        return Target(run.url, token or data_token, FROM_DATA_DIR)
    if proves(server, run, hint=EXPLICIT) and not token:
        return Target(server, data_token, EXPLICIT)
    return Target(server, token, EXPLICIT, why_no_token="" if token else (
        f"no admin token was sent: the data dir's goes only to the server running from it, "
        f"and {server} is not that server; pass --token or set CHUNKCAST_ADMIN_TOKEN"))


def proves(url: str, run: runfile.RunFile | None, *, hint: str) -> bool:
    """Whether the server at ``url`` holds ``run``'s key: it answers a fresh challenge with
    the run's proof (without a run, it answers at all). Only the challenge is sent. Raises
    :class:`NoServer` if nothing answers in time."""
    challenge = new_secret(24)
    with HttpClient(url, timeout=PROVE_TIMEOUT_S, attempts=PROVE_ATTEMPTS) as http:
        try:
            response = http.request("GET", runfile.PROVE_PATH, params={"challenge": challenge})
            proof = response.json()["proof"]
        except RequestFailed as exc:
            if exc.http_status is None:
                raise no_answer(url, hint) from None
            return False
        except (ValueError, KeyError, TypeError):  # an answer, but not a proof
            return False
    return (run is not None and isinstance(proof, str)
            and hmac.compare_digest(proof, run.proof(challenge)))


class Client:
    """The API calls of the CLI; ``hint`` and ``why_no_token`` (see :class:`Target`) go
    into its error messages."""

    def __init__(self, server: str, token: str | None, timeout: float = 30.0, *,
                 hint: str = "", why_no_token: str = "") -> None:
        self._target = Target(server, token, hint, why_no_token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = HttpClient(server, headers=headers, timeout=timeout)

    @classmethod
    def to(cls, target: Target) -> "Client":
        """A client for what :func:`find_server` found (its errors say what to check)."""
        return cls(target.url, target.token, hint=target.hint,
                   why_no_token=target.why_no_token)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON. Raises :class:`NoServer` when nothing answers, else
        :data:`ApiError` for a refusal or an answer that is not the API's."""
        try:
            response = self._http.request(method, path, **kwargs)
        except RequestFailed as exc:
            if exc.http_status is None:
                raise no_answer(self._target.url, self._target.hint) from None
            if exc.http_status == 401 and self._target.why_no_token:
                raise ApiError(f"{exc.message} ({self._target.why_no_token})",
                               status=401) from None
            raise
        try:
            return response.json() if response.content else None
        except ValueError:
            raise ApiError(f"{self._target.url} answered {method} {path} with something "
                           "that is not the chunkcast API's JSON") from None

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
