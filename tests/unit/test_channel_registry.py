"""The live feed as a bounded registry of channels: a window of items per channel, older
history from the catalogue, eviction of what nobody needs, a sweep that visits only what is
due, and privacy changes applied at once."""

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from tests.unit.feed_support import (
    Clock,
    Collect,
    add_video,
    change_status,
    publish,
    ready,
    stored,
    watch,
)

from chunkcast.adapters.db.migrate import upgrade
from chunkcast.adapters.db.repository import SqlVideoRepository, make_engine
from chunkcast.domain import events
from chunkcast.domain.errors import NotFound
from chunkcast.domain.videos import Segment, Video, VideoKind, VideoStatus
from chunkcast.services.channels import Channel
from chunkcast.services.live import IDLE_TIMEOUT_S, VIEWERS_INTERVAL_S, LiveFeed
from chunkcast.services.live_messages import SIGNATURE_SLOT

WINDOW = 5


class CountingRepo(SqlVideoRepository):
    """The catalogue, counting the reads the feed makes."""

    video_reads = 0
    segment_reads = 0

    async def get_video(self, video_id: str) -> Video | None:
        self.video_reads += 1
        return await super().get_video(video_id)

    async def segments(self, video_id: str, rendition: str, *, after: int | None = None,
                       before: int | None = None, first: int | None = None,
                       last: int | None = None) -> Sequence[Segment]:
        self.segment_reads += 1
        return await super().segments(video_id, rendition, after=after, before=before,
                                      first=first, last=last)


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[CountingRepo]:
    url = f"sqlite+aiosqlite:///{tmp_path}/registry.db"
    upgrade(url)
    repository = CountingRepo(make_engine(url))
    yield repository
    await repository.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def feed(repo: CountingRepo, clock: Clock) -> LiveFeed:
    return LiveFeed(repo, "http://cdn", gap_timeout_s=5, window_segments=WINDOW, clock=clock)


async def test_a_channel_keeps_a_bounded_window_and_replays_the_rest_from_the_catalogue(
    feed: LiveFeed, repo: CountingRepo,
) -> None:
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(200))
    recent = feed.recent(video_id, "240p")
    assert recent is not None
    assert recent.first == 195 and [s.seq for s in recent.segments] == list(range(195, 200))
    viewer, _ = await watch(feed, video_id, since=-1)
    assert viewer.seqs() == [("segment", s) for s in range(200)]


async def test_an_old_since_replays_across_the_window_boundary_without_loss_or_duplicate(
    feed: LiveFeed, repo: CountingRepo, clock: Clock,
) -> None:
    """Segments keep coming while a viewer catches up: the window moves past what it is
    being sent, again and again; a seq skipped long ago is a gap in the replay too."""
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, [*range(0, 7), *range(8, 20)])
    clock.now += 6
    await feed.sweep()  # seq 7 never came: skipped
    seat = await feed.join(video_id, "240p")
    viewer = Collect()
    replay = seat.catch_up(viewer, 2, 3, signed=False)
    newest = 19
    async for text in replay:
        viewer.texts.append(text)
        if newest < 80:  # two more segments for every message sent: the window (5) moves on
            await publish(feed, repo, video_id, [newest + 1, newest + 2])
            newest += 2
    await publish(feed, repo, video_id, [newest + 1])  # the viewer is live now
    expected = [("gap" if seq == 7 else "segment", seq) for seq in range(3, newest + 2)]
    assert viewer.seqs() == expected


async def test_a_missing_seq_inside_the_window_is_waited_for_then_skipped(
    feed: LiveFeed, repo: CountingRepo, clock: Clock,
) -> None:
    video_id = await add_video(repo)
    viewer, _ = await watch(feed, video_id)
    await publish(feed, repo, video_id, [0, 1, 3, 4])
    clock.now += 6
    await feed.sweep()
    late, _ = await watch(feed, video_id, since=-1)
    assert viewer.seqs() == late.seqs() == [("segment", 0), ("segment", 1), ("gap", 2),
                                            ("segment", 3), ("segment", 4)]


async def test_an_idle_channel_is_evicted_and_a_watched_one_is_kept(
    feed: LiveFeed, repo: CountingRepo, clock: Clock,
) -> None:
    watched, idle = await add_video(repo), await add_video(repo)
    _, seat = await watch(feed, watched)
    await publish(feed, repo, watched, [0])
    await publish(feed, repo, idle, [0])
    clock.now += IDLE_TIMEOUT_S - 1
    await feed.sweep()
    assert feed.recent(idle, "240p") is not None
    clock.now += 2
    await feed.sweep()
    assert feed.recent(idle, "240p") is None
    assert feed.recent(watched, "240p") is not None
    seat.leave()  # nobody holds it: idle from now on
    clock.now += IDLE_TIMEOUT_S
    await feed.sweep()
    assert feed.recent(watched, "240p") is None


async def test_a_live_channel_nobody_watches_stays_while_segments_come(
    feed: LiveFeed, repo: CountingRepo, clock: Clock,
) -> None:
    video_id = await add_video(repo)
    for seq in range(5):
        await publish(feed, repo, video_id, [seq])
        clock.now += IDLE_TIMEOUT_S / 2
        await feed.sweep()
    assert feed.recent(video_id, "240p") is not None


async def test_an_ended_stream_s_channels_go_when_their_last_viewer_leaves(
    feed: LiveFeed, repo: CountingRepo,
) -> None:
    video_id = await add_video(repo)
    _, seat = await watch(feed, video_id, "240p")
    await publish(feed, repo, video_id, [0, 1], "240p")
    await publish(feed, repo, video_id, [0, 1], "360p")
    await change_status(feed, repo, video_id, VideoStatus.ENDED)
    assert feed.recent(video_id, "360p") is None  # nobody held it
    assert feed.recent(video_id, "240p") is not None
    seat.leave()
    assert feed.recent(video_id, "240p") is None
    await feed.on_segment(ready(video_id, 2))  # a late event creates nothing
    assert feed.recent(video_id, "240p") is None


async def test_an_upload_nobody_watches_makes_no_channel_and_costs_one_read(
    feed: LiveFeed, repo: CountingRepo,
) -> None:
    video_id = await add_video(repo, VideoKind.VOD, VideoStatus.PROCESSING)
    reads = repo.video_reads
    for rendition in ("240p", "360p"):
        await publish(feed, repo, video_id, range(20), rendition)
    await change_status(feed, repo, video_id, VideoStatus.READY)
    assert feed.recent(video_id, "240p") is None
    assert repo.video_reads - reads == 1
    viewer, seat = await watch(feed, video_id, since=-1)  # someone watches: now it has one
    assert viewer.seqs() == [("segment", s) for s in range(20)]
    assert viewer.messages("status") == [{"type": "status", "status": "ready"}]
    seat.leave()
    assert feed.recent(video_id, "240p") is None


async def test_an_upload_s_status_spares_even_that_read(
    feed: LiveFeed, repo: CountingRepo,
) -> None:
    video_id = await add_video(repo, VideoKind.VOD, VideoStatus.PROCESSING)
    await feed.on_status(events.VideoStatusChanged(video_id, "processing"))
    reads = repo.video_reads
    await publish(feed, repo, video_id, range(3))
    assert repo.video_reads == reads


async def test_the_sweep_visits_only_channels_waiting_for_a_seq(
    feed: LiveFeed, repo: CountingRepo, clock: Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    streams = [await add_video(repo) for _ in range(30)]
    for video_id in streams:
        await publish(feed, repo, video_id, range(10))
    await publish(feed, repo, streams[0], [11])  # one channel waits for seq 10
    visited: list[Channel] = []
    overdue = Channel.overdue

    def counting(channel: Channel, now: float, timeout: float) -> bool:
        visited.append(channel)
        return overdue(channel, now, timeout)

    monkeypatch.setattr(Channel, "overdue", counting)
    await feed.sweep()
    assert {c.video_id for c in visited} == {streams[0]}
    reads = repo.segment_reads
    clock.now += 6
    visited.clear()
    await feed.sweep()
    assert {c.video_id for c in visited} == {streams[0]}
    assert repo.segment_reads == reads + 1  # looked for seq 10 in the catalogue, once
    visited.clear()
    await feed.sweep()
    assert visited == []


async def test_joining_an_unknown_video_or_rendition_makes_no_channel(
    feed: LiveFeed, repo: CountingRepo,
) -> None:
    video_id = await add_video(repo)
    with pytest.raises(NotFound):
        await feed.join(video_id, "1080p")
    with pytest.raises(NotFound):
        await feed.join("a" * 16, "240p")
    assert feed.recent(video_id, "1080p") is None


async def test_made_private_revokes_viewers_without_a_link_and_signs_what_follows(
    feed: LiveFeed, repo: CountingRepo,
) -> None:
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(3))
    unsigned, _ = await watch(feed, video_id)
    signed, _ = await watch(feed, video_id, signed=True)
    assert SIGNATURE_SLOT not in signed.texts[-1]
    await repo.set_private(video_id, True)
    feed.on_privacy(events.VideoPrivacyChanged(video_id, True))
    assert unsigned.revoked and not signed.revoked
    await publish(feed, repo, video_id, [3])
    assert len(unsigned.seqs()) == 3  # nothing more after it was revoked
    assert SIGNATURE_SLOT in signed.texts[-1] and "/private/" in signed.texts[-1]
    # What is replayed from memory is signed too; a new viewer without a link is refused.
    late_signed, _ = await watch(feed, video_id, since=-1, signed=True)
    assert all(SIGNATURE_SLOT in json.dumps(m) for m in late_signed.messages("segment"))
    refused, _ = await watch(feed, video_id)
    assert refused.revoked
    assert feed.viewers(video_id) == 2


async def test_made_public_again_serves_unsigned_urls(feed: LiveFeed, repo: CountingRepo) -> None:
    video_id = await add_video(repo, private=True)
    await publish(feed, repo, video_id, range(3))
    signed, _ = await watch(feed, video_id, signed=True)
    feed.on_privacy(events.VideoPrivacyChanged(video_id, False))
    await publish(feed, repo, video_id, [3])
    assert "/media/media/" in signed.texts[-1] and SIGNATURE_SLOT not in signed.texts[-1]
    public, seat = await watch(feed, video_id, since=-1)
    assert not public.revoked
    assert all("/media/media/" in m["url"] for m in public.messages("segment"))
    info = await seat.rendition()
    assert info is not None and "/media/media/" in seat.init_message(info)


async def test_made_private_while_catching_up_is_refused_at_the_join(
    feed: LiveFeed, repo: CountingRepo,
) -> None:
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(3))
    seat = await feed.join(video_id, "240p")
    viewer = Collect()
    async for _ in seat.catch_up(viewer, -1, 3, signed=False):
        feed.on_privacy(events.VideoPrivacyChanged(video_id, True))
    assert viewer.revoked and viewer.texts == []
    assert feed.viewers(video_id) == 0


async def test_the_audience_is_announced_at_most_once_per_interval(
    feed: LiveFeed, repo: CountingRepo, clock: Clock,
) -> None:
    video_id = await add_video(repo)
    first, _ = await watch(feed, video_id, "240p")
    _, second = await watch(feed, video_id, "360p")
    _, third = await watch(feed, video_id, "360p")
    third.leave()
    await feed.sweep()
    assert first.messages("viewers") == []
    clock.now += VIEWERS_INTERVAL_S
    await feed.sweep()
    await feed.sweep()
    assert first.messages("viewers") == [{"type": "viewers", "count": 2}]
    assert feed.viewers(video_id) == 2
    second.leave()
    assert feed.viewers(video_id) == 1


async def test_a_channel_is_loaded_once_for_concurrent_joins(
    feed: LiveFeed, repo: CountingRepo,
) -> None:
    import asyncio

    video_id = await add_video(repo)
    await repo.upsert_segments([stored(ready(video_id, s)) for s in range(3)])
    reads = repo.segment_reads
    seats = await asyncio.gather(*(feed.join(video_id, "240p") for _ in range(5)))
    assert repo.segment_reads == reads + 1
    assert len({id(seat.channel) for seat in seats}) == 1


async def test_what_lost_events_would_have_said_is_read_from_the_catalogue(
    feed: LiveFeed, repo: CountingRepo,
) -> None:
    """After the feed's subscriptions were cut off: segments, status and privacy changes
    published meanwhile reach the viewers from the catalogue."""
    video_id = await add_video(repo)
    viewer, _ = await watch(feed, video_id)
    await publish(feed, repo, video_id, [0])
    await repo.upsert_segments([stored(ready(video_id, s)) for s in (1, 2)])  # no events
    await feed.resync(events.SEGMENTS)
    assert viewer.seqs() == [("segment", s) for s in range(3)]
    await repo.set_private(video_id, True)
    await repo.set_status(video_id, VideoStatus.ENDED)
    await feed.resync(events.VIDEOS)
    assert viewer.revoked
    signed, _ = await watch(feed, video_id, since=1, signed=True)
    assert signed.seqs() == [("segment", 2)]
    assert signed.messages("status") == [{"type": "status", "status": "ended"}]
