"""VideoRepository contract: what every catalogue backend must do, through the port only."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from chunkcast.domain import keys
from chunkcast.domain.ids import new_video_id
from chunkcast.domain.ladder import Rendition
from chunkcast.domain.videos import Chunk, Segment, Video, VideoKind, VideoStatus
from chunkcast.ports.repository import VideoRepository

T0 = datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))
LADDER = [
    Rendition("720p", 1280, 720, 2800, 128, 30.0),
    Rendition("240p", 426, 240, 400, 96, 30.0),
    Rendition("480p", 854, 480, 1400, 128, 29.97),
]


async def added(repo: VideoRepository, **fields: Any) -> Video:
    """A new video (a VOD just created at ``T0`` unless ``fields`` say otherwise), added."""
    video = replace(Video(new_video_id(), VideoKind.VOD, "a video", VideoStatus.CREATED, T0),
                    **fields)
    await repo.add_video(video)
    return video


def chunk(video_id: str, seq: int, *, key: str | None = None) -> Chunk:
    return Chunk(video_id, seq, key or keys.chunk(video_id, seq), seq * 2.0, 2.0,
                 f"2026-11-24T10:00:{seq % 60:02d}.000Z")


def segment(video_id: str, rendition: str, seq: int, *, duration: float = 2.0) -> Segment:
    return Segment(video_id, rendition, seq, keys.segment(video_id, rendition, seq),
                   seq * 2.0, duration, "2026-11-24T10:00:00.500Z")


async def test_a_video_comes_back_as_it_was_added(repo: VideoRepository) -> None:
    video = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE,
                        stream_key_digest="ab" * 32, jobs_total=3)
    got = await repo.get_video(video.id)
    assert got == video
    assert got is not None and got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == timedelta(0)


async def test_an_unknown_video_is_none(repo: VideoRepository) -> None:
    assert await repo.get_video(new_video_id()) is None


async def test_times_in_any_zone_come_back_as_the_same_instant_in_utc(
    repo: VideoRepository,
) -> None:
    created = datetime(2026, 11, 24, 11, 0, tzinfo=PARIS)
    video = await added(repo, created_at=created)
    got = await repo.get_video(video.id)
    assert got is not None
    assert got.created_at == created
    assert got.created_at.utcoffset() == timedelta(0)


async def test_list_is_newest_first_and_paginated(repo: VideoRepository) -> None:
    videos = [await added(repo, created_at=T0 + timedelta(minutes=i)) for i in range(5)]
    newest_first = [v.id for v in reversed(videos)]
    assert [v.id for v in await repo.list_videos(limit=10, offset=0)] == newest_first
    assert [v.id for v in await repo.list_videos(limit=2, offset=0)] == newest_first[:2]
    assert [v.id for v in await repo.list_videos(limit=2, offset=2)] == newest_first[2:4]
    assert [v.id for v in await repo.list_videos(limit=2, offset=4)] == newest_first[4:]
    assert await repo.list_videos(limit=2, offset=5) == []
    listed = await repo.list_videos(limit=1, offset=0)
    assert listed[0] == videos[-1] and listed[0].created_at.tzinfo is not None


async def test_list_filters_by_status_kind_and_privacy(repo: VideoRepository) -> None:
    ready = await added(repo, status=VideoStatus.READY)
    live = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.LIVE,
                       created_at=T0 + timedelta(minutes=1))
    hidden = await added(repo, status=VideoStatus.READY, private=True,
                         created_at=T0 + timedelta(minutes=2))
    await added(repo, status=VideoStatus.PROCESSING, created_at=T0 + timedelta(minutes=3))

    async def ids(**filters: Any) -> list[str]:
        return [v.id for v in await repo.list_videos(limit=10, offset=0, **filters)]

    assert await ids(statuses=[VideoStatus.READY]) == [hidden.id, ready.id]
    assert await ids(statuses=[VideoStatus.READY], public_only=True) == [ready.id]
    assert await ids(statuses=[VideoStatus.READY, VideoStatus.LIVE], public_only=True) == [
        live.id, ready.id]
    assert await ids(kind=VideoKind.LIVE) == [live.id]
    assert len(await ids()) == 4


async def test_set_status_changes_status_and_error(repo: VideoRepository) -> None:
    video = await added(repo)
    assert await repo.set_status(video.id, VideoStatus.FAILED, error="not a video") is True
    got = await repo.get_video(video.id)
    assert got is not None
    assert (got.status, got.error) == (VideoStatus.FAILED, "not a video")
    assert await repo.set_status(new_video_id(), VideoStatus.READY) is False


async def test_set_status_only_from_changes_only_a_matching_status(
    repo: VideoRepository,
) -> None:
    video = await added(repo, status=VideoStatus.UPLOADED)
    assert await repo.set_status(video.id, VideoStatus.READY,
                                 only_from=(VideoStatus.PROCESSING,)) is False
    got = await repo.get_video(video.id)
    assert got is not None and got.status is VideoStatus.UPLOADED
    assert await repo.set_status(
        video.id, VideoStatus.PROCESSING,
        only_from=(VideoStatus.CREATED, VideoStatus.UPLOADED)) is True
    got = await repo.get_video(video.id)
    assert got is not None and got.status is VideoStatus.PROCESSING


async def test_set_status_to_the_same_status_still_counts_as_a_change(
    repo: VideoRepository,
) -> None:
    # A matching row is a change on every backend, even when no column differs.
    video = await added(repo, status=VideoStatus.LIVE)
    assert await repo.set_status(video.id, VideoStatus.LIVE,
                                 only_from=(VideoStatus.IDLE, VideoStatus.LIVE)) is True


async def test_of_two_concurrent_conditional_updates_only_one_wins(
    repo: VideoRepository,
) -> None:
    for _ in range(5):
        video = await added(repo, status=VideoStatus.PROCESSING)
        results = await asyncio.gather(
            repo.set_status(video.id, VideoStatus.READY, only_from=(VideoStatus.PROCESSING,)),
            repo.set_status(video.id, VideoStatus.FAILED, error="lost",
                            only_from=(VideoStatus.PROCESSING,)),
        )
        assert sorted(results) == [False, True]
        got = await repo.get_video(video.id)
        assert got is not None
        assert got.status is (VideoStatus.READY if results[0] else VideoStatus.FAILED)


async def test_source_info_is_recorded_even_for_sources_above_2_gib(
    repo: VideoRepository,
) -> None:
    video = await added(repo)
    size = 5 * 2**31 + 7
    await repo.set_source_info(video.id, duration=7322.5, width=3840, height=2160,
                               fps=59.94, has_audio=True, source_size=size,
                               audio_passthrough=True)
    got = await repo.get_video(video.id)
    assert got is not None
    assert (got.duration, got.width, got.height, got.fps, got.has_audio, got.source_size,
            got.audio_passthrough) == (7322.5, 3840, 2160, 59.94, True, size, True)
    await repo.set_source_info(video.id, duration=1.0, width=2, height=2, fps=1.0,
                               has_audio=False, source_size=1)
    got = await repo.get_video(video.id)
    assert got is not None and (got.has_audio, got.audio_passthrough) == (False, False)


async def test_set_plan_is_idempotent_and_renditions_are_lowest_first(
    repo: VideoRepository,
) -> None:
    video = await added(repo)
    await repo.set_plan(video.id, LADDER, jobs_total=12)
    await repo.set_plan(video.id, LADDER, jobs_total=12)
    infos = await repo.renditions(video.id)
    assert [i.rendition for i in infos] == sorted(LADDER, key=lambda r: r.height)
    assert {i.video_id for i in infos} == {video.id}
    assert all(i.codecs is None for i in infos)
    got = await repo.get_video(video.id)
    assert got is not None and got.jobs_total == 12
    assert await repo.renditions(new_video_id()) == []


async def test_codecs_are_recorded_per_rendition(repo: VideoRepository) -> None:
    video = await added(repo)
    await repo.set_plan(video.id, LADDER, jobs_total=3)
    await repo.set_codecs(video.id, "480p", "avc1.64001f,mp4a.40.2")
    codecs = {i.rendition.name: i.codecs for i in await repo.renditions(video.id)}
    assert codecs == {"240p": None, "480p": "avc1.64001f,mp4a.40.2", "720p": None}


async def test_add_chunks_keeps_a_chunk_already_recorded(repo: VideoRepository) -> None:
    video = await added(repo)
    await repo.add_chunks([chunk(video.id, s) for s in (2, 0, 1)])
    await repo.add_chunks([chunk(video.id, 1, key="chunks/other"), chunk(video.id, 3)])
    await repo.add_chunks([])
    assert await repo.chunks(video.id) == [chunk(video.id, s) for s in range(4)]


async def test_add_chunks_takes_a_long_source_in_one_call(repo: VideoRepository) -> None:
    # More rows than fit in one statement's bind parameters on some servers.
    video = await added(repo)
    await repo.add_chunks([chunk(video.id, s) for s in range(7000)])
    got = await repo.chunks(video.id)
    assert [c.seq for c in got] == list(range(7000))


async def test_add_chunk_is_new_once_and_moves_last_chunk_at(repo: VideoRepository) -> None:
    video = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE)
    first_at, again_at = T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)
    assert await repo.add_chunk(chunk(video.id, 0), at=first_at) is True
    got = await repo.get_video(video.id)
    assert got is not None and got.last_chunk_at == first_at
    assert await repo.add_chunk(chunk(video.id, 0, key="chunks/again"), at=again_at) is False
    got = await repo.get_video(video.id)
    assert got is not None and got.last_chunk_at == again_at
    assert got.last_chunk_at.utcoffset() == timedelta(0)
    assert await repo.chunks(video.id) == [chunk(video.id, 0)]


async def test_last_chunk_seq_is_the_highest_recorded(repo: VideoRepository) -> None:
    video = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE)
    other = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE)
    assert await repo.last_chunk_seq(video.id) is None
    for seq in (3, 7, 5):
        await repo.add_chunk(chunk(video.id, seq), at=T0)
    await repo.add_chunk(chunk(other.id, 90), at=T0)
    assert await repo.last_chunk_seq(video.id) == 7


async def test_quiet_streams_are_live_streams_without_a_recent_chunk(
    repo: VideoRepository,
) -> None:
    quiet = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.LIVE)
    busy = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.LIVE)
    ended = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.LIVE)
    idle = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE)
    await repo.add_chunk(chunk(quiet.id, 0), at=T0)
    # the same kind of instant, written in another zone
    await repo.add_chunk(chunk(busy.id, 0), at=(T0 + timedelta(seconds=10)).astimezone(PARIS))
    await repo.add_chunk(chunk(ended.id, 0), at=T0)
    await repo.set_status(ended.id, VideoStatus.ENDED)
    assert await repo.quiet_streams(T0 + timedelta(seconds=5)) == [quiet.id]
    assert sorted(await repo.quiet_streams(T0 + timedelta(seconds=11))) == sorted(
        [quiet.id, busy.id])
    assert await repo.quiet_streams(T0) == []
    assert idle.id not in await repo.quiet_streams(T0 + timedelta(days=1))


async def test_set_jobs_total(repo: VideoRepository) -> None:
    video = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.LIVE)
    await repo.set_jobs_total(video.id, 240)
    got = await repo.get_video(video.id)
    assert got is not None and got.jobs_total == 240


async def test_segments_come_back_in_seq_order_and_upserts_replace(
    repo: VideoRepository,
) -> None:
    video = await added(repo)
    await repo.upsert_segments([segment(video.id, "240p", s) for s in (2, 0, 1)])
    await repo.upsert_segments([segment(video.id, "720p", 0)])
    await repo.upsert_segments([segment(video.id, "240p", 1, duration=1.5)])
    await repo.upsert_segments([])
    assert await repo.segments(video.id, "240p") == [
        segment(video.id, "240p", 0), segment(video.id, "240p", 1, duration=1.5),
        segment(video.id, "240p", 2)]
    assert await repo.segments(video.id, "720p") == [segment(video.id, "720p", 0)]
    assert await repo.segments(video.id, "1080p") == []


async def test_the_last_of_repeated_segments_in_one_upsert_wins(
    repo: VideoRepository,
) -> None:
    video = await added(repo)
    await repo.upsert_segments([segment(video.id, "240p", 0, duration=1.0),
                                segment(video.id, "240p", 0, duration=3.0)])
    assert await repo.segments(video.id, "240p") == [segment(video.id, "240p", 0, duration=3.0)]


async def test_finish_job_is_idempotent_and_counts_jobs(repo: VideoRepository) -> None:
    video, other = await added(repo), await added(repo)
    assert await repo.jobs_done(video.id) == 0
    for seq, group in ((0, "all"), (0, "all"), (1, "all"), (0, "hi")):
        await repo.finish_job(video.id, seq, group)
    await repo.finish_job(other.id, 0, "all")
    assert await repo.jobs_done(video.id) == 3
    assert await repo.jobs_done(other.id) == 1
    await asyncio.gather(*(repo.finish_job(video.id, 2, "lo") for _ in range(4)))
    assert await repo.jobs_done(video.id) == 4
    # Counted for some groups only: those with renditions of the video.
    assert await repo.jobs_done(video.id, ["all"]) == 2
    assert await repo.jobs_done(video.id, ["hi", "lo"]) == 2
    assert await repo.jobs_done(video.id, []) == 0


async def _fill(repo: VideoRepository, video_id: str) -> None:
    await repo.set_plan(video_id, LADDER, jobs_total=2)
    await repo.add_chunks([chunk(video_id, 0), chunk(video_id, 1)])
    await repo.upsert_segments([segment(video_id, "240p", 0), segment(video_id, "720p", 0)])
    await repo.finish_job(video_id, 0, "all")


async def test_delete_video_removes_that_video_only(repo: VideoRepository) -> None:
    gone, kept = await added(repo), await added(repo)
    for video in (gone, kept):
        await _fill(repo, video.id)
    await repo.delete_video(gone.id)
    assert await repo.get_video(gone.id) is None
    assert await repo.renditions(gone.id) == []
    assert await repo.chunks(gone.id) == []
    assert await repo.segments(gone.id, "240p") == []
    assert await repo.jobs_done(gone.id) == 0
    assert [v.id for v in await repo.list_videos(limit=10, offset=0)] == [kept.id]
    assert len(await repo.renditions(kept.id)) == 3
    assert len(await repo.chunks(kept.id)) == 2
    assert len(await repo.segments(kept.id, "720p")) == 1
    assert await repo.jobs_done(kept.id) == 1
    await repo.delete_video(gone.id)  # deleting again changes nothing


async def test_count_by_status(repo: VideoRepository) -> None:
    assert await repo.count_by_status() == {}
    for status in (VideoStatus.READY, VideoStatus.READY, VideoStatus.LIVE,
                   VideoStatus.FAILED):
        await added(repo, status=status)
    assert await repo.count_by_status() == {"ready": 2, "live": 1, "failed": 1}


async def test_set_stream_key_replaces_the_digest(repo: VideoRepository) -> None:
    video = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE,
                        stream_key_digest="a" * 64)
    await repo.set_stream_key(video.id, "b" * 64)
    got = await repo.get_video(video.id)
    assert got is not None and got.stream_key_digest == "b" * 64


async def test_segments_are_read_by_range(repo: VideoRepository) -> None:
    """A 24/7 stream's history grows without end: readers ask for the range they need."""
    video = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.LIVE)
    await repo.upsert_segments([segment(video.id, "240p", s) for s in (0, 1, 2, 4, 5, 7)])

    async def seqs(**bounds: int) -> list[int]:
        return [s.seq for s in await repo.segments(video.id, "240p", **bounds)]

    assert await seqs() == [0, 1, 2, 4, 5, 7]
    assert await seqs(after=2) == [4, 5, 7]
    assert await seqs(before=4) == [0, 1, 2]
    assert await seqs(after=0, before=7) == [1, 2, 4, 5]
    assert await seqs(after=1, first=2) == [2, 4]
    assert await seqs(last=2) == [5, 7]
    assert await seqs(before=5, last=2) == [2, 4]
    assert await seqs(after=7) == []


async def test_a_chunk_is_found_by_its_seq(repo: VideoRepository) -> None:
    video = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE)
    await repo.add_chunk(chunk(video.id, 4), at=T0)
    assert await repo.get_chunk(video.id, 4) == chunk(video.id, 4)
    assert await repo.get_chunk(video.id, 5) is None
    assert await repo.get_chunk(new_video_id(), 4) is None


async def test_the_chunk_extent_is_the_last_seq_and_the_latest_end(repo: VideoRepository) -> None:
    video = await added(repo, kind=VideoKind.LIVE, status=VideoStatus.IDLE)
    assert await repo.chunk_extent(video.id) is None
    await repo.add_chunks([Chunk(video.id, 3, keys.chunk(video.id, 3), 10.0, 2.0, None),
                           # an earlier seq may end later (a longer chunk, a clock jump)
                           Chunk(video.id, 1, keys.chunk(video.id, 1), 9.5, 3.25, None)])
    assert await repo.chunk_extent(video.id) == (3, 12.75)
