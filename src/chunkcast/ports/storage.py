"""Object storage: where sources, chunks, segments and static playlists live."""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True)
class PresignedRequest:
    """What a client needs to send bytes straight to storage."""

    url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime


class ObjectStore(Protocol):
    """Keys are built by :mod:`chunkcast.domain.keys`; content type and cache policy follow
    from the key (:mod:`chunkcast.domain.media_types`)."""

    async def put_file(self, key: str, path: Path) -> None:
        """Store a local file under ``key`` (replacing any previous object)."""

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``."""

    async def stat(self, key: str) -> ObjectInfo | None:
        """Size of the object, or None when it does not exist."""

    async def read_bytes(self, key: str) -> bytes:
        """The whole object (small objects only: playlists, init segments)."""

    async def input_url(self, key: str, expires_s: int = 3600) -> str:
        """A path or URL that ffmpeg and PyAV can open, seekable."""

    def presign_put(self, key: str, expires_s: int) -> PresignedRequest:
        """A URL the client can PUT the object to directly."""

    def presign_get(self, key: str, expires_s: int) -> str:
        """A URL anyone holding it can GET the object from until it expires."""

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; returns how many."""

    async def ensure_ready(self) -> None:
        """Create what the store needs (a bucket) if it is missing; called at start-up."""

    async def ping(self) -> None:
        """Return when the store can be used now (its folder written and read, its bucket
        answering); raise otherwise. Creates nothing: what readiness checks call."""

    @property
    def multipart(self) -> "MultipartStore | None":
        """The store's uploads in parts, when it takes them (S3); else None."""

    async def close(self) -> None:
        """Release connections."""


# The rules of uploads in parts (S3's, which every multipart store follows): at most
# MAX_PARTS parts, each but the last MIN_PART_SIZE to MAX_PART_SIZE bytes.
MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
MAX_PARTS = 10_000


@dataclass(frozen=True)
class UploadPart:
    """One part of a multipart upload: PUT bytes ``[(number-1)*part_size, number*part_size)``
    of the file to ``url``; the response's ETag header is needed to complete the upload."""

    number: int
    url: str


@dataclass(frozen=True)
class MultipartUpload:
    """A started multipart upload: a client PUTs each part to its URL (retrying a failed
    part on its own, so a large upload resumes instead of starting over), then completes."""

    upload_id: str
    part_size: int
    parts: list[UploadPart]
    expires_at: datetime


class MultipartStore(Protocol):
    """What a store that accepts large uploads in parts adds to :class:`ObjectStore`."""

    @property
    def multipart_threshold(self) -> int:
        """Uploads larger than this many bytes should go in parts."""

    async def start_multipart(
        self, key: str, size: int, part_size: int, expires_s: int
    ) -> MultipartUpload:
        """Start uploading ``size`` bytes to ``key`` in parts of ``part_size`` (the last
        may be shorter); every part gets a pre-signed PUT URL valid for ``expires_s``."""

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        """Join the uploaded parts, given as ``(number, etag)``, into the object ``key``."""

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop an unfinished upload and the parts stored so far (idempotent)."""
