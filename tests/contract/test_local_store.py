"""LOCAL BACKEND ONLY: what the folder-backed ObjectStore adds to the contract.

Keys reach the local store from URLs (``/media/{key}``), so it must refuse any key that
could name a file outside its root; and it writes through a temp file so that a reader (the
media route, ffmpeg) never sees half an object.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.domain import keys
from chunkcast.domain.errors import InvalidInput
from chunkcast.domain.ids import check_video_id, new_video_id

# Fixed (not random) so that test ids are stable between runs.
VIDEO_ID = check_video_id("abcdefghijklmnop")

ESCAPING_KEYS = [
    "media/../../etc/passwd",
    "../x",
    "..",
    "/etc/passwd",
    "",
    f"media/{VIDEO_ID}/../../../outside",
    f"media/{VIDEO_ID}/..",
    f"media/{VIDEO_ID}/./../../outside",
    f"media/{VIDEO_ID}//x",
    f"media/{VIDEO_ID}/720p/../../../../outside",
    f"media\\{VIDEO_ID}\\..\\..\\outside",
    f"media/{VIDEO_ID}/%2e%2e/%2e%2e/outside",
]


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalObjectStore]:
    store = LocalObjectStore(tmp_path / "root" / "objects", b"secret", "http://127.0.0.1:8000")
    yield store
    await store.close()


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def temp_files(store: LocalObjectStore) -> list[Path]:
    return list((store.root / ".tmp").iterdir())


@pytest.mark.parametrize("key", ESCAPING_KEYS)
async def test_escaping_keys_are_refused(
    local: LocalObjectStore, tmp_path: Path, key: str
) -> None:
    sentinel = tmp_path / "outside"
    sentinel.write_bytes(b"keep me")
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    before = files_under(tmp_path)

    with pytest.raises((InvalidInput, ValueError)):
        local.path(key)
    with pytest.raises((InvalidInput, ValueError)):
        await local.put_bytes(key, b"payload")
    with pytest.raises((InvalidInput, ValueError)):
        await local.put_file(key, source)
    with pytest.raises((InvalidInput, ValueError)):
        await local.stat(key)
    with pytest.raises((InvalidInput, ValueError)):
        await local.read_bytes(key)
    with pytest.raises((InvalidInput, ValueError)):
        await local.input_url(key)
    with pytest.raises((InvalidInput, ValueError)):
        local.presign_put(key, 60)
    with pytest.raises((InvalidInput, ValueError)):
        local.presign_get(key, 60)
    with pytest.raises((InvalidInput, ValueError)):
        await local.delete_prefix(key)

    assert sentinel.read_bytes() == b"keep me"
    assert files_under(tmp_path) == before  # nothing written anywhere, no temp file left


async def test_symlink_out_of_the_root_is_not_followed(
    local: LocalObjectStore, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    video_id = new_video_id()
    (local.root / "media").mkdir()
    (local.root / "media" / video_id).symlink_to(outside, target_is_directory=True)
    key = keys.init_segment(video_id, "720p")

    with pytest.raises(ValueError):
        await local.put_bytes(key, b"init")
    with pytest.raises(ValueError):
        await local.stat(key)

    assert files_under(outside) == set()
    assert temp_files(local) == []


async def test_keys_resolve_inside_the_root(local: LocalObjectStore) -> None:
    video_id = new_video_id()
    key = keys.segment(video_id, "720p", 3)
    await local.put_bytes(key, b"segment")

    path = Path(await local.input_url(key))

    assert path.is_file()
    assert path.is_relative_to(local.root)
    assert path == local.root / "media" / video_id / "720p" / "00000003.m4s"


async def test_no_temp_file_left_after_success(local: LocalObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(8 * 1024 * 1024))

    await local.put_file(keys.source(new_video_id()), source)
    await local.put_bytes(keys.master_playlist(new_video_id()), b"#EXTM3U\n")

    assert temp_files(local) == []


async def test_failed_put_file_leaves_nothing(local: LocalObjectStore, tmp_path: Path) -> None:
    video_id = new_video_id()
    key = keys.source(video_id)

    with pytest.raises(FileNotFoundError):
        await local.put_file(key, tmp_path / "missing.mp4")
    with pytest.raises(IsADirectoryError):
        await local.put_file(key, tmp_path)

    assert temp_files(local) == []
    assert await local.stat(key) is None
    assert not local.path(key).exists()


async def test_failed_overwrite_keeps_the_old_object(
    local: LocalObjectStore, tmp_path: Path
) -> None:
    key = keys.source(new_video_id())
    await local.put_bytes(key, b"the first upload")

    with pytest.raises(FileNotFoundError):
        await local.put_file(key, tmp_path / "missing.mp4")

    assert await local.read_bytes(key) == b"the first upload"
    assert temp_files(local) == []


async def test_readers_never_see_a_partial_object(
    local: LocalObjectStore, tmp_path: Path
) -> None:
    key = keys.source(new_video_id())
    old = b"o" * 1000
    new = os.urandom(24 * 1024 * 1024)
    source = tmp_path / "big.bin"
    source.write_bytes(new)
    await local.put_bytes(key, old)
    target = local.path(key)
    seen: set[int] = set()

    copy = asyncio.create_task(local.put_file(key, source))
    while not copy.done():
        seen.add(target.stat().st_size)
        await asyncio.sleep(0)
    await copy
    seen.add(target.stat().st_size)

    assert seen <= {len(old), len(new)}
    assert len(new) in seen
    assert target.read_bytes() == new
    assert temp_files(local) == []
