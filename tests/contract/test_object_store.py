"""ObjectStore contract: what every storage backend must do, through the port only."""

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from chunkcast.domain import keys
from chunkcast.domain.ids import new_video_id
from chunkcast.ports.storage import ObjectInfo, ObjectStore

KEY_KINDS: dict[str, Callable[[str], str]] = {
    "source": keys.source,
    "chunk": lambda vid: keys.chunk(vid, 7),
    "init": lambda vid: keys.init_segment(vid, "720p"),
    "segment": lambda vid: keys.segment(vid, "720p", 3),
    "master": keys.master_playlist,
    "media-playlist": lambda vid: keys.media_playlist(vid, "240p"),
}


def video_objects(video_id: str) -> dict[str, bytes]:
    """Every kind of object one video owns, with distinct contents."""
    objects = {
        keys.source(video_id): b"source " + video_id.encode(),
        keys.chunk(video_id, 0): b"chunk 0",
        keys.chunk(video_id, 1): b"chunk 1",
        keys.master_playlist(video_id): b"#EXTM3U\n",
    }
    for rendition in ("240p", "720p"):
        objects[keys.init_segment(video_id, rendition)] = b"init " + rendition.encode()
        objects[keys.media_playlist(video_id, rendition)] = b"#EXTM3U\n#EXT-X-ENDLIST\n"
        for seq in range(3):
            objects[keys.segment(video_id, rendition, seq)] = f"{rendition} {seq}".encode()
    return objects


async def open_url(url: str) -> bytes:
    """The bytes behind an ``input_url``: a URL is fetched, anything else is a local path."""
    if url.startswith(("http://", "https://")):
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
            response.raise_for_status()
            return response.content
    with open(url, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("kind", list(KEY_KINDS))
async def test_put_bytes_then_stat_and_read(store: ObjectStore, kind: str) -> None:
    key = KEY_KINDS[kind](new_video_id())
    data = os.urandom(1234)

    await store.put_bytes(key, data)

    assert await store.stat(key) == ObjectInfo(key, len(data))
    assert await store.read_bytes(key) == data


async def test_put_file_then_stat_and_read(store: ObjectStore, tmp_path: Path) -> None:
    key = keys.source(new_video_id())
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy buffer
    source = tmp_path / "upload.mp4"
    source.write_bytes(data)

    await store.put_file(key, source)

    assert await store.stat(key) == ObjectInfo(key, len(data))
    assert await store.read_bytes(key) == data
    assert source.read_bytes() == data  # the local file is copied, not moved


async def test_empty_object(store: ObjectStore) -> None:
    key = keys.master_playlist(new_video_id())

    await store.put_bytes(key, b"")

    assert await store.stat(key) == ObjectInfo(key, 0)
    assert await store.read_bytes(key) == b""


async def test_overwrite_replaces(store: ObjectStore, tmp_path: Path) -> None:
    key = keys.media_playlist(new_video_id(), "720p")
    await store.put_bytes(key, b"a much longer first version of the playlist")

    await store.put_bytes(key, b"short")
    assert await store.stat(key) == ObjectInfo(key, 5)
    assert await store.read_bytes(key) == b"short"

    replacement = tmp_path / "replacement"
    replacement.write_bytes(b"from a file")
    await store.put_file(key, replacement)
    assert await store.stat(key) == ObjectInfo(key, 11)
    assert await store.read_bytes(key) == b"from a file"


async def test_concurrent_writers_leave_one_whole_version(store: ObjectStore) -> None:
    key = keys.segment(new_video_id(), "480p", 0)
    versions = [bytes([n]) * (64 * 1024 + n) for n in range(8)]

    await asyncio.gather(*(store.put_bytes(key, data) for data in versions))

    assert await store.read_bytes(key) in versions


async def test_stat_of_missing_key_is_none(store: ObjectStore) -> None:
    video_id = new_video_id()
    assert await store.stat(keys.source(video_id)) is None

    await store.put_bytes(keys.segment(video_id, "720p", 0), b"x")
    assert await store.stat(keys.segment(video_id, "720p", 1)) is None
    assert await store.stat(keys.init_segment(video_id, "720p")) is None
    assert await store.stat(keys.segment(video_id, "360p", 0)) is None


async def test_keys_are_independent(store: ObjectStore) -> None:
    video_id = new_video_id()
    objects = video_objects(video_id)
    for key, data in objects.items():
        await store.put_bytes(key, data)

    for key, data in objects.items():
        assert await store.read_bytes(key) == data


async def test_delete_prefix_removes_one_video_only(store: ObjectStore) -> None:
    doomed, kept = new_video_id(), new_video_id()
    doomed_objects, kept_objects = video_objects(doomed), video_objects(kept)
    for key, data in {**doomed_objects, **kept_objects}.items():
        await store.put_bytes(key, data)

    deleted = [await store.delete_prefix(p) for p in keys.video_prefixes(doomed)]

    assert sum(deleted) == len(doomed_objects)
    assert deleted[0] == 1  # sources/{id}/: just the source
    assert deleted[1] == 2  # chunks/{id}/: two chunks
    for key in doomed_objects:
        assert await store.stat(key) is None
    for key, data in kept_objects.items():
        assert await store.read_bytes(key) == data


async def test_delete_prefix_twice_or_of_unknown_video_is_zero(store: ObjectStore) -> None:
    video_id = new_video_id()
    await store.put_bytes(keys.segment(video_id, "720p", 0), b"x")

    assert await store.delete_prefix(keys.media_prefix(video_id)) == 1
    assert await store.delete_prefix(keys.media_prefix(video_id)) == 0
    assert await store.delete_prefix(keys.media_prefix(new_video_id())) == 0


async def test_key_can_be_written_again_after_delete(store: ObjectStore) -> None:
    video_id = new_video_id()
    key = keys.init_segment(video_id, "360p")
    await store.put_bytes(key, b"old")
    await store.delete_prefix(keys.media_prefix(video_id))

    await store.put_bytes(key, b"new")

    assert await store.read_bytes(key) == b"new"


async def test_input_url_opens_the_object(store: ObjectStore, tmp_path: Path) -> None:
    key = keys.chunk(new_video_id(), 0)
    data = os.urandom(200_000)
    source = tmp_path / "chunk.ts"
    source.write_bytes(data)
    await store.put_file(key, source)

    url = await store.input_url(key, expires_s=60)

    assert await open_url(url) == data


async def test_presign_put(store: ObjectStore) -> None:
    key = keys.source(new_video_id())
    before = datetime.now(UTC)

    request = store.presign_put(key, 600)

    assert request.method == "PUT"
    url = urlsplit(request.url)
    assert url.scheme in ("http", "https")
    assert url.netloc
    assert isinstance(request.headers, dict)
    assert request.expires_at.tzinfo is not None  # comparable with aware datetimes
    assert before < request.expires_at <= before + timedelta(seconds=600 + 2)
    assert request.expires_at > before + timedelta(seconds=600 - 60)


async def test_presign_get(store: ObjectStore) -> None:
    video_id = new_video_id()
    key = keys.segment(video_id, "720p", 3)
    await store.put_bytes(key, b"segment")

    url = store.presign_get(key, 600)
    other = store.presign_get(keys.segment(video_id, "720p", 4), 600)

    parts = urlsplit(url)
    assert parts.scheme in ("http", "https")
    assert parts.netloc
    assert url != other  # the URL names the object
