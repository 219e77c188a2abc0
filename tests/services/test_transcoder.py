"""The transcoder: a chunk's segments are stored, recorded and announced; failures fail an
upload but only leave a gap in a stream; the last chunk makes the video ready."""

import asyncio
from contextlib import AbstractAsyncContextManager

import pytest

from chunkcast.domain import events, keys
from chunkcast.domain.videos import Segment, Video, VideoStatus
from chunkcast.media.inputs import MediaInput
from chunkcast.ports.media import ChunkWindow
from chunkcast.worker.consumer import CRASHED, GiveUp, RetryBudget
from tests.fakes import VIDEO_CODECS, fake_chunk, fake_media, fake_parts

from .conftest import WorldFactory
from .faulty import FAST, FaultyBus, settled, working
from .world import SPLIT, World


async def _split(world: World, media: bytes) -> tuple[Video, list[events.ChunkUploaded]]:
    """An upload, split: its chunk events, not transcoded yet."""
    video = await world.upload(media=media)
    await world.work(groups=())
    chunks = [e for e in await world.published(events.VOD_CHUNKS)
              if isinstance(e, events.ChunkUploaded)]
    await world.statuses()
    return video, chunks


async def _keys(world: World, video_id: str) -> list[str]:
    root = world.store.root / keys.media_prefix(video_id)
    return sorted(p.relative_to(world.store.root).as_posix() for p in root.rglob("*")
                  if p.is_file())


async def test_a_vod_chunk_becomes_stored_recorded_and_announced_segments(
    world: World,
) -> None:
    video, chunks = await _split(world, fake_media(duration=10.0, width=640, height=360))
    await world.transcoders["all"].handle(chunks[1])  # 4 s to 8 s: segments 2 and 3
    for rendition in ("240p", "360p"):
        assert await world.repo.segments(video.id, rendition) == [
            Segment(video.id, rendition, 2, keys.segment(video.id, rendition, 2), 4.0, 2.0),
            Segment(video.id, rendition, 3, keys.segment(video.id, rendition, 3), 6.0, 2.0)]
    assert await _keys(world, video.id) == sorted(
        [keys.init_segment(video.id, r) for r in ("240p", "360p")]
        + [keys.segment(video.id, r, s) for r in ("240p", "360p") for s in (2, 3)])
    stored = await world.store.read_bytes(keys.segment(video.id, "360p", 3))
    assert stored == b"fake 360p 3 2.0"
    assert [i.codecs for i in await world.repo.renditions(video.id)] == [
        f"{VIDEO_CODECS},mp4a.40.2"] * 2
    announced = await world.published(events.SEGMENTS)
    assert [(e.rendition, e.seq, e.key, e.init_key, e.pts_start, e.duration)
            for e in announced if isinstance(e, events.SegmentReady)] == [
        (r, s, keys.segment(video.id, r, s), keys.init_segment(video.id, r), 2.0 * s, 2.0)
        for r in ("240p", "360p") for s in (2, 3)]
    assert await world.repo.jobs_done(video.id) == 1
    progress = await world.videos.progress(await world.videos.get(video.id))
    assert progress == 33
    assert not any((world.root / "work").iterdir())  # the encoder's files are gone


async def test_the_encoder_reads_the_chunk_as_its_container_with_a_time_limit(
    world: World,
) -> None:
    video, _ = await _split(world, fake_media(duration=6.0, container="matroska"))
    await world.work()
    source = MediaInput(str(world.store.path(keys.source(video.id))), "matroska")
    assert [(c.source, c.kind, c.window, c.first_seq, c.has_audio, c.copy_audio, c.timeout_s)
            for c in world.encoder.calls] == [
        (source, "vod", ChunkWindow(0.0, 4.0), 0, True, False, 60.0 + 20.0 * 4),
        (source, "vod", ChunkWindow(4.0, 2.0), 2, True, False, 60.0 + 20.0 * 2)]


async def test_an_old_event_without_a_container_has_its_source_probed_again(
    world: World,
) -> None:
    video, chunks = await _split(world, fake_media(duration=4.0, container="avi"))
    world.prober.probed.clear()
    await world.transcoders["all"].handle(events.ChunkUploaded(
        video.id, "vod", 0, chunks[0].key, 0.0, 4.0))
    assert [kind for kind, _ in world.prober.probed] == ["source"]
    assert world.encoder.calls[0].source.format == "avi"
    assert (await world.videos.get(video.id)).status is VideoStatus.READY


async def test_a_redelivered_chunk_changes_nothing(world: World) -> None:
    video, chunks = await _split(world, fake_media(duration=8.0))
    await world.transcoders["all"].handle(chunks[0])
    before = await world.repo.segments(video.id, "240p")
    await world.transcoders["all"].handle(chunks[0])
    assert await world.repo.segments(video.id, "240p") == before
    assert await world.repo.jobs_done(video.id) == 1
    assert (await world.videos.get(video.id)).status is VideoStatus.PROCESSING


async def test_the_last_chunk_makes_the_video_ready_with_static_playlists(
    world: World,
) -> None:
    video, chunks = await _split(world, fake_media(duration=9.0))
    for chunk in reversed(chunks):  # workers finish in any order
        assert (await world.videos.get(video.id)).status is VideoStatus.PROCESSING
        await world.transcoders["all"].handle(chunk)
    assert (await world.videos.get(video.id)).status is VideoStatus.READY
    assert await world.statuses() == [(video.id, "ready", None)]
    master = (await world.store.read_bytes(keys.master_playlist(video.id))).decode()
    assert "240p/index.m3u8" in master and "360p/index.m3u8" in master
    media = (await world.store.read_bytes(keys.media_playlist(video.id, "240p"))).decode()
    assert '#EXT-X-MAP:URI="init.mp4"' in media and media.rstrip().endswith("#EXT-X-ENDLIST")
    assert [line for line in media.splitlines() if not line.startswith("#")] == [
        f"{seq:08d}.m4s" for seq in range(5)]
    assert "#EXTINF:1.000" in media  # the last segment is the 1 s left over
    # Once ready, a redelivered chunk is ignored.
    calls = len(world.encoder.calls)
    await world.transcoders["all"].handle(chunks[0])
    assert len(world.encoder.calls) == calls


async def test_each_rendition_group_encodes_its_own_rungs(make_world: WorldFactory) -> None:
    world = await make_world(groups=SPLIT)
    video, _ = await _split(world, fake_media(duration=4.0, width=1280, height=720))
    await world.work(groups=("lo",))
    assert (await world.videos.get(video.id)).status is VideoStatus.PROCESSING
    await world.work(groups=("hi",))
    assert (await world.videos.get(video.id)).status is VideoStatus.READY
    assert sorted(c.renditions for c in world.encoder.calls) == [
        ("240p", "360p", "480p"), ("720p",)]


async def test_a_failing_chunk_fails_the_upload_with_a_public_reason(world: World) -> None:
    video, _ = await _split(world, fake_media(duration=12.0))
    world.encoder.fail_first_seqs.add(2)  # the chunk at 4 s
    await world.work()
    failed = await world.videos.get(video.id)
    assert failed.status is VideoStatus.FAILED
    assert failed.error == ("chunk 1: ffmpeg failed: the media could not be decoded or "
                            "encoded (exit code 1)")
    assert await world.statuses() == [(video.id, "failed", failed.error)]
    assert await world.store.stat(keys.source(video.id)) is not None  # the source is kept


async def test_a_source_that_ends_early_fails_at_the_chunk_where_it_ends(
    world: World,
) -> None:
    # Within what the probe tolerates, but the last chunk comes out short.
    video, _ = await _split(world, fake_media(duration=12.0, pictures_end=10.5))
    await world.work()
    assert (await world.videos.get(video.id)).error == (
        "chunk 2: the source ends at 10.5 s although it should last until 12.0 s "
        "(truncated or damaged)")


async def test_an_upload_is_failed_only_when_its_chunk_fails_twice(world: World) -> None:
    """ffmpeg reading from storage that went away and came back fails like bad media: the
    chunk is tried once more, storage answering, before the upload is blamed."""
    world.encoder.fail_once_first_seqs = {0}
    once, _ = await _split(world, fake_media(duration=12.0))
    await world.work()
    assert (await world.videos.get(once.id)).status is VideoStatus.READY
    assert [c.first_seq for c in world.encoder.calls].count(0) == 2

    world.encoder.fail_first_seqs = {0}
    twice, _ = await _split(world, fake_media(duration=12.0))
    await world.work()
    failed = await world.videos.get(twice.id)
    assert failed.status is VideoStatus.FAILED and failed.error is not None
    assert failed.error.startswith("chunk 0:")


async def _stream(world: World) -> tuple[Video, str]:
    stream, key = await world.streams.create("live")
    return stream, key


async def _push(world: World, stream: Video, key: str, seq: int, data: bytes,
                duration: float = 2.0) -> None:
    await world.store.put_bytes(keys.chunk(stream.id, seq), data)
    await world.streams.complete_chunk(stream.id, key, seq, duration=duration,
                                       pts_start=1.0 + duration * seq,
                                       captured_at=f"2026-11-24T10:00:0{seq}Z")


async def test_a_live_chunk_becomes_one_segment_per_rendition_numbered_like_it(
    world: World,
) -> None:
    stream, key = await _stream(world)
    await _push(world, stream, key, 0, fake_chunk(2.0, width=854, height=480))
    await world.work()
    assert [kind for kind, _ in world.prober.probed] == ["live"]  # the ladder comes from it
    assert [i.rendition.name for i in await world.repo.renditions(stream.id)] == [
        "240p", "360p", "480p"]
    (call,) = world.encoder.calls
    assert (call.kind, call.first_seq, call.copy_audio, call.source.format) == (
        "live", 0, True, "mpegts")
    assert await world.repo.segments(stream.id, "480p") == [
        Segment(stream.id, "480p", 0, keys.segment(stream.id, "480p", 0), 1.0, 2.0,
                "2026-11-24T10:00:00.000Z")]
    assert len(await world.published(events.SEGMENTS)) == 3
    assert (await world.streams.get(stream.id)).status is VideoStatus.LIVE


async def test_a_live_segment_is_announced_with_its_parts(world: World) -> None:
    stream, key = await _stream(world)
    await _push(world, stream, key, 0, fake_chunk(1.0), duration=1.0)
    await world.work()
    ready = [e for e in await world.published(events.SEGMENTS)
             if isinstance(e, events.SegmentReady) and e.rendition == "360p"]
    (segment,) = ready
    stored = await world.store.read_bytes(segment.key)
    # As the encoder cut it: parts of at most the part length, covering the stored object.
    assert segment.parts == fake_parts(len(stored), 1.0, world.encoder.part_seconds)
    assert [p.independent for p in segment.parts] == [True, False, False]
    assert sum(p.length for p in segment.parts) == len(stored)
    assert sum(p.duration for p in segment.parts) == pytest.approx(segment.duration)


async def test_a_vod_segment_has_no_parts(world: World) -> None:
    _, chunks = await _split(world, fake_media(duration=4.0))
    await world.transcoders["all"].handle(chunks[0])
    assert [e.parts for e in await world.published(events.SEGMENTS)
            if isinstance(e, events.SegmentReady)] == [()] * 4


async def test_a_failing_live_chunk_is_a_gap_and_the_stream_goes_on(world: World) -> None:
    stream, key = await _stream(world)
    world.encoder.fail_first_seqs.add(1)
    await _push(world, stream, key, 0, fake_chunk())
    await _push(world, stream, key, 1, fake_chunk())
    await _push(world, stream, key, 2, b"not a chunk at all")  # refused by the encoder too
    await _push(world, stream, key, 3, fake_media(container="mov"))  # not MPEG-TS
    await _push(world, stream, key, 4, fake_chunk())
    await world.work()
    assert [s.seq for s in await world.repo.segments(stream.id, "240p")] == [0, 4]
    announced = [(e.rendition, e.seq) for e in await world.published(events.SEGMENTS)
                 if isinstance(e, events.SegmentReady)]
    assert announced == [("240p", 0), ("360p", 0), ("240p", 4), ("360p", 4)]
    assert await world.repo.jobs_done(stream.id) == 5  # a gap is a finished job
    assert (await world.streams.get(stream.id)).status is VideoStatus.LIVE
    assert (await world.streams.get(stream.id)).error is None


async def test_an_ended_stream_is_announced_once_its_last_chunk_is_done(
    world: World,
) -> None:
    stream, key = await _stream(world)
    await _push(world, stream, key, 0, fake_chunk())
    await world.work()  # the first chunk decides the ladder
    for seq in (1, 2):
        await _push(world, stream, key, seq, fake_chunk())
    await world.streams.end(stream.id)
    assert await world.statuses() == [(stream.id, "live", None)]  # not "ended" yet
    await world.work()
    assert await world.statuses() == [(stream.id, "ended", None)]
    media = (await world.store.read_bytes(keys.media_playlist(stream.id, "240p"))).decode()
    assert "#EXT-X-ENDLIST" in media and media.count("#EXTINF:") == 3
    # Its length is its replay's (three 2 s chunks), not the 0 of a stream still live.
    assert (await world.streams.get(stream.id)).duration == pytest.approx(6.0, abs=0.01)


@pytest.mark.parametrize("data", [b"garbage", fake_media(container="mov")])
async def test_a_refused_first_live_chunk_is_a_gap_and_the_next_plans(world: World,
                                                                    data: bytes) -> None:
    """The first chunk decides the ladder; one that cannot be read as MPEG-TS plans nothing
    and is a gap like any bad live chunk (the stream is not failed); the next one plans."""
    stream, key = await _stream(world)
    transcoder = world.transcoders["all"]
    await _push(world, stream, key, 0, data)
    await _push(world, stream, key, 1, fake_chunk())
    first, second = [e for e in await world.published(events.CHUNKS)
                     if isinstance(e, events.ChunkUploaded)]
    await transcoder.handle(first)
    assert await world.repo.renditions(stream.id) == []
    video = await world.repo.get_video(stream.id)
    assert video is not None and video.status.value == "live"
    await transcoder.handle(second)
    assert [s.seq for s in await world.repo.segments(stream.id, "240p")] == [1]
    assert await world.repo.jobs_done(stream.id) == 2


# -- dependency trouble: retried while the chunk is worth it, never blamed on the media ---

def _transcoding(world: World, bus: FaultyBus, *, budget: RetryBudget = FAST,
                 give_up: GiveUp | None = None, topic: str = events.CHUNKS
                 ) -> AbstractAsyncContextManager[object]:
    """The "all" group's worker of ``topic`` (live chunks by default), through ``bus``."""
    transcoder = world.transcoders["all"]
    return working(bus, topic, "all", transcoder.handle,
                   give_up or transcoder.give_up, metrics=world.metrics, budget=budget)


def _counted(world: World, name: str, **labels: str) -> float:
    return world.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_live_chunk_outlasts_a_storage_outage_and_nothing_is_lost(
    world: World,
) -> None:
    stream, key = await _stream(world)
    await _push(world, stream, key, 0, fake_chunk())
    storage = world.outages.storage
    storage.begin()
    bus = FaultyBus(world.bus)
    async with _transcoding(world, bus):
        await storage.refusals(3)  # three tries, each blamed on storage, not on the chunk
        storage.end()
        _, error = await settled(bus)
    assert error is None
    # The probe failed on the unreachable chunk (a MediaError): that was retried too.
    assert any(url.endswith(".unreachable") for _, url in world.prober.probed)
    assert [s.seq for s in await world.repo.segments(stream.id, "240p")] == [0]
    assert await world.repo.jobs_done(stream.id) == 1
    video = await world.streams.get(stream.id)
    assert (video.status, video.error) == (VideoStatus.LIVE, None)
    assert _counted(world, "chunkcast_retries_total", operation="chunks.handle") >= 3
    assert _counted(world, "chunkcast_retry_budget_exhausted_total", kind="live") == 0


async def test_a_segment_write_that_fails_for_a_while_is_retried(world: World) -> None:
    stream, key = await _stream(world)
    await _push(world, stream, key, 0, fake_chunk())
    await world.work()
    await _push(world, stream, key, 1, fake_chunk())
    world.outages.storage.begin(after_calls=1)  # down after the first segment is written
    bus = FaultyBus(world.bus)
    async with _transcoding(world, bus):
        await world.outages.storage.refusals(2)
        world.outages.storage.end()
        _, error = await settled(bus)
    assert error is None
    assert [s.seq for s in await world.repo.segments(stream.id, "360p")] == [0, 1]
    assert await world.store.read_bytes(keys.segment(stream.id, "360p", 1)) == (
        b"fake 360p 1 2.0")


async def test_a_live_chunk_past_its_budget_is_a_gap_and_the_stream_can_end(
    world: World,
) -> None:
    stream, key = await _stream(world)
    await _push(world, stream, key, 0, fake_chunk())
    await world.work()
    await _push(world, stream, key, 1, fake_chunk())
    world.outages.storage.begin()
    bus = FaultyBus(world.bus)
    async with _transcoding(world, bus, budget=RetryBudget(live_s=0.2, first_delay_s=0.01)):
        delivery, error = await settled(bus)
    assert delivery.event.seq == 1  # type: ignore[union-attr]
    assert error == "storage was unreachable for 1 second"
    assert await world.repo.jobs_done(stream.id) == 2  # the gap is a finished job
    assert [s.seq for s in await world.repo.segments(stream.id, "240p")] == [0]
    video = await world.streams.get(stream.id)
    assert (video.status, video.error) == (VideoStatus.LIVE, None)
    assert _counted(world, "chunkcast_retry_budget_exhausted_total", kind="live") == 1

    world.outages.storage.end()  # storage is back: the stream goes on, then ends
    await _push(world, stream, key, 2, fake_chunk())
    await world.streams.end(stream.id)
    await world.work()
    assert (await world.streams.get(stream.id)).status is VideoStatus.ENDED
    media = (await world.store.read_bytes(keys.media_playlist(stream.id, "240p"))).decode()
    assert "#EXT-X-GAP" in media and media.rstrip().endswith("#EXT-X-ENDLIST")


async def test_a_gap_is_not_acked_while_the_catalogue_cannot_record_it(world: World) -> None:
    stream, key = await _stream(world)
    await _push(world, stream, key, 0, fake_chunk())
    await world.work()
    await _push(world, stream, key, 1, fake_chunk())
    catalogue = world.outages.catalogue
    catalogue.begin()  # everything is down: the chunk, then its gap, cannot be recorded
    world.outages.storage.begin()
    bus = FaultyBus(world.bus)
    asked = asyncio.Event()

    async def give_up(event: events.ChunkUploaded, reason: str) -> None:
        asked.set()
        await world.transcoders["all"].give_up(event, reason)

    async with _transcoding(world, bus, budget=RetryBudget(live_s=0.2, first_delay_s=0.01),
                            give_up=give_up):
        await asyncio.wait_for(asked.wait(), 5.0)
        await catalogue.refusals(catalogue.refused + 3)
        assert bus.settled.empty()
        assert await world.bus.backlog(events.CHUNKS, "all") == 1
        catalogue.end()
        _, error = await settled(bus)
    assert error == "the catalogue was unreachable for 1 second"
    assert await world.repo.jobs_done(stream.id) == 2
    assert (await world.streams.get(stream.id)).status is VideoStatus.LIVE


async def test_an_upload_chunk_past_its_budget_fails_the_upload_plainly(
    world: World,
) -> None:
    video, _ = await _split(world, fake_media(duration=4.0))
    world.outages.storage.begin()
    bus = FaultyBus(world.bus)
    async with _transcoding(world, bus, budget=RetryBudget(vod_s=0.2, first_delay_s=0.01),
                            topic=events.VOD_CHUNKS):
        await settled(bus)
    failed = await world.videos.get(video.id)
    assert failed.status is VideoStatus.FAILED
    assert failed.error == "chunk 0: storage was unreachable for 1 second"
    assert await world.statuses() == [(video.id, "failed", failed.error)]
    assert _counted(world, "chunkcast_retry_budget_exhausted_total", kind="vod") == 1


async def test_a_chunk_that_kept_crashing_its_worker_is_a_gap_live_and_fails_an_upload(
    world: World,
) -> None:
    stream, key = await _stream(world)
    await _push(world, stream, key, 0, fake_chunk())
    await world.work()
    await world.published(events.CHUNKS)
    await _push(world, stream, key, 1, fake_chunk())
    (live,) = await world.published(events.CHUNKS)
    assert isinstance(live, events.ChunkUploaded)
    video, chunks = await _split(world, fake_media(duration=4.0))
    transcoder = world.transcoders["all"]

    await transcoder.give_up(live, CRASHED)
    await transcoder.give_up(chunks[0], CRASHED)

    assert await world.repo.jobs_done(stream.id) == 2
    assert (await world.streams.get(stream.id)).status is VideoStatus.LIVE
    assert (await world.videos.get(video.id)).error == f"chunk 0: {CRASHED}"
