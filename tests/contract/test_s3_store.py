"""S3 BACKEND ONLY (on SeaweedFS, which checks signatures and expiry): what pre-signed URLs
refuse, the headers objects are served with, reading through ``input_url`` with Range,
uploads in parts, and bucket creation."""

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from chunkcast.adapters.storage.s3 import MiB, S3ObjectStore, make_client, open_store
from chunkcast.config import STORAGE_BACKENDS, load_backend, load_settings
from chunkcast.domain import keys, media_types
from chunkcast.domain.errors import InvalidInput
from chunkcast.domain.ids import new_video_id
from chunkcast.media.probe import probe
from chunkcast.media.process import ffmpeg_path
from chunkcast.ports.storage import MultipartStore, ObjectInfo, ObjectStore
from chunkcast.testing import make_clip
from tests.servers.seaweedfs import SeaweedServer, drop_bucket, new_bucket_name

KEY_KINDS: dict[str, Callable[[str], str]] = {
    "source": keys.source,
    "chunk": lambda vid: keys.chunk(vid, 0),
    "init": lambda vid: keys.init_segment(vid, "720p"),
    "segment": lambda vid: keys.segment(vid, "720p", 3),
    "master": keys.master_playlist,
    "media-playlist": lambda vid: keys.media_playlist(vid, "720p"),
}


def open_s3(server: SeaweedServer, bucket: str) -> S3ObjectStore:
    """A store with explicit keys (no AWS_* variables needed)."""
    client = make_client(server.endpoint, server.region, access_key=server.access_key,
                         secret_key=server.secret_key)
    return S3ObjectStore(client, bucket)


@pytest.fixture
async def s3(seaweedfs: SeaweedServer) -> AsyncIterator[S3ObjectStore]:
    bucket = new_bucket_name("s3")
    store = open_s3(seaweedfs, bucket)
    try:
        yield store
    finally:
        await store.close()
        drop_bucket(seaweedfs, bucket)


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def tampered(url: str) -> str:
    """The same URL with one hex digit of its signature changed."""
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = ("1" if signature[0] == "0" else "0") + signature[1:]
    return with_query(url, **{"X-Amz-Signature": flipped})


def test_the_s3_store_has_both_ports(s3: S3ObjectStore) -> None:
    ports: tuple[ObjectStore, MultipartStore] = (s3, s3)  # checked by mypy
    assert ports


async def test_tampered_presigned_put_is_refused(s3: S3ObjectStore) -> None:
    video_id = new_video_id()
    key, other = keys.source(video_id), keys.source(new_video_id())
    upload = s3.presign_put(key, 600)
    moved = upload.url.replace(f"/{key}?", f"/{other}?")
    assert moved != upload.url

    async with httpx.AsyncClient() as client:
        forged = await client.put(tampered(upload.url), content=b"evil", headers=upload.headers)
        elsewhere = await client.put(moved, content=b"evil", headers=upload.headers)
        wrong_type = await client.put(upload.url, content=b"evil",
                                      headers={**upload.headers, "Content-Type": "text/html"})

    assert (forged.status_code, elsewhere.status_code, wrong_type.status_code) == (403,) * 3
    assert await s3.stat(key) is None
    assert await s3.stat(other) is None


async def test_presigned_put_with_its_headers_stores_the_object(s3: S3ObjectStore) -> None:
    key = keys.chunk(new_video_id(), 4)
    upload = s3.presign_put(key, 600)

    async with httpx.AsyncClient() as client:
        response = await client.put(upload.url, content=b"chunk bytes", headers=upload.headers)

    assert response.status_code == 200
    assert await s3.stat(key) == ObjectInfo(key, 11)
    assert upload.headers == {"Content-Type": "video/mp2t", "Cache-Control": media_types.PRIVATE}


async def test_expired_urls_are_refused(s3: S3ObjectStore) -> None:
    video_id = new_video_id()
    stored = keys.segment(video_id, "720p", 0)
    await s3.put_bytes(stored, b"segment")
    get_url = s3.presign_get(stored, 1)
    upload = s3.presign_put(keys.source(video_id), 1)

    await asyncio.sleep(2.5)  # the signature clock has whole seconds
    async with httpx.AsyncClient() as client:
        got = await client.get(get_url)
        put = await client.put(upload.url, content=b"late", headers=upload.headers)

    assert (got.status_code, put.status_code) == (403, 403)
    assert await s3.stat(keys.source(video_id)) is None


@pytest.mark.parametrize("kind", list(KEY_KINDS))
@pytest.mark.parametrize("via", ["put_bytes", "put_file", "presigned PUT"])
async def test_objects_are_served_with_their_type_and_cache_policy(
    s3: S3ObjectStore, tmp_path: Path, kind: str, via: str
) -> None:
    key = KEY_KINDS[kind](new_video_id())
    if via == "put_bytes":
        await s3.put_bytes(key, b"payload")
    elif via == "put_file":
        (tmp_path / "payload").write_bytes(b"payload")
        await s3.put_file(key, tmp_path / "payload")
    else:
        upload = s3.presign_put(key, 60)
        async with httpx.AsyncClient() as client:
            (await client.put(upload.url, content=b"payload",
                              headers=upload.headers)).raise_for_status()

    async with httpx.AsyncClient() as client:
        response = await client.get(s3.presign_get(key, 60))

    assert response.status_code == 200
    assert response.content == b"payload"
    assert response.headers["content-type"] == media_types.content_type_for(key)
    assert response.headers["cache-control"] == media_types.cache_control_for(key)


def test_cache_policy_per_kind() -> None:
    vid = new_video_id()
    policies = {kind: media_types.cache_control_for(make(vid)) for kind, make in KEY_KINDS.items()}
    assert policies == {
        "source": media_types.PRIVATE, "chunk": media_types.PRIVATE,
        "init": media_types.IMMUTABLE, "segment": media_types.IMMUTABLE,
        "master": media_types.PLAYLIST_VOD, "media-playlist": media_types.PLAYLIST_VOD,
    }


async def test_input_url_serves_ranges(s3: S3ObjectStore) -> None:
    key = keys.chunk(new_video_id(), 0)
    data = os.urandom(100_000)
    await s3.put_bytes(key, data)

    async with httpx.AsyncClient() as client:
        response = await client.get(await s3.input_url(key, expires_s=60),
                                    headers={"Range": "bytes=1000-1999"})

    assert response.status_code == 206
    assert response.content == data[1000:2000]
    assert response.headers["content-range"] == f"bytes 1000-1999/{len(data)}"


async def test_pyav_and_ffmpeg_read_a_clip_through_input_url(
    s3: S3ObjectStore, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=2, size="160x120")  # moov at the end
    key = keys.source(new_video_id())
    await s3.put_file(key, clip)
    url = await s3.input_url(key)

    info = await probe(url)
    copied = await asyncio.to_thread(subprocess.run, [
        ffmpeg_path(), "-hide_banner", "-v", "error", "-i", url, "-c", "copy", "-f", "null",
        "-"], capture_output=True, text=True, timeout=60)

    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert (info.width, info.height, info.has_audio) == (160, 120, True)
    assert copied.returncode == 0, copied.stderr


async def test_multipart_upload_resumes_after_a_failed_part(
    s3: S3ObjectStore, tmp_path: Path
) -> None:
    key = keys.source(new_video_id())
    data = os.urandom(11 * MiB + 4321)
    upload = await s3.start_multipart(key, len(data), 5 * MiB, 600)
    assert [part.number for part in upload.parts] == [1, 2, 3]
    pieces = [data[i:i + upload.part_size] for i in range(0, len(data), upload.part_size)]

    etags: list[tuple[int, str]] = []
    async with httpx.AsyncClient(timeout=60) as client:
        for part, piece in zip(upload.parts, pieces, strict=True):
            if part.number == 2:  # this part fails first, then is retried on its own
                failed = await client.put(tampered(part.url), content=piece)
                assert failed.status_code == 403
            response = await client.put(part.url, content=piece)
            assert response.status_code == 200
            etags.append((part.number, response.headers["etag"]))
    assert await s3.stat(key) is None  # nothing visible until completed

    await s3.complete_multipart(key, upload.upload_id, list(reversed(etags)))

    assert await s3.stat(key) == ObjectInfo(key, len(data))
    assert await s3.read_bytes(key) == data
    async with httpx.AsyncClient() as client:
        got = await client.get(s3.presign_get(key, 60), headers={"Range": "bytes=0-0"})
    assert got.headers["cache-control"] == media_types.PRIVATE


async def test_multipart_refuses_bad_sizes_and_parts(s3: S3ObjectStore) -> None:
    key = keys.source(new_video_id())
    with pytest.raises(InvalidInput):
        await s3.start_multipart(key, 20 * MiB, 1 * MiB, 600)  # parts below S3's 5 MiB
    with pytest.raises(InvalidInput):
        await s3.start_multipart(key, 0, 5 * MiB, 600)
    with pytest.raises(InvalidInput):
        await s3.start_multipart(key, 10_001 * 5 * MiB, 5 * MiB, 600)

    upload = await s3.start_multipart(key, 6 * MiB, 5 * MiB, 600)
    with pytest.raises(InvalidInput):
        await s3.complete_multipart(key, upload.upload_id, [(1, '"0123"'), (2, '"4567"')])
    await s3.abort_multipart(key, upload.upload_id)
    await s3.abort_multipart(key, upload.upload_id)  # idempotent
    assert await s3.stat(key) is None


async def test_delete_prefix_drops_unfinished_uploads(
    s3: S3ObjectStore, seaweedfs: SeaweedServer
) -> None:
    video_id = new_video_id()
    await s3.start_multipart(keys.source(video_id), 6 * MiB, 5 * MiB, 600)
    client = make_client(seaweedfs.endpoint, seaweedfs.region,
                         access_key=seaweedfs.access_key, secret_key=seaweedfs.secret_key)
    try:
        assert client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")

        await s3.delete_prefix(f"sources/{video_id}/")

        assert not client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")
    finally:
        client.close()


async def test_bucket_is_created_on_first_use(seaweedfs: SeaweedServer) -> None:
    bucket = new_bucket_name("lazy")
    first, second = open_s3(seaweedfs, bucket), open_s3(seaweedfs, bucket)
    key = keys.master_playlist(new_video_id())
    try:
        await first.put_bytes(key, b"#EXTM3U\n")  # no ensure_bucket() before
        await second.ensure_bucket()  # exists already: nothing to do
        await second.ensure_bucket()
        assert await second.read_bytes(key) == b"#EXTM3U\n"
    finally:
        await first.close()
        await second.close()
        drop_bucket(seaweedfs, bucket)


async def test_missing_object_reads_as_file_not_found(s3: S3ObjectStore) -> None:
    with pytest.raises(FileNotFoundError):
        await s3.read_bytes(keys.init_segment(new_video_id(), "720p"))


async def test_open_store_reads_the_storage_url(
    seaweedfs: SeaweedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    url = seaweedfs.storage_url("some-bucket") + "&multipart_mb=64"

    store = load_backend(STORAGE_BACKENDS, url)(url, load_settings())
    default = open_store("s3://b-u-c", load_settings())

    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.multipart_threshold) == ("some-bucket", 64 * MiB)
    assert default.multipart_threshold == 100 * MiB
    await store.close()
    await default.close()
    with pytest.raises(ValueError, match="unknown"):
        open_store("s3://bucket?endpont=http://x", load_settings())
    with pytest.raises(ValueError):
        open_store("s3:///no-bucket", load_settings())
