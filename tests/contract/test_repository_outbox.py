"""VideoRepository contract, the outbox: events committed with the writes they announce,
read back in order, removed once published, relayed by one process at a time."""

import asyncio
from datetime import timedelta

import pytest

from chunkcast.domain import events, keys
from chunkcast.domain.clock import utc_now
from chunkcast.domain.ids import new_video_id
from chunkcast.domain.videos import VideoKind, VideoStatus
from chunkcast.ports.repository import Announcement, PendingEvent, VideoRepository

from .test_repository import T0, added, chunk


def status_event(video_id: str, status: VideoStatus) -> Announcement:
    return events.VIDEOS, events.VideoStatusChanged(video_id, status.value)


def chunk_event(video_id: str, seq: int) -> Announcement:
    return events.CHUNKS, events.ChunkUploaded(video_id, "live", seq, keys.chunk(video_id, seq),
                                               seq * 2.0, 2.0, "2026-11-24T10:00:00.000Z")


def source_event(video_id: str) -> Announcement:
    return events.SOURCES, events.SourceUploaded(video_id, keys.source(video_id))


def announced(pending: list[PendingEvent] | tuple[PendingEvent, ...]) -> list[Announcement]:
    return [(p.topic, p.event) for p in pending]


async def test_a_status_move_records_its_events_only_when_it_changes_the_status(
    repo: VideoRepository,
) -> None:
    video = await added(repo)
    moved = [status_event(video.id, VideoStatus.UPLOADED), source_event(video.id)]
    recorded = await repo.move_status(video.id, VideoStatus.UPLOADED, moved,
                                      only_from=(VideoStatus.CREATED,))
    assert announced(list(recorded)) == moved
    assert recorded[0].id < recorded[1].id
    got = await repo.get_video(video.id)
    assert got is not None and got.status is VideoStatus.UPLOADED
    # A second attempt changes nothing and records nothing: the outbox holds the first.
    assert await repo.move_status(video.id, VideoStatus.UPLOADED, moved,
                                  only_from=(VideoStatus.CREATED,)) == []
    assert list(await repo.pending(video.id)) == list(recorded)
    failed = await repo.move_status(video.id, VideoStatus.FAILED,
                                    [status_event(video.id, VideoStatus.FAILED)],
                                    only_from=(VideoStatus.UPLOADED,), error="no video")
    got = await repo.get_video(video.id)
    assert got is not None and (got.status, got.error) == (VideoStatus.FAILED, "no video")
    assert list(await repo.pending(video.id)) == [*recorded, *failed]
    assert await repo.move_status(new_video_id(), VideoStatus.READY,
                                  [status_event(video.id, VideoStatus.READY)],
                                  only_from=(VideoStatus.PROCESSING,)) == []


async def test_recorded_events_come_back_as_they_were_per_video(repo: VideoRepository) -> None:
    video = await added(repo)
    other = await added(repo)
    before = utc_now()
    mine = await repo.move_status(video.id, VideoStatus.UPLOADED, [source_event(video.id)],
                                  only_from=(VideoStatus.CREATED,))
    await repo.move_status(other.id, VideoStatus.UPLOADED, [source_event(other.id)],
                           only_from=(VideoStatus.CREATED,))
    (pending,) = await repo.pending(video.id)
    assert pending == mine[0]
    assert pending.event == events.SourceUploaded(video.id, keys.source(video.id))
    assert before - timedelta(seconds=1) <= pending.created_at <= utc_now()
    assert pending.created_at.utcoffset() == timedelta(0)
    assert await repo.pending(new_video_id()) == []


async def test_the_first_chunk_of_an_idle_stream_makes_it_live_with_its_events(
    repo: VideoRepository,
) -> None:
    stream = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE)
    went_live = status_event(stream.id, VideoStatus.LIVE)
    first = await repo.record_chunk(chunk(stream.id, 0), chunk_event(stream.id, 0), at=T0,
                                    went_live=went_live)
    assert announced(list(first)) == [went_live, chunk_event(stream.id, 0)]
    got = await repo.get_video(stream.id)
    assert got is not None and got.status is VideoStatus.LIVE and got.last_chunk_at == T0
    second = await repo.record_chunk(chunk(stream.id, 1), chunk_event(stream.id, 1), at=T0,
                                     went_live=went_live)
    assert announced(list(second)) == [chunk_event(stream.id, 1)]  # live already
    assert await repo.chunks(stream.id) == [chunk(stream.id, 0), chunk(stream.id, 1)]
    assert list(await repo.pending(stream.id)) == [*first, *second]


async def test_a_chunk_recorded_again_records_nothing_but_its_report_time(
    repo: VideoRepository,
) -> None:
    stream = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE)
    went_live = status_event(stream.id, VideoStatus.LIVE)
    await repo.record_chunk(chunk(stream.id, 0), chunk_event(stream.id, 0), at=T0,
                            went_live=went_live)
    later = T0 + timedelta(seconds=5)
    assert await repo.record_chunk(chunk(stream.id, 0, key="chunks/again"),
                                   chunk_event(stream.id, 0), at=later,
                                   went_live=went_live) == []
    assert await repo.chunks(stream.id) == [chunk(stream.id, 0)]
    assert len(await repo.pending(stream.id)) == 2
    got = await repo.get_video(stream.id)
    assert got is not None and got.last_chunk_at == later


async def test_an_ended_stream_is_not_made_live_by_a_late_chunk(repo: VideoRepository) -> None:
    stream = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.ENDED)
    recorded = await repo.record_chunk(chunk(stream.id, 0), chunk_event(stream.id, 0), at=T0,
                                       went_live=status_event(stream.id, VideoStatus.LIVE))
    assert announced(list(recorded)) == [chunk_event(stream.id, 0)]
    got = await repo.get_video(stream.id)
    assert got is not None and got.status is VideoStatus.ENDED


async def test_deleting_published_events_is_idempotent(repo: VideoRepository) -> None:
    stream = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE)
    went_live = status_event(stream.id, VideoStatus.LIVE)
    recorded = list(await repo.record_chunk(chunk(stream.id, 0), chunk_event(stream.id, 0),
                                            at=T0, went_live=went_live))
    await repo.delete_pending([recorded[0].id])
    assert list(await repo.pending(stream.id)) == recorded[1:]
    await repo.delete_pending([recorded[0].id, recorded[1].id])
    await repo.delete_pending([])
    assert await repo.pending(stream.id) == []


async def test_ids_keep_growing_after_every_event_was_removed(repo: VideoRepository) -> None:
    # A writer removes the event it published by id: an id must never come back.
    first = await added(repo)
    (old,) = await repo.move_status(first.id, VideoStatus.UPLOADED, [source_event(first.id)],
                                    only_from=(VideoStatus.CREATED,))
    await repo.delete_pending([old.id])
    second = await added(repo)
    (new,) = await repo.move_status(second.id, VideoStatus.UPLOADED, [source_event(second.id)],
                                    only_from=(VideoStatus.CREATED,))
    assert new.id > old.id


async def test_the_backlog_counts_waiting_events_and_dates_the_oldest(
    repo: VideoRepository,
) -> None:
    assert await repo.outbox_backlog() == (0, None)
    before = utc_now()
    first = await added(repo)
    await repo.move_status(first.id, VideoStatus.UPLOADED,
                           [status_event(first.id, VideoStatus.UPLOADED), source_event(first.id)],
                           only_from=(VideoStatus.CREATED,))
    count, oldest = await repo.outbox_backlog()
    assert count == 2 and oldest is not None
    assert before - timedelta(seconds=1) <= oldest <= utc_now()


async def test_the_relay_publishes_old_enough_events_in_order_and_removes_them(
    repo: VideoRepository,
) -> None:
    videos = [await added(repo) for _ in range(3)]
    recorded = [p for v in videos for p in await repo.move_status(
        v.id, VideoStatus.UPLOADED, [status_event(v.id, VideoStatus.UPLOADED), source_event(v.id)],
        only_from=(VideoStatus.CREATED,))]
    published: list[PendingEvent] = []

    async def publish(pending: PendingEvent) -> None:
        published.append(pending)

    # Events younger than the cut-off are left to their writer.
    assert await repo.relay_pending(publish, recorded_before=recorded[0].created_at
                                    - timedelta(seconds=1), limit=10) == 0
    cutoff = utc_now() + timedelta(seconds=1)
    assert await repo.relay_pending(publish, recorded_before=cutoff, limit=4) == 4
    assert await repo.relay_pending(publish, recorded_before=cutoff, limit=4) == 2
    assert published == recorded
    assert await repo.outbox_backlog() == (0, None)
    assert await repo.relay_pending(publish, recorded_before=cutoff, limit=4) == 0


async def test_a_publish_that_fails_stops_the_round_and_keeps_that_event_and_the_rest(
    repo: VideoRepository,
) -> None:
    videos = [await added(repo) for _ in range(3)]
    recorded = [p for v in videos for p in await repo.move_status(
        v.id, VideoStatus.UPLOADED, [source_event(v.id)], only_from=(VideoStatus.CREATED,))]
    published: list[PendingEvent] = []

    async def publish(pending: PendingEvent) -> None:
        if pending.id == recorded[1].id:
            raise ConnectionError("the bus is down")
        published.append(pending)

    cutoff = utc_now() + timedelta(seconds=1)
    with pytest.raises(ConnectionError):
        await repo.relay_pending(publish, recorded_before=cutoff, limit=10)
    assert published == recorded[:1]
    assert await repo.pending(videos[0].id) == []
    assert [p for v in videos[1:] for p in await repo.pending(v.id)] == recorded[1:]
    assert (await repo.outbox_backlog())[0] == 2


async def test_relays_of_two_processes_never_take_the_same_event(
    repo: VideoRepository, request: pytest.FixtureRequest,
) -> None:
    if request.node.callspec.params["repo"] == "sqlite":
        pytest.skip("one process owns a SQLite catalogue; duplicates are harmless anyway")
    videos = [await added(repo) for _ in range(4)]
    recorded = [p for v in videos for p in await repo.move_status(
        v.id, VideoStatus.UPLOADED, [source_event(v.id)], only_from=(VideoStatus.CREATED,))]
    holding, release = asyncio.Event(), asyncio.Event()
    first: list[PendingEvent] = []
    second: list[PendingEvent] = []

    async def slow(pending: PendingEvent) -> None:
        first.append(pending)
        holding.set()
        await release.wait()

    async def fast(pending: PendingEvent) -> None:
        second.append(pending)

    cutoff = utc_now() + timedelta(seconds=1)
    relaying = asyncio.create_task(repo.relay_pending(slow, recorded_before=cutoff, limit=2))
    await holding.wait()  # the first relay holds its two events
    assert await repo.relay_pending(fast, recorded_before=cutoff, limit=10) == 2
    release.set()
    assert await relaying == 2
    assert first == recorded[:2] and second == recorded[2:]
    assert await repo.outbox_backlog() == (0, None)


async def test_ping_answers_while_the_catalogue_is_reachable(repo: VideoRepository) -> None:
    await repo.ping()
