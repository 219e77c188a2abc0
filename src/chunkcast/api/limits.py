"""Request bodies are capped before anything reads them.

Every route but the storage PUT takes small JSON bodies, yet a framework reads (and parses) a
body whole before a route's checks run: without a cap one anonymous request could make the
server hold gigabytes. This middleware reads at most ``max_bytes`` of a body and answers 413
beyond that; the storage PUT (``/media/{key}`` on the local store, which streams to disk and
has its own per-object limits) is let through untouched.
"""

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY = 64 * 1024


def is_storage_put(scope: Scope) -> bool:
    """The one route that takes large bodies: a PUT to a pre-signed storage URL."""
    return scope.get("method") == "PUT" and str(scope.get("path", "")).startswith("/media/")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY,
                 exempt: Callable[[Scope], bool] = is_storage_put) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.exempt(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not (declared.isascii() and declared.isdigit())
                                     or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(send)
                return
            more = message.get("more_body", False)
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, send: Send) -> None:
        payload = json.dumps({"error": {
            "code": "too_large",
            "message": f"the request body is larger than the limit of {self.max_bytes} bytes",
        }}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"cache-control", b"no-store"),
            (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read so far once, then waits for the disconnect."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
