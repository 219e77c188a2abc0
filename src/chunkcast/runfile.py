"""The run file of ``chunkcast up``: how the CLI finds the server running from a data dir, and
knows it talks to that server before it sends it the data dir's admin token.

While ``up`` serves, ``{data}/server.json`` (mode 0600) names the URL it is bound to, its pid
and a key made for this run; a clean stop removes it. The server proves it holds the key by
answering a fresh challenge on :data:`PROVE_PATH` with an HMAC of it. A stale file (``up``
was killed) naming a port that something else now listens on therefore gets that something
no token: the challenge tells it nothing, and it cannot answer it.
"""

import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from chunkcast.domain.ids import new_secret

RUN_FILE = "server.json"
PROVE_PATH = "/_chunkcast/prove"
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")  # what a challenge may be: bounded


@dataclass(frozen=True)
class RunFile:
    """One run of ``up``: where it listens, its pid, and the key it proves itself with."""

    url: str
    pid: int
    key: str

    def proof(self, challenge: str) -> str:
        """The answer to ``challenge`` only the holder of this run's key can give."""
        return hmac.new(self.key.encode(), challenge.encode(), hashlib.sha256).hexdigest()


def new_key() -> str:
    return new_secret(32)


def served_url(sockname: Any) -> str:
    """The URL a local client reaches a socket bound to ``sockname`` at (a wildcard address
    is reached on the loopback)."""
    host, port = str(sockname[0]), int(sockname[1])
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        host = "127.0.0.1" if address.version == 4 else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write(data_dir: Path, run: RunFile) -> None:
    """Publish ``run`` in ``data_dir`` (mode 0600, replaced whole: a reader never sees half)."""
    path = data_dir / RUN_FILE
    partial = path.with_name(f".{RUN_FILE}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": run.url, "pid": run.pid, "key": run.key}, out)
    partial.replace(path)


def read(data_dir: Path) -> RunFile | None:
    """The run file of ``data_dir``; None when there is none (or it is not one)."""
    try:
        data = json.loads((data_dir / RUN_FILE).read_text())
        return RunFile(url=str(data["url"]), pid=int(data["pid"]), key=str(data["key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(data_dir: Path, run: RunFile) -> None:
    """Remove ``run``'s file, unless another run has replaced it since."""
    if read(data_dir) == run:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / RUN_FILE).unlink()


class ProvesRun:
    """ASGI middleware answering ``GET PROVE_PATH?challenge=C`` with ``{"proof": …}`` for
    ``key``; every other request goes to ``app`` untouched."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self._app = app
        self._run = RunFile(url="", pid=0, key=key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PROVE_PATH:
            await self._app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        challenge = (query.get("challenge") or [""])[0]
        body: dict[str, Any]
        if scope["method"] != "GET" or not _CHALLENGE.fullmatch(challenge):
            status, body = 400, {"error": {"message": "expected GET with a challenge"}}
        else:
            status, body = 200, {"proof": self._run.proof(challenge)}
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"cache-control", b"no-store"),
            (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
