"""The live feed's sequencer: in order, exactly once, gaps skipped after a timeout."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chunkcast.adapters.db.migrate import upgrade
from chunkcast.adapters.db.repository import SqlVideoRepository, make_engine
from chunkcast.domain import events, keys
from chunkcast.domain.ids import new_video_id
from chunkcast.domain.videos import Segment, Video, VideoKind, VideoStatus
from chunkcast.services.live import SIGNATURE_SLOT, LiveFeed, with_token
from chunkcast.services.playback import Signer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Collect:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def deliver(self, text: str) -> None:
        self.texts.append(text)


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SqlVideoRepository]:
    url = f"sqlite+aiosqlite:///{tmp_path}/feed.db"
    upgrade(url)
    repository = SqlVideoRepository(make_engine(url))
    yield repository
    await repository.close()


async def _live(repo: SqlVideoRepository) -> str:
    video_id = new_video_id()
    await repo.add_video(Video(video_id, VideoKind.LIVE, "t", VideoStatus.LIVE,
                               datetime.now(UTC)))
    return video_id


def _ready(video_id: str, seq: int) -> events.SegmentReady:
    return events.SegmentReady(video_id, "240p", seq, keys.segment(video_id, "240p", seq),
                               keys.init_segment(video_id, "240p"), 1.4 + seq, 1.0, None,
                               "2026-11-24T10:00:00.000Z")


def _seqs(texts: list[str]) -> list[tuple[str, int]]:
    return [(m["type"], m["seq"]) for m in map(json.loads, texts)]


async def test_out_of_order_segments_are_delivered_in_order_once(
    repo: SqlVideoRepository,
) -> None:
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=Clock())
    video_id = await _live(repo)
    viewer = Collect()
    (await feed.channel(video_id, "240p")).listeners.add(viewer)
    for seq in (1, 0, 3, 2, 2, 0, 4):
        await feed.on_segment(_ready(video_id, seq))
    assert _seqs(viewer.texts) == [("segment", s) for s in range(5)]


async def test_a_missing_seq_becomes_a_gap_after_the_timeout(repo: SqlVideoRepository) -> None:
    clock = Clock()
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=clock)
    video_id = await _live(repo)
    viewer = Collect()
    (await feed.channel(video_id, "240p")).listeners.add(viewer)
    for seq in (0, 2, 3):
        await feed.on_segment(_ready(video_id, seq))
    clock.now += 4.9
    await feed.sweep()
    assert _seqs(viewer.texts) == [("segment", 0)]
    clock.now += 0.2
    await feed.sweep()
    assert _seqs(viewer.texts) == [("segment", 0), ("gap", 1), ("segment", 2), ("segment", 3)]
    await feed.on_segment(_ready(video_id, 1))  # too late: never delivered twice
    assert len(viewer.texts) == 4


async def test_every_viewer_gets_the_same_serialised_message(repo: SqlVideoRepository) -> None:
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5)
    video_id = await _live(repo)
    channel = await feed.channel(video_id, "240p")
    a, b = Collect(), Collect()
    channel.listeners.update({a, b})
    await feed.on_segment(_ready(video_id, 0))
    assert a.texts[0] is b.texts[0]
    assert '"url":"http://cdn/media/media/' in a.texts[0]


async def test_history_replays_since_a_seq_and_starts_at_the_live_edge(
    repo: SqlVideoRepository,
) -> None:
    video_id = await _live(repo)
    await repo.upsert_segments([Segment(video_id, "240p", s, keys.segment(video_id, "240p", s),
                                        float(s), 1.0) for s in range(10)])
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5)
    channel = await feed.channel(video_id, "240p")
    assert [i.seq for i in channel.since(6, 3)] == [7, 8, 9]
    assert [i.seq for i in channel.since(None, 3)] == [7, 8, 9]
    assert [i.seq for i in channel.since(-1, 3)] == list(range(10))
    await feed.on_segment(_ready(video_id, 5))  # already known from the catalogue
    assert len(channel.items) == 10


async def test_when_a_stream_ends_held_segments_are_delivered_past_the_holes(
    repo: SqlVideoRepository,
) -> None:
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=60, clock=Clock())
    video_id = await _live(repo)
    viewer = Collect()
    (await feed.channel(video_id, "240p")).listeners.add(viewer)
    await feed.on_segment(_ready(video_id, 1))
    feed.status_listeners[video_id] = {viewer}
    await feed.on_status(events.VideoStatusChanged(video_id, "ended"))
    assert _seqs(viewer.texts[:-1]) == [("gap", 0), ("segment", 1)]
    assert viewer.texts[-1] == '{"type":"status","status":"ended"}'


async def test_a_segment_whose_event_was_lost_is_taken_from_the_catalogue(
    repo: SqlVideoRepository,
) -> None:
    clock = Clock()
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=clock)
    video_id = await _live(repo)
    viewer = Collect()
    (await feed.channel(video_id, "240p")).listeners.add(viewer)
    await feed.on_segment(_ready(video_id, 0))
    lost = _ready(video_id, 1)  # stored, but its event never reached this process
    await repo.upsert_segments([Segment(video_id, "240p", 1, lost.key, lost.pts_start, 1.0)])
    await feed.on_segment(_ready(video_id, 2))
    clock.now += 6
    await feed.sweep()
    assert _seqs(viewer.texts) == [("segment", 0), ("segment", 1), ("segment", 2)]


async def test_an_upload_s_chunks_finishing_out_of_order_leave_no_gap(
    repo: SqlVideoRepository,
) -> None:
    """The feed follows every video's segments: an upload still processing (its chunks
    transcoded in parallel, the first one last) must not have its first seqs skipped, however
    long they take; once it is ready, a viewer gets every segment."""
    clock = Clock()
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=clock)
    video_id = new_video_id()
    await repo.add_video(Video(video_id, VideoKind.VOD, "t", VideoStatus.PROCESSING,
                               datetime.now(UTC)))
    late = [_ready(video_id, seq) for seq in (2, 3)]
    await repo.upsert_segments([Segment(e.video_id, e.rendition, e.seq, e.key, e.pts_start,
                                        e.duration) for e in late])
    for event in late:  # the second chunk is done first (the channel loads mid-processing)
        await feed.on_segment(event)
    clock.now += 60
    await feed.sweep()
    for seq in (0, 1):
        await feed.on_segment(_ready(video_id, seq))
    await feed.on_status(events.VideoStatusChanged(video_id, VideoStatus.READY.value, None))
    viewer = Collect()
    for item in (await feed.channel(video_id, "240p")).since(-1, 3):
        viewer.deliver(item.text)
    assert _seqs(viewer.texts) == [("segment", s) for s in range(4)]


async def test_a_private_video_s_messages_are_shared_with_a_slot_for_each_viewer_s_token(
    repo: SqlVideoRepository,
) -> None:
    """Serialised once, like a public video's, but with no token in it: a channel loaded long
    ago holds nothing that expires, and each viewer's URLs carry its own token."""
    signer = Signer("p" * 64, 3600)
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, signer=signer)
    video_id = new_video_id()
    await repo.add_video(Video(video_id, VideoKind.LIVE, "t", VideoStatus.LIVE,
                               datetime.now(UTC), private=True))
    viewer = Collect()
    (await feed.channel(video_id, "240p")).listeners.add(viewer)
    await feed.on_segment(_ready(video_id, 0))
    init = feed.init_message(video_id, "240p", "avc1.64000d", 426, 240)
    assert all(SIGNATURE_SLOT in text and "e=" not in text for text in (viewer.texts[0], init))
    query = signer.query(video_id, 1_900_000_200)
    urls = (json.loads(with_token(viewer.texts[0], query))["url"],
            json.loads(with_token(init, query))["init_url"])
    for url in urls:
        assert url.startswith(f"http://cdn/private/media/{video_id}/240p/")
        assert url.endswith(f"?{query}")
