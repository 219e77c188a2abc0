"""``/media/{key}``: the origin for objects of the local store, and the target of its
pre-signed URLs. PUT streams to a temp file (never the whole body in memory) and renames it
into place; GET serves Range requests with content type and cache policy from the key."""

import os
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.domain import keys
from chunkcast.domain.errors import Forbidden, NotFound, TooLarge
from chunkcast.domain.media_types import cache_control_for, content_type_for
from chunkcast.domain.signing import verify
from chunkcast.ports.storage import ObjectStore

REDIRECT_URL_SECONDS = 600
ExpiresQ = Annotated[int | None, Query()]
SignatureQ = Annotated[str | None, Query()]


def media_router(store: LocalObjectStore, secret: bytes, max_bytes: int) -> APIRouter:
    router = APIRouter(tags=["media"])

    def check(method: str, key: str, expires: int | None, signature: str | None) -> None:
        if expires is None or signature is None or not verify(secret, method, key, expires,
                                                              signature):
            raise Forbidden("the signature of this URL is missing, wrong or expired")

    @router.put("/media/{key:path}")
    async def put_object(key: str, request: Request, expires: ExpiresQ = None,
                         signature: SignatureQ = None) -> Response:
        keys.check_key(key)
        check("PUT", key, expires, signature)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise TooLarge(f"the upload is larger than the limit of {max_bytes} bytes")
        fd, temp = store.temp_file()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for piece in request.stream():
                    size += len(piece)
                    if size > max_bytes:
                        raise TooLarge(f"the upload is larger than the limit of {max_bytes} bytes")
                    out.write(piece)
            store.commit(temp, key)
        finally:
            temp.unlink(missing_ok=True)
        return Response(status_code=200, headers={"Content-Length": "0"})

    @router.api_route("/media/{key:path}", methods=["GET", "HEAD"])
    async def get_object(key: str, expires: ExpiresQ = None,
                         signature: SignatureQ = None) -> Response:
        keys.check_key(key)
        # Published media is public (the CDN caches it); sources and chunks need a signature.
        if not key.startswith("media/") or signature is not None:
            check("GET", key, expires, signature)
        path = store.path(key)
        if not path.is_file():
            raise NotFound("no such object")
        return FileResponse(path, media_type=content_type_for(key),
                            headers={"Cache-Control": cache_control_for(key)})

    return router


def redirect_router(store: ObjectStore) -> APIRouter:
    """``/media/{key}`` for stores that serve their own objects (S3): published media is
    redirected to a short-lived pre-signed GET. Deployments put a CDN in front of the bucket
    instead (``chunkcast deploy nginx``); this keeps playback working without one."""
    router = APIRouter(tags=["media"])

    @router.api_route("/media/{key:path}", methods=["GET", "HEAD"])
    async def get_object(key: str) -> Response:
        keys.check_key(key)
        if not key.startswith("media/"):
            raise Forbidden("only published media is served here")
        return RedirectResponse(store.presign_get(key, REDIRECT_URL_SECONDS), status_code=307,
                                headers={"Cache-Control": "public, max-age=60"})

    return router
