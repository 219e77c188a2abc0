"""REDIS BACKEND ONLY: what the Redis Streams bus adds to the contract.

Redis itself going down (with its append-only file on), consumers in other processes,
dead letters, trimmed streams, and fan-out subscriptions across bus objects.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from chunkcast.adapters.bus.redis import DEFAULT_MAX_LEN, RedisBus
from chunkcast.domain.events import CHUNKS, SEGMENTS, Event
from chunkcast.domain.ids import new_video_id
from tests.servers.redis import RedisServer, run_redis

from .backends import ACK_TIMEOUT_S
from .bus_helpers import (
    chunk,
    collect,
    nothing_for,
    publish_chunks,
    publish_segments,
    segment,
)

OpenBus = Callable[..., RedisBus]


@pytest.fixture
async def open_bus(redis_server: RedisServer) -> AsyncIterator[OpenBus]:
    """Opens buses on the session's Redis, all in one fresh namespace, like processes of
    one deployment; every bus is closed at the end."""
    prefix = f"test-{uuid4().hex}"
    opened: list[RedisBus] = []

    def opener(url: str = redis_server.url, *, max_len: int = DEFAULT_MAX_LEN,
               maintain_every_s: float | None = None) -> RedisBus:
        bus = RedisBus(url, prefix=prefix, ack_timeout_s=ACK_TIMEOUT_S, max_len=max_len,
                       maintain_every_s=maintain_every_s)
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
    feed = await bus.subscribe(SEGMENTS)
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


async def test_a_kept_event_stays_with_its_consumer_in_another_process(
    open_bus: OpenBus,
) -> None:
    """A worker renewing what it holds keeps it past the ack timeout, in every process's
    eyes; once it stops (killed), another process takes it over, as a second delivery."""
    working, other = open_bus(), open_bus()
    await working.ensure_group(CHUNKS, "all")
    [event_id], _ = await publish_chunks(working, 1)
    [held] = await working.read(CHUNKS, "all", "host-1-0", block_s=1.0)

    deadline = time.monotonic() + 4 * ACK_TIMEOUT_S
    while time.monotonic() < deadline:
        assert await working.keep(held)
        assert await nothing_for(other, "all", "host-2-0")
        await asyncio.sleep(ACK_TIMEOUT_S / 3)

    [taken] = await collect(other, "all", "host-2-0", 1)
    assert (taken.id, taken.attempt) == (event_id, 2)
    assert not await working.keep(held)  # a late renewal does not take it back
    assert await nothing_for(working, "all", "host-1-1")
    assert await other.keep(taken)


async def test_ping_answers_while_redis_is_up_and_raises_while_it_is_down(
    own_redis: RedisServer, open_bus: OpenBus
) -> None:
    bus = open_bus(own_redis.url)
    await bus.ping()
    own_redis.stop()
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        await bus.ping()
    assert time.monotonic() - started < 5.0  # a readiness check, not a retry loop
    own_redis.start()
    await bus.ping()


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


async def stream_length(redis_server: RedisServer, key: str) -> int:
    async with Redis.from_url(redis_server.url, decode_responses=True) as raw:
        return int(await raw.xlen(key))


async def consumer_names(redis_server: RedisServer, key: str, group: str) -> set[str]:
    async with Redis.from_url(redis_server.url, decode_responses=True) as raw:
        return {c["name"] for c in await raw.xinfo_consumers(key, group)}


async def test_a_stream_without_groups_stays_bounded(
    open_bus: OpenBus, redis_server: RedisServer
) -> None:
    bus = open_bus(max_len=50)
    following = await bus.subscribe(SEGMENTS)

    events = await publish_segments(bus, 1_000)

    # Approximate trimming drops whole nodes (100 entries each by default).
    assert 50 <= await stream_length(redis_server, bus.stream_key(SEGMENTS)) <= 50 + 100
    # A subscriber that fell more than max_len behind skips what was trimmed and follows
    # on in order from what is left.
    got = [await asyncio.wait_for(anext(following), 5.0)]
    while got[-1] != events[-1]:
        got += await next_events(following, 1)
    assert 50 <= len(got) <= 150
    assert got == events[-len(got):]


async def test_unconsumed_chunks_survive_a_trim_and_are_dropped_once_acked(
    open_bus: OpenBus, redis_server: RedisServer
) -> None:
    bus = open_bus(max_len=50, maintain_every_s=0)  # trims at every read
    key = bus.stream_key(CHUNKS)
    await bus.ensure_group(CHUNKS, "busy")
    await bus.ensure_group(CHUNKS, "down")  # no worker reads it for a while
    ids, events = await publish_chunks(bus, 1_000)  # 20 times the length limit
    for _ in range(0, 1_000, 100):
        for delivery in await collect(bus, "busy", "w1", 100):
            await bus.ack(delivery)

    assert await stream_length(redis_server, key) == 1_000
    got = await collect(bus, "down", "w1", 1_000)
    assert [(d.id, d.event) for d in got] == list(zip(ids, events, strict=True))
    assert await stream_length(redis_server, key) == 1_000  # read, but not acked yet

    for delivery in got[:500]:
        await bus.ack(delivery)
    await bus.read(CHUNKS, "busy", "w1", block_s=0)  # any reader trims
    # Whole nodes only: what is left starts at most one node before the oldest unacked.
    assert 500 <= await stream_length(redis_server, key) <= 500 + 100
    for delivery in got[500:]:
        await bus.ack(delivery)
    await bus.read(CHUNKS, "down", "w1", block_s=0)
    assert await stream_length(redis_server, key) <= 100
    assert await bus.backlog(CHUNKS, "busy") == await bus.backlog(CHUNKS, "down") == 0

    [new_id], _ = await publish_chunks(bus, 1)  # and the groups go on from there
    assert [d.id for d in await collect(bus, "down", "w1", 1)] == [new_id]
    assert [d.id for d in await collect(bus, "busy", "w1", 1)] == [new_id]


async def test_dead_consumers_are_removed_after_their_events_are_claimed(
    open_bus: OpenBus, redis_server: RedisServer
) -> None:
    survivor = open_bus()
    key = survivor.stream_key(CHUNKS)
    await survivor.ensure_group(CHUNKS, "all")
    ids, events = await publish_chunks(survivor, 3)
    dead = open_bus()  # a worker process that is killed: its consumers never come back
    [held] = await dead.read(CHUNKS, "all", "host-1-0", block_s=1.0)  # killed holding it
    [done] = await dead.read(CHUNKS, "all", "host-1-1", block_s=1.0)
    await dead.ack(done)  # nothing pending: only its name is left
    assert await consumer_names(redis_server, key, "all") == {"host-1-0", "host-1-1"}

    handled: dict[str, Event] = {}
    deadline = time.monotonic() + 10 * ACK_TIMEOUT_S + 5.0
    while time.monotonic() < deadline:  # a live worker goes on reading (and maintaining)
        for delivery in await survivor.read(CHUNKS, "all", "host-2-0", count=10, block_s=0.1):
            handled[delivery.id] = delivery.event
            await survivor.ack(delivery)
        if await consumer_names(redis_server, key, "all") == {"host-2-0"}:
            break

    assert await consumer_names(redis_server, key, "all") == {"host-2-0"}
    assert handled == {ids[0]: events[0], ids[2]: events[2]}  # the dead one's work included
    assert held.id == ids[0]
    assert await survivor.backlog(CHUNKS, "all") == 0


async def test_subscribe_sees_what_is_published_after_the_call(open_bus: OpenBus) -> None:
    bus = open_bus()
    await publish_chunks(bus, 2)  # before the call: not seen

    following = await bus.subscribe(CHUNKS)
    _, events = await publish_chunks(bus, 3)  # before the first iteration: seen

    assert await next_events(following, 3) == events


async def test_an_event_another_process_publishes_right_after_subscribe_is_received(
    open_bus: OpenBus,
) -> None:
    api, worker = open_bus(), open_bus()
    video_id = new_video_id()
    for seq in range(100):
        following = await api.subscribe(SEGMENTS)
        event = segment(video_id, seq)
        await worker.publish(SEGMENTS, event)  # at once, on another connection

        assert await next_events(following, 1) == [event]


async def test_every_subscriber_in_every_process_gets_every_event(open_bus: OpenBus) -> None:
    api_1, api_2, worker = open_bus(), open_bus(), open_bus()
    feeds = [await api_1.subscribe(SEGMENTS), await api_1.subscribe(SEGMENTS),
             await api_2.subscribe(SEGMENTS)]
    video_id = new_video_id()
    events: list[Event] = [chunk(video_id, seq) for seq in range(5)]

    for event in events:
        await worker.publish(SEGMENTS, event)

    for feed in feeds:
        assert await next_events(feed, 5) == events
