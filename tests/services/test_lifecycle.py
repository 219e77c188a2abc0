"""Status changes: recorded only from the allowed statuses, announced once, public reasons."""

from chunkcast.domain import events
from chunkcast.domain.videos import VideoStatus

from .world import World


async def test_a_move_happens_only_from_the_given_statuses_and_is_announced_once(
    world: World,
) -> None:
    video, _ = await world.videos.create("clip")
    lifecycle = world.lifecycle
    assert not await lifecycle.move(video.id, VideoStatus.READY,
                                    only_from=(VideoStatus.PROCESSING,))
    assert await lifecycle.move(video.id, VideoStatus.UPLOADED,
                                only_from=(VideoStatus.CREATED,))
    assert not await lifecycle.move(video.id, VideoStatus.UPLOADED,
                                    only_from=(VideoStatus.CREATED,))
    assert (await world.videos.get(video.id)).status is VideoStatus.UPLOADED
    assert await world.published(events.VIDEOS) == [
        events.VideoStatusChanged(video.id, "uploaded", None)]
    assert await world.repo.pending(video.id) == []  # published at once: nothing waits


async def test_announcing_tells_the_viewers_without_changing_the_record(world: World) -> None:
    video, _ = await world.videos.create("clip")
    await world.lifecycle.announce(video.id, VideoStatus.ENDED)
    assert await world.statuses() == [(video.id, "ended", None)]
    assert (await world.videos.get(video.id)).status is VideoStatus.CREATED


async def test_a_failure_reason_is_made_public_and_a_finished_video_stays_finished(
    world: World,
) -> None:
    video, _ = await world.videos.create("clip")
    await world.lifecycle.fail(video.id, "could not open /srv/objects/sources/x/source "
                                         "from https://bucket.example/x?X-Amz-Signature=1")
    failed = await world.videos.get(video.id)
    assert failed.status is VideoStatus.FAILED
    assert failed.error == "could not open [path] from [url]"
    await world.lifecycle.fail(video.id, "again")
    assert (await world.videos.get(video.id)).error == "could not open [path] from [url]"
    assert await world.statuses() == [(video.id, "failed", failed.error)]

    ready = await world.upload()
    await world.work()
    await world.statuses()
    await world.lifecycle.fail(ready.id, "too late")
    assert (await world.videos.get(ready.id)).status is VideoStatus.READY
    assert await world.statuses() == []


async def test_a_live_stream_can_fail_and_an_ended_one_cannot(world: World) -> None:
    live, _ = await world.streams.create("live")
    await world.lifecycle.fail(live.id, "gone")
    assert (await world.streams.get(live.id)).status is VideoStatus.FAILED
    ended, _ = await world.streams.create("ended")
    await world.streams.end(ended.id)
    await world.lifecycle.fail(ended.id, "gone")
    assert (await world.streams.get(ended.id)).status is VideoStatus.ENDED
