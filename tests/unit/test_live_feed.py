"""The live feed's sequencer: in order, exactly once, gaps skipped after a timeout."""

import json

from tests.unit.feed_support import Clock, add_video, publish, ready, stored, watch

from chunkcast.adapters.db.repository import SqlVideoRepository
from chunkcast.domain import events
from chunkcast.domain.videos import VideoKind, VideoStatus
from chunkcast.services.live import LiveFeed
from chunkcast.services.live_messages import SIGNATURE_SLOT, with_token


async def test_out_of_order_segments_are_delivered_in_order_once(
    repo: SqlVideoRepository,
) -> None:
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=Clock())
    video_id = await add_video(repo)
    viewer, _ = await watch(feed, video_id)
    await publish(feed, repo, video_id, [1, 0, 3, 2, 2, 0, 4])
    assert viewer.seqs() == [("segment", s) for s in range(5)]


async def test_a_missing_seq_becomes_a_gap_after_the_timeout(repo: SqlVideoRepository) -> None:
    clock = Clock()
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=clock)
    video_id = await add_video(repo)
    viewer, _ = await watch(feed, video_id)
    await publish(feed, repo, video_id, [0, 2, 3])
    clock.now += 4.9
    await feed.sweep()
    assert viewer.seqs() == [("segment", 0)]
    clock.now += 0.2
    await feed.sweep()
    assert viewer.seqs() == [("segment", 0), ("gap", 1), ("segment", 2), ("segment", 3)]
    await feed.on_segment(ready(video_id, 1))  # too late: never delivered twice
    assert len(viewer.seqs()) == 4


async def test_every_viewer_gets_the_same_serialised_message(repo: SqlVideoRepository) -> None:
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5)
    video_id = await add_video(repo)
    (a, _), (b, _) = await watch(feed, video_id), await watch(feed, video_id)
    await publish(feed, repo, video_id, [0])
    assert a.texts[-1] is b.texts[-1]
    assert '"url":"http://cdn/media/media/' in a.texts[-1]


async def test_history_replays_since_a_seq_and_starts_at_the_live_edge(
    repo: SqlVideoRepository,
) -> None:
    video_id = await add_video(repo)
    await repo.upsert_segments([stored(ready(video_id, s)) for s in range(10)])
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5)
    assert (await watch(feed, video_id, since=6))[0].seqs() == [("segment", s) for s in (7, 8, 9)]
    assert (await watch(feed, video_id))[0].seqs() == [("segment", s) for s in (7, 8, 9)]
    everything, _ = await watch(feed, video_id, since=-1)
    assert everything.seqs() == [("segment", s) for s in range(10)]
    await feed.on_segment(ready(video_id, 5))  # already known from the catalogue
    assert len(everything.seqs()) == 10


async def test_when_a_stream_ends_held_segments_are_delivered_past_the_holes(
    repo: SqlVideoRepository,
) -> None:
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=60, clock=Clock())
    video_id = await add_video(repo)
    viewer, _ = await watch(feed, video_id)
    await publish(feed, repo, video_id, [1])
    await feed.on_status(events.VideoStatusChanged(video_id, "ended"))
    assert viewer.seqs() == [("gap", 0), ("segment", 1)]
    assert viewer.texts[-1] == '{"type":"status","status":"ended"}'


async def test_a_segment_whose_event_was_lost_is_taken_from_the_catalogue(
    repo: SqlVideoRepository,
) -> None:
    clock = Clock()
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=clock)
    video_id = await add_video(repo)
    viewer, _ = await watch(feed, video_id)
    await publish(feed, repo, video_id, [0])
    await repo.upsert_segments([stored(ready(video_id, 1))])  # its event never came
    await publish(feed, repo, video_id, [2])
    clock.now += 6
    await feed.sweep()
    assert viewer.seqs() == [("segment", 0), ("segment", 1), ("segment", 2)]


async def test_an_upload_s_chunks_finishing_out_of_order_leave_no_gap(
    repo: SqlVideoRepository,
) -> None:
    """A viewer watching an upload still processing (its chunks transcoded in parallel, the
    first one last) never has its first seqs skipped, however long they take; once it is
    ready, the viewer has every segment."""
    clock = Clock()
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=clock)
    video_id = await add_video(repo, VideoKind.VOD, VideoStatus.PROCESSING)
    await repo.upsert_segments([stored(ready(video_id, seq)) for seq in (2, 3)])
    viewer, _ = await watch(feed, video_id, since=-1)  # joins mid-processing
    clock.now += 60
    await feed.sweep()
    await publish(feed, repo, video_id, [0, 1])
    await feed.on_status(events.VideoStatusChanged(video_id, VideoStatus.READY.value, None))
    assert viewer.seqs() == [("segment", s) for s in range(4)]
    again, _ = await watch(feed, video_id, since=-1)
    assert again.seqs() == [("segment", s) for s in range(4)]


async def test_a_private_video_s_messages_are_shared_with_a_slot_for_each_viewer_s_token(
    repo: SqlVideoRepository,
) -> None:
    """Serialised once, like a public video's, but with no token in it: a channel loaded long
    ago holds nothing that expires, and each viewer's URLs carry its own token."""
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5)
    video_id = await add_video(repo, private=True)
    viewer, seat = await watch(feed, video_id, signed=True)
    await publish(feed, repo, video_id, [0])
    info = await seat.rendition()
    assert info is not None
    init = seat.init_message(info)
    assert all(SIGNATURE_SLOT in text and "e=" not in text for text in (viewer.texts[-1], init))
    query = "e=1900000200&st=abc"
    urls = (json.loads(with_token(viewer.texts[-1], query))["url"],
            json.loads(with_token(init, query))["init_url"])
    for url in urls:
        assert url.startswith(f"http://cdn/private/media/{video_id}/240p/")
        assert url.endswith(f"?{query}")
