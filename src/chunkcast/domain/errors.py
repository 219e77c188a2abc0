"""Errors the domain and services raise; the API maps each to one HTTP status."""


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
