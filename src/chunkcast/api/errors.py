"""Every error leaves as JSON ``{"error": {"code", "message"}}`` with the right status."""

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from chunkcast.domain.errors import ChunkcastError

log = logging.getLogger(__name__)

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 410: "expired", 413: "too_large",
          422: "invalid_input"}


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    # Never cached: a shared cache (the CDN edge) must not keep a refusal or a miss.
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers={**(headers or {}), "Cache-Control": "no-store"})


def install(app: FastAPI) -> None:
    @app.exception_handler(ChunkcastError)
    async def _domain(_: Request, exc: ChunkcastError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

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
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal", "internal error")
