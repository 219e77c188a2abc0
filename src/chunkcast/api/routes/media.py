"""``/media/{key}``: the origin for objects of the local store, and the target of its
pre-signed URLs. PUT streams to a temp file (never the whole body in memory) and renames it
into place; GET serves Range requests with content type and cache policy from the key.

Objects of private videos are served under ``/private/{key}?e=…&st=…`` only (a signed
playback link, see :class:`chunkcast.services.playback.Signer`), never under ``/media/``."""

import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, cast

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.api.deps import TokenDep
from chunkcast.api.routes.edge import is_edge
from chunkcast.domain import keys
from chunkcast.domain.errors import Forbidden, NotFound, TooLarge
from chunkcast.domain.media_types import cache_control_for, content_type_for
from chunkcast.domain.signing import edge_secret as edge_secret_of
from chunkcast.domain.signing import verify
from chunkcast.metrics import Metrics
from chunkcast.ports.storage import ObjectStore
from chunkcast.runtime import Platform
from chunkcast.services.playback import Playback

REDIRECT_URL_SECONDS = 600
ExpiresQ = Annotated[int | None, Query()]
SignatureQ = Annotated[str | None, Query()]


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def _get_and_head(router: APIRouter, path: str) -> Callable[[Endpoint], Endpoint]:
    """GET in the OpenAPI schema, and HEAD served by the same function (one operation id:
    a route taking both methods would list the same id twice)."""
    def register(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(path, endpoint, methods=["GET"])
        router.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)
        return endpoint
    return register


def media_router(store: LocalObjectStore, playback: Playback, metrics: Metrics, secret: bytes,
                 max_upload_bytes: int, max_chunk_bytes: int) -> APIRouter:
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
        # A live chunk is small; only a source may be as large as an upload.
        max_bytes = max_chunk_bytes if key.startswith("chunks/") else max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() \
                and int(declared) > max_bytes:
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

    @_get_and_head(router, "/media/{key:path}")
    async def get_object(key: str, expires: ExpiresQ = None,
                         signature: SignatureQ = None) -> Response:
        keys.check_key(key)
        # Published media of public videos is public (the CDN caches it); sources and chunks
        # need a pre-signed URL.
        if not key.startswith("media/") or signature is not None:
            check("GET", key, expires, signature)
        else:
            await playback.check_object(key, None)
            metrics.served(key)
        return _serve(key)

    @_get_and_head(router, "/private/{key:path}")
    async def get_private_object(key: str, token: TokenDep) -> Response:
        keys.check_key(key)
        await playback.check_object(key, token)
        metrics.served(key)
        return _serve(key)

    def _serve(key: str) -> Response:
        path = store.path(key)
        if not path.is_file():
            raise NotFound("no such object")
        return FileResponse(path, media_type=content_type_for(key),
                            headers={"Cache-Control": cache_control_for(key)})

    return router


def redirect_router(store: ObjectStore, playback: Playback, metrics: Metrics,
                    edge_secret: str) -> APIRouter:
    """``/media/{key}`` for stores that serve their own objects (S3). A viewer is redirected
    to a short-lived pre-signed GET; the CDN edge (it proves it is the edge with the edge
    secret in ``X-Chunkcast-Edge``) is given the object itself, which it caches: the bucket
    stays private and the API serves each object about once per edge."""
    router = APIRouter(tags=["media"])

    async def answer(key: str, request: Request) -> Response:
        metrics.served(key)
        if not is_edge(request, edge_secret):
            return RedirectResponse(store.presign_get(key, REDIRECT_URL_SECONDS),
                                    status_code=307,
                                    headers={"Cache-Control": "public, max-age=60"})
        # One request to the bucket; for HEAD the server leaves the body out.
        try:
            body = await store.read_bytes(key)
        except FileNotFoundError as exc:
            raise NotFound("no such object") from exc
        return Response(body, media_type=content_type_for(key),
                        headers={"Cache-Control": cache_control_for(key)})

    @_get_and_head(router, "/media/{key:path}")
    async def get_object(key: str, request: Request) -> Response:
        await playback.check_object(keys.check_key(key), None)
        return await answer(key, request)

    @_get_and_head(router, "/private/{key:path}")
    async def get_private_object(key: str, request: Request, token: TokenDep) -> Response:
        await playback.check_object(keys.check_key(key), token)
        return await answer(key, request)

    return router


def local_origin(platform: Platform) -> APIRouter:
    """The local store's routes: objects served and pre-signed PUTs taken here (chosen by
    the storage URL's scheme, so the store is a LocalObjectStore)."""
    s = platform.settings
    return media_router(cast(LocalObjectStore, platform.store), platform.playback,
                        platform.metrics, s.secret_key.encode(), s.max_upload_bytes,
                        s.max_chunk_bytes)


def bucket_origin(platform: Platform) -> APIRouter:
    """A bucket's routes: viewers redirected to pre-signed GETs, the edge given objects."""
    return redirect_router(platform.store, platform.playback, platform.metrics,
                           edge_secret_of(platform.settings.secret_key))
