"""The splitter: probe an upload, choose its ladder, cut it into chunks, or fail it clearly."""

from contextlib import AbstractAsyncContextManager

import pytest

from chunkcast.domain import events, keys
from chunkcast.domain.videos import VideoStatus
from chunkcast.services.ingest import MAX_CHUNKS
from chunkcast.worker.consumer import RetryBudget
from tests.fakes import fake_media

from .conftest import WorldFactory
from .faulty import FAST, FaultyBus, settled, working
from .world import SPLIT, Limits, World


def _chunks(published: list[events.Event]) -> list[tuple[int, float, float, str]]:
    return [(e.seq, e.pts_start, e.duration, e.container) for e in published
            if isinstance(e, events.ChunkUploaded)]


async def test_a_source_is_probed_and_cut_into_chunks_of_whole_segments(world: World) -> None:
    video = await world.upload(media=fake_media(duration=10.0, width=640, height=360,
                                                fps=25.0))
    await world.work(groups=())
    assert _chunks(await world.published(events.VOD_CHUNKS)) == [
        (0, 0.0, 4.0, "mov"), (1, 4.0, 4.0, "mov"), (2, 8.0, 2.0, "mov")]
    processing = await world.videos.get(video.id)
    assert processing.status is VideoStatus.PROCESSING
    assert (processing.duration, processing.width, processing.height, processing.fps) == (
        10.0, 640, 360, 25.0)
    assert processing.has_audio and processing.source_size == len(fake_media(
        duration=10.0, width=640, height=360, fps=25.0))
    assert processing.jobs_total == 3
    ladder = [(i.rendition.name, i.rendition.width, i.rendition.height, i.rendition.fps)
              for i in await world.repo.renditions(video.id)]
    assert ladder == [("240p", 426, 240, 25.0), ("360p", 640, 360, 25.0)]  # never upscaled
    assert [c.seq for c in await world.repo.chunks(video.id)] == [0, 1, 2]
    assert world.prober.probed == [("source", str(world.store.path(keys.source(video.id))))]
    assert await world.statuses() == [(video.id, "uploaded", None),
                                      (video.id, "processing", None)]


async def test_the_container_the_probe_found_is_passed_on(world: World) -> None:
    await world.upload(media=fake_media(duration=3.0, container="matroska"))
    await world.work(groups=())
    assert _chunks(await world.published(events.VOD_CHUNKS)) == [(0, 0.0, 3.0, "matroska")]


async def test_only_groups_with_renditions_to_encode_count_as_jobs(
    make_world: WorldFactory,
) -> None:
    world = await make_world(groups=SPLIT)
    video = await world.upload(media=fake_media(duration=8.0, width=640, height=360))
    await world.work(groups=())
    assert (await world.videos.get(video.id)).jobs_total == 2  # "hi" has nothing to encode


async def test_a_redelivered_source_publishes_the_same_chunks_again(world: World) -> None:
    video = await world.upload(media=fake_media(duration=6.0))
    await world.work(groups=())
    first = _chunks(await world.published(events.VOD_CHUNKS))
    await world.splitter.handle(events.SourceUploaded(video.id, keys.source(video.id)))
    assert _chunks(await world.published(events.VOD_CHUNKS)) == first
    assert len(await world.repo.chunks(video.id)) == 2
    assert (await world.videos.get(video.id)).status is VideoStatus.PROCESSING


async def _failure(world: World, media: bytes) -> str | None:
    video = await world.upload(media=media)
    await world.work(groups=())
    failed = await world.videos.get(video.id)
    assert failed.status is VideoStatus.FAILED, failed
    assert await world.published(events.VOD_CHUNKS) == []
    assert (await world.statuses())[-1] == (video.id, "failed", failed.error)
    return failed.error


@pytest.mark.parametrize(("media", "reason"), [
    (b"just some text", "not a readable video file: it is not a video in a supported "
                        "container, or it is incomplete"),
    (fake_media(container="hls"), "not a readable video file: its container is not "
                                  "supported"),
    (fake_media(duration=3600.0, pictures_end=5.0), "the file says it lasts 3600.0 s but its "
                                                    "pictures end at 5.0 s"),
    (fake_media(width=8, height=8), "the picture is too small (8x8)"),
])
async def test_an_unusable_source_fails_with_a_public_reason(
    world: World, media: bytes, reason: str,
) -> None:
    error = await _failure(world, media)
    assert error is not None and error.startswith(reason)
    assert str(world.root) not in error and "/" not in error


async def test_a_source_over_the_duration_limit_fails(make_world: WorldFactory) -> None:
    world = await make_world(limits=Limits(max_source_seconds=3600.0))
    assert await _failure(world, fake_media(duration=5400.0)) == (
        "the video lasts 1.5 hours; the limit is 1 hours")


async def test_a_source_that_would_make_too_many_chunks_fails(
    make_world: WorldFactory,
) -> None:
    world = await make_world(limits=Limits(chunk_seconds=2, max_source_seconds=1e9))
    error = await _failure(world, fake_media(duration=MAX_CHUNKS * 2.0 + 10))
    assert error == (f"the video is too long to process: it would make {MAX_CHUNKS + 5} "
                     f"chunks, the limit is {MAX_CHUNKS}")


async def test_a_source_deleted_before_the_splitter_runs_fails(world: World) -> None:
    video = await world.upload()
    await world.store.delete_prefix(keys.source(video.id))
    await world.work(groups=())
    assert (await world.videos.get(video.id)).error == "the uploaded file is missing or empty"


# -- dependency trouble ----------------------------------------------------------------

def _splitting(world: World, bus: FaultyBus, *,
               budget: RetryBudget = FAST) -> AbstractAsyncContextManager[object]:
    return working(bus, events.SOURCES, "splitter", world.splitter.handle,
                   world.splitter.give_up, metrics=world.metrics, budget=budget)


async def test_a_probe_that_fails_while_storage_is_down_is_retried_not_blamed(
    world: World,
) -> None:
    video = await world.upload(media=fake_media(duration=6.0))
    world.outages.storage.begin(after_calls=1)  # the source is found, then cannot be read
    bus = FaultyBus(world.bus)
    async with _splitting(world, bus):
        await world.outages.storage.refusals(3)
        world.outages.storage.end()
        _, error = await settled(bus)
    assert error is None
    assert world.prober.probed[0][1].endswith(".unreachable")  # the probe did fail on it
    assert (await world.videos.get(video.id)).status is VideoStatus.PROCESSING
    assert len(_chunks(await world.published(events.VOD_CHUNKS))) == 2


async def test_a_source_past_its_budget_fails_with_a_plain_reason(world: World) -> None:
    video = await world.upload(media=fake_media(duration=6.0))
    world.outages.storage.begin()
    bus = FaultyBus(world.bus)
    async with _splitting(world, bus, budget=RetryBudget(vod_s=0.2, first_delay_s=0.01)):
        _, error = await settled(bus)
    failed = await world.videos.get(video.id)
    assert (failed.status, failed.error) == (VideoStatus.FAILED,
                                             "storage was unreachable for 1 second")
    assert error == failed.error
    assert await world.published(events.VOD_CHUNKS) == []
