"""No lost publish: what a request commits is announced even if the bus is down at that
moment, by the writer right away or by the outbox relay once the bus is back."""

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import pytest

from chunkcast.domain import events, keys
from chunkcast.domain.clock import utc_now
from chunkcast.domain.events import Event
from chunkcast.domain.videos import Video, VideoStatus
from chunkcast.ports.bus import EventBus
from chunkcast.services.lifecycle import Lifecycle
from chunkcast.services.outbox import OutboxRelay
from chunkcast.services.streams import Streams
from chunkcast.services.videos import Videos
from tests.fakes import fake_chunk, fake_media

from .conftest import WorldFactory
from .world import OBSERVER, World


class FlakyBus:
    """The world's bus, except that publishing fails while ``down`` is set."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.down = False
        self.failures = 0
        self.failed_again = asyncio.Event()  # set at each failure

    async def publish(self, topic: str, event: Event) -> str:
        if self.down:
            self.failures += 1
            self.failed_again.set()
            raise ConnectionError("the bus is down")
        return await self._bus.publish(topic, event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


@dataclass
class Outage:
    """The world's services on a bus that can go down; the world's workers and observer
    still read the real bus behind it."""

    world: World
    bus: FlakyBus

    def __post_init__(self) -> None:
        w, bus = self.world, cast(EventBus, self.bus)
        self.lifecycle = Lifecycle(w.repo, bus)
        self.videos = Videos(w.repo, w.store, bus, self.lifecycle, w.metrics,
                             upload_url_seconds=3600, max_upload_bytes=w.limits.max_upload_bytes)
        self.streams = Streams(w.repo, w.store, bus, self.lifecycle, w.playback, w.groups,
                               chunk_url_seconds=60, idle_timeout_s=w.limits.idle_timeout_s,
                               seq_window=w.limits.seq_window,
                               max_chunk_bytes=w.limits.max_chunk_bytes)
        self.relay = OutboxRelay(w.repo, bus, w.metrics, delay_s=0, interval_s=0.01)

    async def upload(self) -> Video:
        video, _ = await self.videos.create("clip")
        await self.world.store.put_bytes(keys.source(video.id), fake_media())
        return await self.videos.complete(video.id)

    async def chunk(self, stream: Video, key: str, seq: int) -> bool:
        await self.world.store.put_bytes(keys.chunk(stream.id, seq), fake_chunk())
        return await self.streams.complete_chunk(stream.id, key, seq, duration=2.0,
                                                 pts_start=2.0 * seq, captured_at=None)

    def gauge(self, name: str) -> float | None:
        return self.world.metrics.registry.get_sample_value(name)


@pytest.fixture
async def outage(make_world: WorldFactory) -> Outage:
    world = await make_world()
    return Outage(world, FlakyBus(world.bus))


async def test_an_upload_completed_while_the_bus_is_down_is_processed_once_it_is_back(
    outage: Outage,
) -> None:
    world = outage.world
    outage.bus.down = True
    video = await outage.upload()
    assert video.status is VideoStatus.UPLOADED  # committed: the request succeeds
    assert [p.event for p in await world.repo.pending(video.id)] == [
        events.VideoStatusChanged(video.id, "uploaded"),
        events.SourceUploaded(video.id, keys.source(video.id))]
    assert await world.published(events.SOURCES) == []
    with pytest.raises(ConnectionError):
        await outage.relay.relay()
    assert outage.gauge("chunkcast_outbox_pending") == 2

    outage.bus.down = False
    assert await outage.relay.relay() == 2
    assert await world.published(events.SOURCES) == [
        events.SourceUploaded(video.id, keys.source(video.id))]
    assert await world.statuses() == [(video.id, "uploaded", None)]
    assert await world.repo.pending(video.id) == []
    assert outage.gauge("chunkcast_outbox_pending") == 0
    assert outage.gauge("chunkcast_outbox_lag_seconds") == 0
    await world.work()
    assert (await world.videos.get(video.id)).status is VideoStatus.READY


async def test_a_retried_complete_publishes_what_is_still_waiting_once(outage: Outage) -> None:
    world = outage.world
    outage.bus.down = True
    video = await outage.upload()
    again = await outage.videos.complete(video.id)  # still down: still accepted
    assert again.status is VideoStatus.UPLOADED
    outage.bus.down = False
    await outage.videos.complete(video.id)
    await outage.videos.complete(video.id)
    assert await world.published(events.SOURCES) == [
        events.SourceUploaded(video.id, keys.source(video.id))]
    assert await world.statuses() == [(video.id, "uploaded", None)]
    await world.work()
    assert (await world.videos.get(video.id)).status is VideoStatus.READY


async def test_a_chunk_reported_while_the_bus_is_down_is_accepted_and_transcoded_later(
    outage: Outage,
) -> None:
    world = outage.world
    stream, key = await outage.streams.create("Match")
    outage.bus.down = True
    assert await outage.chunk(stream, key, 0)
    assert (await world.streams.get(stream.id)).status is VideoStatus.LIVE
    assert [type(p.event) for p in await world.repo.pending(stream.id)] == [
        events.VideoStatusChanged, events.ChunkUploaded]
    outage.bus.down = False
    # The broadcaster's next chunk goes out at once; the relay brings the first.
    assert await outage.chunk(stream, key, 1)
    assert [e.seq for e in await world.published(events.CHUNKS)
            if isinstance(e, events.ChunkUploaded)] == [1]
    assert await outage.relay.relay() == 2
    assert [e.seq for e in await world.published(events.CHUNKS)
            if isinstance(e, events.ChunkUploaded)] == [0]
    assert await world.statuses() == [(stream.id, "live", None)]
    await world.work()
    assert [s.seq for s in await world.repo.segments(stream.id, "240p")] == [0, 1]


async def test_reporting_a_chunk_again_publishes_its_waiting_event(outage: Outage) -> None:
    world = outage.world
    stream, key = await outage.streams.create("Match")
    assert await outage.chunk(stream, key, 0)
    await world.published(events.CHUNKS)
    outage.bus.down = True
    assert await outage.chunk(stream, key, 1)
    outage.bus.down = False
    assert not await outage.chunk(stream, key, 1)  # the broadcaster's retry
    (event,) = await world.published(events.CHUNKS)
    assert isinstance(event, events.ChunkUploaded) and event.seq == 1
    assert await world.repo.pending(stream.id) == []
    assert not await outage.chunk(stream, key, 1)  # nothing left to publish
    assert await world.published(events.CHUNKS) == []


async def test_a_status_change_is_kept_when_the_bus_is_down(outage: Outage) -> None:
    world = outage.world
    video, _ = await outage.videos.create("clip")
    outage.bus.down = True
    await outage.lifecycle.fail(video.id, "the uploaded file is empty")
    assert (await world.videos.get(video.id)).status is VideoStatus.FAILED
    outage.bus.down = False
    await outage.relay.relay()
    assert await world.statuses() == [(video.id, "failed", "the uploaded file is empty")]


async def test_the_relay_reports_how_late_the_oldest_event_is(outage: Outage) -> None:
    outage.bus.down = True
    await outage.upload()
    late = OutboxRelay(outage.world.repo, cast(EventBus, outage.bus), outage.world.metrics,
                       delay_s=0, clock=lambda: utc_now() + timedelta(seconds=30))
    with pytest.raises(ConnectionError):
        await late.relay()
    lag = outage.gauge("chunkcast_outbox_lag_seconds")
    assert lag is not None and 29 <= lag <= 31


async def test_the_running_relay_outlives_an_outage_and_then_publishes(outage: Outage) -> None:
    world = outage.world
    outage.bus.down = True
    video = await outage.upload()
    running = asyncio.create_task(outage.relay.run())
    try:
        for _ in range(3):  # the relay keeps trying, round after round
            outage.bus.failed_again.clear()
            await asyncio.wait_for(outage.bus.failed_again.wait(), 10)
        outage.bus.down = False
        (delivery,) = await world.bus.read(events.SOURCES, OBSERVER, "o", block_s=10)
        assert delivery.event == events.SourceUploaded(video.id, keys.source(video.id))
        assert not running.done()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
