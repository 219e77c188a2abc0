"""Videos: creating an upload, completing it, the size limit, deleting."""

import pytest

from chunkcast.domain import events, keys
from chunkcast.domain.errors import Conflict, InvalidInput, NotFound, TooLarge
from chunkcast.domain.videos import VideoKind, VideoStatus
from chunkcast.ports.storage import PresignedRequest
from tests.fakes import fake_media

from .world import API, World


async def test_a_new_video_waits_for_its_upload_at_a_presigned_put(world: World) -> None:
    video, upload = await world.videos.create("  Final\x07 cut ")
    assert video.title == "Final cut" and video.kind is VideoKind.VOD
    assert video.status is VideoStatus.CREATED
    assert isinstance(upload, PresignedRequest) and upload.method == "PUT"
    assert upload.url.startswith(f"{API}/media/{keys.source(video.id)}?")
    assert (await world.videos.get(video.id)).status is VideoStatus.CREATED
    with pytest.raises(InvalidInput):
        await world.videos.create("\x00 ")


async def test_complete_checks_the_upload_and_hands_it_to_the_splitter_once(
    world: World,
) -> None:
    video, _ = await world.videos.create("clip")
    with pytest.raises(Conflict, match="nothing was uploaded"):
        await world.videos.complete(video.id)
    await world.store.put_bytes(keys.source(video.id), fake_media())
    done = await world.videos.complete(video.id)
    assert done.status is VideoStatus.UPLOADED
    again = await world.videos.complete(video.id)  # a client retrying its request
    assert again.status is VideoStatus.UPLOADED
    assert await world.published(events.SOURCES) == [
        events.SourceUploaded(video.id, keys.source(video.id))]
    assert await world.statuses() == [(video.id, "uploaded", None)]
    assert await world.repo.pending(video.id) == []


async def test_an_empty_upload_fails_the_video(world: World) -> None:
    video, _ = await world.videos.create("clip")
    await world.store.put_bytes(keys.source(video.id), b"")
    failed = await world.videos.complete(video.id)
    assert failed.status is VideoStatus.FAILED and failed.error == "the uploaded file is empty"
    assert await world.published(events.SOURCES) == []


async def test_an_upload_over_the_limit_is_refused_and_not_kept(world: World) -> None:
    limit = world.limits.max_upload_bytes
    with pytest.raises(TooLarge):
        await world.videos.create("big", size=limit + 1)
    # A pre-signed PUT does not bind the length: the size is checked again at completion.
    video, _ = await world.videos.create("big", size=100)
    await world.store.put_bytes(keys.source(video.id), b"x" * (limit + 1))
    failed = await world.videos.complete(video.id)
    assert failed.status is VideoStatus.FAILED
    assert failed.error == f"the uploaded file is larger than the limit of {limit} bytes"
    assert await world.store.stat(keys.source(video.id)) is None
    assert await world.published(events.SOURCES) == []


async def test_the_local_store_takes_one_put_and_refuses_multipart_completion(
    world: World,
) -> None:
    video, upload = await world.videos.create("big", size=world.limits.max_upload_bytes)
    assert isinstance(upload, PresignedRequest)
    await world.store.put_bytes(keys.source(video.id), fake_media())
    with pytest.raises(InvalidInput, match="multipart"):
        await world.videos.complete(video.id, ("upload-1", [(1, '"etag"')]))
    assert (await world.videos.get(video.id)).status is VideoStatus.CREATED


async def test_progress_follows_the_transcodes_and_delete_removes_everything(
    world: World,
) -> None:
    video = await world.upload(media=fake_media(duration=10.0))
    assert await world.videos.progress(video) == 0
    await world.work()
    ready = await world.videos.get(video.id)
    assert ready.status is VideoStatus.READY and await world.videos.progress(ready) == 100
    assert [v.id for v in await world.videos.list(limit=10, offset=0)] == [video.id]
    await world.videos.delete(video.id)
    with pytest.raises(NotFound):
        await world.videos.get(video.id)
    assert not [p for p in world.store.root.rglob("*") if p.is_file()
                and not p.is_relative_to(world.store.root / ".tmp")]
    assert await world.repo.segments(video.id, "240p") == []


async def test_a_private_video_can_be_made_public_again(world: World) -> None:
    video, _ = await world.videos.create("secret", private=True)
    assert video.private
    assert not (await world.videos.set_private(video.id, False)).private
    assert not (await world.videos.get(video.id)).private
    with pytest.raises(InvalidInput):
        await world.videos.get("../etc/passwd")
