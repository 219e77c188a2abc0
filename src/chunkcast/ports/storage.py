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

    async def close(self) -> None:
        """Release connections."""
