"""Every error leaves as JSON ``{"error": {"code", "message"}}`` with the right status.

A dependency that cannot be reached (the catalogue, storage, the bus) is a 503 with
``Retry-After``, never a 500: :class:`~chunkcast.domain.errors.Unavailable`, and the raw
errors of the drivers that say so (a lost connection, no answer in time), recognised by
:func:`~chunkcast.services.outages.failed_dependency`."""

import importlib
import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from chunkcast.domain.errors import ChunkcastError, NotYet, Unavailable
from chunkcast.domain.media_types import PLAYLIST_LIVE
from chunkcast.services.outages import failed_dependency, outage_message

log = logging.getLogger(__name__)

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 410: "expired", 413: "too_large",
          422: "invalid_input"}
RETRY_AFTER_S = 1
# Base classes of the errors drivers raise, handled here rather than by the catch-all (which
# the server logs a second time). Looked up only if the driver is installed.
_DRIVER_ERRORS = (("sqlalchemy.exc", "SQLAlchemyError"), ("asyncpg", "PostgresError"),
                  ("asyncpg", "InterfaceError"), ("botocore.exceptions", "BotoCoreError"),
                  ("botocore.exceptions", "ClientError"), ("redis.exceptions", "RedisError"))


def _driver_errors() -> list[type[Exception]]:
    # ConnectionError, TimeoutError, socket errors: no driver needed.
    found: list[type[Exception]] = [OSError]
    for module, name in _DRIVER_ERRORS:
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(cls, type) and issubclass(cls, Exception):
            found.append(cls)
    return found


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    # Never cached: a shared cache (the CDN edge) must not keep a refusal or a miss.
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers={**(headers or {}), "Cache-Control": "no-store"})


def unavailable_response(dependency: str) -> JSONResponse:
    """503: ``dependency`` cannot be reached just now; the same request may work in a
    moment (clients that retry 5xx wait ``Retry-After`` seconds)."""
    return error_response(503, Unavailable.code, outage_message(dependency),
                          {"Retry-After": str(RETRY_AFTER_S)})


def _internal(exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal", "internal error")


def install(app: FastAPI) -> None:
    @app.exception_handler(ChunkcastError)
    async def _domain(_: Request, exc: ChunkcastError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message)
        if isinstance(exc, NotYet):
            # Every viewer held for the same part gets the same answer: a shared cache (the
            # edge) may hand this one to all of them, for a second.
            response.headers["Retry-After"] = "1"
            response.headers["Cache-Control"] = PLAYLIST_LIVE
        return response

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        log.warning("%s %s: %s unavailable: %s", request.method, request.url.path,
                    exc.dependency or "a dependency", exc.message)
        return unavailable_response(exc.dependency)

    async def _driver(request: Request, exc: Exception) -> JSONResponse:
        dependency = failed_dependency(exc)
        if dependency is None:
            return _internal(exc)
        log.warning("%s %s: %s unavailable", request.method, request.url.path,
                    dependency or "a dependency", exc_info=exc)
        return unavailable_response(dependency)

    for cls in _driver_errors():
        app.add_exception_handler(cls, _driver)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        # The framework's headers stay: a 405 must list the allowed methods (Allow).
        return error_response(exc.status_code, _CODES.get(exc.status_code, "error"),
                              str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return error_response(422, "invalid_input", message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # What no handler above takes: an outage wrapped in an error of another kind is
        # still a 503.
        return await _driver(request, exc)
