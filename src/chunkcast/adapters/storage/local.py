"""Object store on a local folder; the API serves its pre-signed URLs (``/media/{key}``)."""

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import anyio

from chunkcast.config import Settings
from chunkcast.domain import keys
from chunkcast.domain.errors import Unavailable
from chunkcast.domain.signing import signature
from chunkcast.ports.storage import ObjectInfo, PresignedRequest


class LocalObjectStore:
    """Objects are files below ``root``; writes go to a temp file and are renamed into place,
    so a reader never sees half an object."""

    multipart: None = None  # whole PUTs only: no uploads in parts

    def __init__(self, root: Path, secret: bytes, base_url: str) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(exist_ok=True)
        self._secret = secret
        self._base_url = base_url.rstrip("/")

    def path(self, key: str) -> Path:
        """The file for ``key``; the key is validated so it can never leave ``root``."""
        path = (self.root / keys.check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError("key escapes the storage root")
        return path

    def temp_file(self) -> tuple[int, Path]:
        """An open temp file on the same file system (for atomic rename)."""
        fd, name = tempfile.mkstemp(dir=self._tmp)
        return fd, Path(name)

    def commit(self, temp: Path, key: str) -> None:
        """Move a finished temp file into place under ``key``."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)

    async def put_file(self, key: str, path: Path) -> None:
        await anyio.to_thread.run_sync(self._copy_in, key, path)

    def _copy_in(self, key: str, path: Path) -> None:
        fd, temp = self.temp_file()
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            self.commit(temp, key)
        finally:
            temp.unlink(missing_ok=True)

    async def put_bytes(self, key: str, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._write, key, data)

    def _write(self, key: str, data: bytes) -> None:
        fd, temp = self.temp_file()
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            self.commit(temp, key)
        finally:
            temp.unlink(missing_ok=True)

    async def stat(self, key: str) -> ObjectInfo | None:
        path = self.path(key)
        if not path.is_file():
            return None
        return ObjectInfo(key, path.stat().st_size)

    async def read_bytes(self, key: str) -> bytes:
        return await anyio.Path(self.path(key)).read_bytes()

    async def input_url(self, key: str, expires_s: int = 3600) -> str:
        return str(self.path(key))

    def presign_put(self, key: str, expires_s: int) -> PresignedRequest:
        url, expires = self._signed("PUT", key, expires_s)
        return PresignedRequest(
            url=url,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    def presign_get(self, key: str, expires_s: int) -> str:
        return self._signed("GET", key, expires_s)[0]

    def _signed(self, method: str, key: str, expires_s: int) -> tuple[str, int]:
        keys.check_key(key)
        expires = int(time.time()) + expires_s
        query = urlencode({"expires": expires, "signature": signature(
            self._secret, method, key, expires)})
        return f"{self._base_url}/media/{key}?{query}", expires

    async def delete_prefix(self, prefix: str) -> int:
        return await anyio.to_thread.run_sync(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> int:
        folder = self.path(prefix.rstrip("/")).parent  # validates the prefix
        if not folder.is_dir() or folder == self.root:
            return 0
        count = 0
        for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix):
                path.unlink()
                count += 1
            elif path.is_dir() and (key + "/").startswith(prefix) and not any(path.iterdir()):
                path.rmdir()
        return count

    async def ensure_ready(self) -> None:
        return None  # the folders are made in the constructor

    async def ping(self) -> None:
        await anyio.to_thread.run_sync(self._ping)

    def _ping(self) -> None:
        """A small file written, read back and removed where objects are written."""
        try:
            fd, temp = self.temp_file()
        except OSError as exc:  # the folder is gone (a disk unmounted) or not ours
            raise Unavailable("the storage folder cannot be written",
                              dependency="storage") from exc
        try:
            with os.fdopen(fd, "w+b") as probe:
                probe.write(b"ping")
                probe.flush()
                probe.seek(0)
                if probe.read() != b"ping":
                    raise Unavailable("the storage folder gave back other bytes",
                                      dependency="storage")
        finally:
            temp.unlink(missing_ok=True)

    async def close(self) -> None:
        return None


def open_store(url: str, settings: Settings) -> LocalObjectStore:
    """``file:///abs/path`` -> a store in that folder, served by the API at ``public_url``."""
    return LocalObjectStore(
        Path(urlsplit(url).path), settings.secret_key.encode(), settings.public_url
    )
