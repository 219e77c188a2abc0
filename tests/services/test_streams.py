"""Live streams: stream keys, the seq window, chunk checks, the end of a broadcast."""

from datetime import UTC, datetime, timedelta

import pytest

from chunkcast.domain import events, keys
from chunkcast.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooLarge,
    Unauthorized,
)
from chunkcast.domain.videos import Video, VideoKind, VideoStatus
from tests.fakes import fake_chunk

from .world import API, World


async def _chunk(world: World, stream: Video, key: str, seq: int, data: bytes | None = None,
                 *, duration: float = 2.0, captured_at: str | None = None) -> bool:
    """The broadcaster's PUT of chunk ``seq``, then its report."""
    await world.store.put_bytes(keys.chunk(stream.id, seq),
                                fake_chunk() if data is None else data)
    return await world.streams.complete_chunk(stream.id, key, seq, duration=duration,
                                              pts_start=2.0 * seq, captured_at=captured_at)


async def test_only_the_stream_key_shown_at_creation_or_rotation_is_accepted(
    world: World,
) -> None:
    stream, key = await world.streams.create("Match")
    assert stream.kind is VideoKind.LIVE and stream.status is VideoStatus.IDLE
    assert key not in (stream.stream_key_digest or "")  # only its digest is kept
    assert (await world.streams.authenticate(stream.id, key)).id == stream.id
    with pytest.raises(Unauthorized):
        await world.streams.authenticate(stream.id, None)
    with pytest.raises(Forbidden):
        await world.streams.authenticate(stream.id, key[:-1] + ("a" if key[-1] != "a" else "b"))
    new_key = await world.streams.rotate_key(stream.id)
    assert new_key != key
    with pytest.raises(Forbidden):
        await world.streams.chunk_upload(stream.id, key, 0)
    upload = await world.streams.chunk_upload(stream.id, new_key, 0)
    assert upload.method == "PUT"
    assert upload.url.startswith(f"{API}/media/{keys.chunk(stream.id, 0)}?")


async def test_a_video_is_not_a_stream(world: World) -> None:
    video, _ = await world.videos.create("upload")
    with pytest.raises(NotFound):
        await world.streams.get(video.id)


async def test_chunk_seqs_must_stay_within_the_window_of_the_last_one(world: World) -> None:
    window = world.limits.seq_window
    stream, key = await world.streams.create("Match")
    with pytest.raises(InvalidInput, match="out of range"):
        await world.streams.chunk_upload(stream.id, key, window + 1)
    await world.streams.chunk_upload(stream.id, key, window)
    assert await _chunk(world, stream, key, 5)
    for seq in (5 + window + 1, 99_999_999):
        with pytest.raises(InvalidInput, match=f"seqs 0 to {5 + window}"):
            await world.streams.chunk_upload(stream.id, key, seq)
    assert await _chunk(world, stream, key, 5 + window)
    with pytest.raises(InvalidInput, match=f"seqs 5 to {5 + 2 * window}"):
        await _chunk(world, stream, key, 4)


async def test_a_chunk_is_checked_before_it_is_handed_to_the_transcoders(
    world: World,
) -> None:
    stream, key = await world.streams.create("Match")
    with pytest.raises(Conflict, match="not uploaded"):
        await world.streams.complete_chunk(stream.id, key, 0, duration=2.0, pts_start=0.0,
                                           captured_at=None)
    for duration in (0.0, -1.0, 10.5):
        with pytest.raises(InvalidInput, match="duration"):
            await _chunk(world, stream, key, 0, duration=duration)
    with pytest.raises(InvalidInput, match="captured_at"):
        await _chunk(world, stream, key, 0, captured_at="yesterday")
    assert await world.published(events.CHUNKS) == []
    assert await _chunk(world, stream, key, 0, captured_at="2026-11-24T11:00:00.5+01:00")
    assert not await _chunk(world, stream, key, 0)  # reported again: nothing new
    (chunk,) = await world.published(events.CHUNKS)
    assert isinstance(chunk, events.ChunkUploaded)
    assert (chunk.kind, chunk.seq, chunk.key, chunk.captured_at) == (
        "live", 0, keys.chunk(stream.id, 0), "2026-11-24T10:00:00.500Z")
    assert (await world.streams.get(stream.id)).status is VideoStatus.LIVE
    assert await world.statuses() == [(stream.id, "live", None)]


async def test_an_oversized_chunk_is_refused_and_deleted(world: World) -> None:
    stream, key = await world.streams.create("Match")
    limit = world.limits.max_chunk_bytes
    with pytest.raises(TooLarge, match=f"the limit is {limit}"):
        await _chunk(world, stream, key, 0, b"x" * (limit + 1))
    assert await world.store.stat(keys.chunk(stream.id, 0)) is None
    assert await world.published(events.CHUNKS) == []
    assert (await world.streams.get(stream.id)).status is VideoStatus.IDLE


async def test_an_ended_stream_takes_no_more_chunks(world: World) -> None:
    stream, key = await world.streams.create("Match")
    ended = await world.streams.end(stream.id)
    assert ended.status is VideoStatus.ENDED
    with pytest.raises(Conflict, match="the stream is ended"):
        await world.streams.chunk_upload(stream.id, key, 0)
    assert (await world.streams.end(stream.id)).status is VideoStatus.ENDED


async def test_a_quiet_stream_is_ended_after_the_idle_timeout(world: World) -> None:
    quiet, quiet_key = await world.streams.create("quiet")
    busy, busy_key = await world.streams.create("busy")
    idle, _ = await world.streams.create("never started")
    assert await _chunk(world, quiet, quiet_key, 0)
    assert await _chunk(world, busy, busy_key, 0)
    await world.work()
    await world.statuses()
    # The quiet stream's last chunk was reported longer ago than the timeout.
    (chunk,) = await world.repo.chunks(quiet.id)
    await world.repo.add_chunk(chunk, at=datetime.now(UTC) - timedelta(
        seconds=world.limits.idle_timeout_s + 1))
    assert list(await world.streams.end_quiet()) == [quiet.id]
    assert (await world.streams.get(quiet.id)).status is VideoStatus.ENDED
    assert (await world.streams.get(busy.id)).status is VideoStatus.LIVE
    assert (await world.streams.get(idle.id)).status is VideoStatus.IDLE  # no chunk yet
    assert await world.statuses() == [(quiet.id, "ended", None)]
    assert await world.store.stat(keys.media_playlist(quiet.id, "240p")) is not None


async def test_a_stored_chunk_is_never_handed_out_for_writing_again(world: World) -> None:
    stream, key = await world.streams.create("Match")
    for seq in (0, 1):
        assert await _chunk(world, stream, key, seq)
    with pytest.raises(Conflict, match=(f"chunk 0 is already stored; this stream continues "
                                        f"at seq 2: GET /api/v1/streams/{stream.id}/resume")):
        await world.streams.chunk_upload(stream.id, key, 0)
    await world.streams.chunk_upload(stream.id, key, 2)
    # Reporting a stored chunk again is still harmless.
    assert not await _chunk(world, stream, key, 1)


async def test_resume_tells_a_restarted_broadcaster_where_its_stream_goes_on(
    world: World,
) -> None:
    stream, key = await world.streams.create("Match")
    assert await world.streams.resume(stream.id, key) == (0, 0.0, stream)
    await world.store.put_bytes(keys.chunk(stream.id, 0), fake_chunk())
    await world.streams.complete_chunk(stream.id, key, 0, duration=2.0, pts_start=10.0,
                                       captured_at=None)
    await world.store.put_bytes(keys.chunk(stream.id, 1), fake_chunk())
    await world.streams.complete_chunk(stream.id, key, 1, duration=1.5, pts_start=12.0,
                                       captured_at=None)
    next_seq, next_pts, live = await world.streams.resume(stream.id, key)
    assert (next_seq, next_pts, live.status) == (2, 13.5, VideoStatus.LIVE)
    with pytest.raises(Unauthorized):
        await world.streams.resume(stream.id, None)
    with pytest.raises(Forbidden):
        await world.streams.resume(stream.id, "x" * 43)
    await world.streams.end(stream.id)
    with pytest.raises(Conflict, match="the stream is ended"):
        await world.streams.resume(stream.id, key)
