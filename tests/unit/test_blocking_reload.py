"""Blocking playlist reload (RFC 8216bis 6.2.5.2) served from the live feed: a request for
a segment or part that does not exist yet is answered the moment it does."""

import asyncio
from pathlib import Path

import m3u8
import pytest
from tests.unit.feed_support import Clock, add_video, change_status, publish, ready, stored

from chunkcast.adapters.db.repository import SqlVideoRepository
from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.domain import events
from chunkcast.domain.errors import BadRequest, NotYet
from chunkcast.domain.videos import Part, VideoKind, VideoStatus
from chunkcast.services import playback as playback_module
from chunkcast.services.live import LiveFeed
from chunkcast.services.playback import Blocking, Playback, Signer

PARTS = (Part(0, 100, 0.333, True), Part(100, 100, 0.333, False), Part(200, 100, 0.334, False))


@pytest.fixture
def feed(repo: SqlVideoRepository) -> LiveFeed:
    return LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=Clock())


@pytest.fixture
def playback(repo: SqlVideoRepository, tmp_path: Path) -> Playback:
    store = LocalObjectStore(tmp_path / "media", b"s" * 32, "http://api")
    return Playback(repo, store, Signer("p" * 64, 3600), "http://cdn", "http://api", 2)


async def publish_with_parts(feed: LiveFeed, repo: SqlVideoRepository, video_id: str,
                             seq: int, rendition: str = "240p") -> None:
    event = events.SegmentReady(**{**ready(video_id, seq, rendition).__dict__,
                                   "parts": PARTS})
    await repo.upsert_segments([stored(event)])
    await feed.on_segment(event)


async def ask(playback: Playback, feed: LiveFeed, video_id: str, block: Blocking | None,
              *, rendition: str = "240p", skip: bool = False) -> m3u8.M3U8:
    playlist = await playback.serve_media(video_id, rendition, live=feed, block=block,
                                          skip=skip)
    return m3u8.loads(playlist.text)


def last_msn(playlist: m3u8.M3U8) -> int:
    return int(playlist.media_sequence) + len(playlist.segments) - 1


async def test_the_next_segment_is_answered_the_moment_it_exists(
        repo: SqlVideoRepository, feed: LiveFeed, playback: Playback) -> None:
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(3))  # Media Sequence Numbers 1 to 3
    now = await ask(playback, feed, video_id, None)
    assert (now.media_sequence, last_msn(now)) == (1, 3)
    waiting = asyncio.create_task(ask(playback, feed, video_id, Blocking(4)))
    await asyncio.sleep(0.05)  # the request is held, not answered with what exists
    assert not waiting.done()
    await publish(feed, repo, video_id, [3])
    answered = await asyncio.wait_for(waiting, 1)
    assert last_msn(answered) == 4


async def test_a_part_that_exists_is_answered_at_once(
        repo: SqlVideoRepository, feed: LiveFeed, playback: Playback) -> None:
    video_id = await add_video(repo)
    for seq in range(3):
        await publish_with_parts(feed, repo, video_id, seq)
    answered = await asyncio.wait_for(ask(playback, feed, video_id, Blocking(3, 2)), 0.5)
    assert len(answered.segments[-1].parts) == 3
    # The part after the last of segment 3 is part 0 of segment 4: held until it exists.
    waiting = asyncio.create_task(ask(playback, feed, video_id, Blocking(4, 0)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await publish_with_parts(feed, repo, video_id, 3)
    assert last_msn(await asyncio.wait_for(waiting, 1)) == 4


async def test_safari_asks_for_a_segment_without_a_part(
        repo: SqlVideoRepository, feed: LiveFeed, playback: Playback) -> None:
    """Safari sends ``_HLS_msn`` alone: treated as part 0 of that segment."""
    video_id = await add_video(repo)
    for seq in range(2):
        await publish_with_parts(feed, repo, video_id, seq)
    waiting = asyncio.create_task(ask(playback, feed, video_id, Blocking(3)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await publish_with_parts(feed, repo, video_id, 2)
    answered = await asyncio.wait_for(waiting, 1)
    assert last_msn(answered) == 3 and answered.segments[-1].parts[0].independent == "YES"


async def test_a_request_too_far_ahead_is_refused_at_once(
        repo: SqlVideoRepository, feed: LiveFeed, playback: Playback) -> None:
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(3))
    with pytest.raises(BadRequest):
        await asyncio.wait_for(ask(playback, feed, video_id, Blocking(6)), 0.5)


async def test_nothing_comes_within_three_target_durations(
        repo: SqlVideoRepository, feed: LiveFeed, playback: Playback,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(playback_module, "BLOCK_TARGETS", 0.2)  # 0.2 s instead of 3 s
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(3))
    started = asyncio.get_running_loop().time()
    with pytest.raises(NotYet):
        await ask(playback, feed, video_id, Blocking(5))
    assert 0.19 <= asyncio.get_running_loop().time() - started < 1


async def test_a_stream_that_ends_answers_its_waiting_requests(
        repo: SqlVideoRepository, feed: LiveFeed, playback: Playback) -> None:
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(3))
    waiting = asyncio.create_task(ask(playback, feed, video_id, Blocking(4)))
    await asyncio.sleep(0.05)
    await change_status(feed, repo, video_id, VideoStatus.ENDED)
    answered = await asyncio.wait_for(waiting, 1)
    assert answered.is_endlist and last_msn(answered) == 3


async def test_past_segments_and_finished_videos_never_block(
        repo: SqlVideoRepository, feed: LiveFeed, playback: Playback) -> None:
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(3))
    await asyncio.wait_for(ask(playback, feed, video_id, Blocking(1, 0)), 0.5)
    upload = await add_video(repo, VideoKind.VOD, VideoStatus.READY)
    await repo.upsert_segments([stored(ready(upload, 0))])
    answered = await asyncio.wait_for(ask(playback, feed, upload, Blocking(50)), 0.5)
    assert answered.is_endlist


async def test_reports_name_the_other_rendition_where_it_stands(
        repo: SqlVideoRepository, feed: LiveFeed, playback: Playback) -> None:
    video_id = await add_video(repo)
    for seq in range(3):
        await publish_with_parts(feed, repo, video_id, seq, "240p")
    for seq in range(2):
        await publish_with_parts(feed, repo, video_id, seq, "360p")
    answered = await ask(playback, feed, video_id, None)
    assert [(r.uri, r.last_msn, r.last_part) for r in answered.rendition_reports] == [
        ("../360p/index.m3u8", 2, 2)]
    hint = answered.preload_hint
    assert hint.hint_type == "PART" and hint.uri.endswith("/240p/00000003.m4s")
    assert hint.byterange_start == 0


async def test_a_playlist_without_directives_is_never_older_than_a_quarter_second(
        repo: SqlVideoRepository, playback: Playback) -> None:
    """A player starts from the newest segment of the first playlist it gets as if it had
    just arrived: a stale one would keep it that much further behind for good."""
    clock = Clock()
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=clock)
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(3))
    clock.now += playback_module.FRESH_S  # just fresh enough: answered at once
    assert last_msn(await asyncio.wait_for(ask(playback, feed, video_id, None), 0.5)) == 3
    clock.now += 0.5  # the newest segment is 0.75 s old: the next one is waited for
    waiting = asyncio.create_task(ask(playback, feed, video_id, None))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await publish(feed, repo, video_id, [3])
    assert last_msn(await asyncio.wait_for(waiting, 1)) == 4
    # DVR playlists (the whole stream so far) are not held.
    clock.now += 0.5
    dvr = await asyncio.wait_for(playback.serve_media(video_id, "240p", dvr=True, live=feed),
                                 0.5)
    assert last_msn(m3u8.loads(dvr.text)) == 4


async def test_a_stale_playlist_is_answered_as_it_is_when_nothing_comes(
        repo: SqlVideoRepository, playback: Playback) -> None:
    clock = Clock()
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=clock)
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(3))
    clock.now += 10
    started = asyncio.get_running_loop().time()
    assert last_msn(await asyncio.wait_for(ask(playback, feed, video_id, None), 3)) == 3
    # A target duration and a half (1 s segments), not the three of a blocking request.
    assert 1.4 < asyncio.get_running_loop().time() - started < 2.5
