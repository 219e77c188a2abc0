"""Errors the domain and services raise; the API maps each to one HTTP status."""

import re

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_PATH = re.compile(r"(?<![\w.])/(?:[\w.@%+=:,~-]+/)*[\w.@%+=:,~-]+")


def public_text(text: str) -> str:
    """``text`` without URLs or absolute paths: what a public error may say. Reasons are
    written without them; this is the last guard for texts that quote a tool."""
    return _PATH.sub("[path]", _URL.sub("[url]", text))


class ChunkcastError(Exception):
    """Base class: carries a stable machine-readable code and a message for people."""

    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ChunkcastError):
    code = "not_found"
    status = 404


class BadRequest(ChunkcastError):
    """A request the server will not serve as asked (e.g. a playlist part too far ahead)."""

    code = "bad_request"
    status = 400


class NotYet(ChunkcastError):
    """What was asked for does not exist yet and did not appear within the time the server
    waits (a blocking playlist request): the same request may work in a moment."""

    code = "not_yet"
    status = 503


class InvalidInput(ChunkcastError):
    code = "invalid_input"
    status = 422


class Conflict(ChunkcastError):
    code = "conflict"
    status = 409


class Unauthorized(ChunkcastError):
    code = "unauthorized"
    status = 401


class Forbidden(ChunkcastError):
    code = "forbidden"
    status = 403


class TooLarge(ChunkcastError):
    code = "too_large"
    status = 413


class MediaError(ChunkcastError):
    """The media itself is unusable (not video, truncated, undecodable)."""

    code = "media_error"
    status = 422


class Expired(ChunkcastError):
    """A signed URL whose expiry has passed."""

    code = "expired"
    status = 410


class Unavailable(ChunkcastError):
    """A dependency (the catalogue, storage, the bus) cannot be reached just now: nothing is
    wrong with the request or the media, and the same call later may succeed. Workers retry
    it without failing the video; the API answers 503 with ``Retry-After``."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str, *, dependency: str = "") -> None:
        super().__init__(message)
        self.dependency = dependency
