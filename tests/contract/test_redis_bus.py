"""REDIS BACKEND ONLY: what the Redis Streams bus adds to the contract.

Redis itself going down (with its append-only file on), consumers in other processes,
dead letters, trimmed streams, and fan-out subscriptions across bus objects.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from chunkcast.adapters.bus.redis import RedisBus
from chunkcast.domain.events import CHUNKS, SEGMENTS, Event
from chunkcast.domain.ids import new_video_id
from tests.servers.redis import RedisServer, run_redis

from .backends import ACK_TIMEOUT_S
from .bus_helpers import chunk, collect, nothing_for, publish_chunks

OpenBus = Callable[..., RedisBus]


@pytest.fixture
async def open_bus(redis_server: RedisServer) -> AsyncIterator[OpenBus]:
    """Opens buses on the session's Redis, all in one fresh namespace, like processes of
    one deployment; every bus is closed at the end."""
    prefix = f"test-{uuid4().hex}"
    opened: list[RedisBus] = []

    def opener(url: str = redis_server.url, **options: int) -> RedisBus:
        bus = RedisBus(url, prefix=prefix, ack_timeout_s=ACK_TIMEOUT_S, **options)
        opened.append(bus)
        return bus

    yield opener
    for bus in opened:
        await bus.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to restart without disturbing the others."""
    with run_redis(tmp_path / "redis") as server:
        yield server


async def next_events(
    events: AsyncIterator[Event], count: int, *, timeout_s: float = 5.0
) -> list[Event]:
    return [await asyncio.wait_for(anext(events), timeout_s) for _ in range(count)]


@pytest.mark.parametrize("crash", [False, True], ids=["stopped", "killed"])
async def test_nothing_is_lost_when_redis_restarts(
    own_redis: RedisServer, open_bus: OpenBus, crash: bool
) -> None:
    bus = open_bus(own_redis.url)
    await bus.ensure_group(CHUNKS, "all")
    ids, events = await publish_chunks(bus, 4)
    done, held = await collect(bus, "all", "w1", 2)
    await bus.ack(done)  # ids[1] is in flight, ids[2:] were never handed out
    feed = bus.subscribe(SEGMENTS)
    waiting = asyncio.create_task(next_events(feed, 1, timeout_s=15.0))
    await asyncio.sleep(0.1)  # the subscriber is blocked in XREAD

    own_redis.restart(crash=crash)

    # A subscriber blocked while Redis was down follows on from where it was.
    await bus.publish(SEGMENTS, events[0])
    assert await waiting == [events[0]]

    # The same bus object reconnects; so does a process started afterwards.
    for reader in (bus, open_bus(own_redis.url)):
        assert await reader.backlog(CHUNKS, "all") == 3
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)
    again = await collect(bus, "all", "w2", 3)
    assert [(d.id, d.event, d.attempt) for d in again] == [
        (held.id, held.event, 2), (ids[2], events[2], 1), (ids[3], events[3], 1)]
    for delivery in again:
        await bus.ack(delivery)
    assert await bus.backlog(CHUNKS, "all") == 0

    new_id = await bus.publish(CHUNKS, chunk(new_video_id(), 9))
    assert new_id not in ids
    assert [d.id for d in await collect(bus, "all", "w2", 1)] == [new_id]


async def test_event_held_by_a_dead_consumer_is_claimed_by_another(open_bus: OpenBus) -> None:
    survivor = open_bus()
    await survivor.ensure_group(CHUNKS, "all")
    [event_id], [event] = await publish_chunks(survivor, 1)

    dying = open_bus()  # another process: it reads, then dies without acking
    [held] = await dying.read(CHUNKS, "all", "dies", block_s=1.0)
    assert (held.id, held.attempt) == (event_id, 1)
    del dying  # never used again (its sockets are closed at teardown, as the OS would)

    assert await nothing_for(survivor, "all", "takes-over")  # within the ack timeout
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)
    [claimed] = await collect(survivor, "all", "takes-over", 1)

    assert (claimed.id, claimed.event, claimed.attempt) == (event_id, event, 2)
    await survivor.ack(claimed)
    assert await survivor.backlog(CHUNKS, "all") == 0


async def test_dead_letter_moves_the_event_with_its_error(open_bus: OpenBus) -> None:
    bus = open_bus()
    await bus.ensure_group(CHUNKS, "all")
    [event_id], [event] = await publish_chunks(bus, 1)
    [delivery] = await collect(bus, "all", "w1", 1)

    await bus.dead_letter(delivery, "ffmpeg exited with 1: moov atom not found")

    [dead] = await bus.dead_letters(CHUNKS)
    assert (dead.id, dead.group, dead.event, dead.attempt) == (event_id, "all", event, 1)
    assert dead.error == "ffmpeg exited with 1: moov atom not found"
    assert await bus.backlog(CHUNKS, "all") == 0
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)
    assert await nothing_for(bus, "all", "w1", "w2")


async def test_unreadable_event_is_set_aside(open_bus: OpenBus, redis_server: RedisServer) -> None:
    bus = open_bus()
    await bus.ensure_group(CHUNKS, "all")
    async with Redis.from_url(redis_server.url, decode_responses=True) as raw:
        await raw.xadd(bus.stream_key(CHUNKS), {"event": '{"type":"chunk.from-the-future"}'})
    [later_id], _ = await publish_chunks(bus, 1)

    got = await collect(bus, "all", "w1", 1)

    assert [d.id for d in got] == [later_id]
    [dead] = await bus.dead_letters(CHUNKS)
    assert dead.data == '{"type":"chunk.from-the-future"}'
    assert dead.error.startswith("unreadable")
    await bus.ack(got[0])
    assert await bus.backlog(CHUNKS, "all") == 0


async def test_streams_are_trimmed(open_bus: OpenBus, redis_server: RedisServer) -> None:
    bus = open_bus(max_len=50)
    await bus.ensure_group(CHUNKS, "all")

    ids, events = await publish_chunks(bus, 1000)

    async with Redis.from_url(redis_server.url, decode_responses=True) as raw:
        length = await raw.xlen(bus.stream_key(CHUNKS))
    # Approximate trimming drops whole nodes (100 entries each by default).
    assert 50 <= length <= 50 + 100
    assert await bus.backlog(CHUNKS, "all") == length  # what is left is still delivered
    got = await collect(bus, "all", "w1", length)
    assert [d.event for d in got] == events[-length:]
    assert [d.id for d in got] == ids[-length:]


async def test_subscribe_sees_what_is_published_after_the_call(open_bus: OpenBus) -> None:
    bus = open_bus()
    await publish_chunks(bus, 2)  # before the call: not seen

    following = bus.subscribe(CHUNKS)
    _, events = await publish_chunks(bus, 3)  # before the first iteration: seen

    assert await next_events(following, 3) == events


async def test_every_subscriber_in_every_process_gets_every_event(open_bus: OpenBus) -> None:
    api_1, api_2, worker = open_bus(), open_bus(), open_bus()
    feeds = [api_1.subscribe(SEGMENTS), api_1.subscribe(SEGMENTS), api_2.subscribe(SEGMENTS)]
    video_id = new_video_id()
    events: list[Event] = [chunk(video_id, seq) for seq in range(5)]
    await asyncio.sleep(0.2)  # another process's subscription has started by now

    for event in events:
        await worker.publish(SEGMENTS, event)

    for feed in feeds:
        assert await next_events(feed, 5) == events
