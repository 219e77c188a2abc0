"""EventBus contract: consumer groups, at-least-once delivery, durability across a restart.

Written so that a bus whose waiting and in-flight state lives in a server (Redis Streams)
passes too: a restarted process may get its in-flight events back only after the ack
timeout, so tests that expect them wait for it.
"""

import asyncio
import time
from collections.abc import Sequence

from chunkcast.domain import keys
from chunkcast.domain.events import CHUNKS, SEGMENTS, SOURCES, SourceUploaded
from chunkcast.domain.ids import new_video_id
from chunkcast.ports.bus import Delivery, EventBus

from .backends import ACK_TIMEOUT_S, BusFactory
from .bus_helpers import PATIENCE_S, chunk, collect, nothing_for, publish_chunks, segment


def assert_order(got: Sequence[object], expected: Sequence[object],
                 deliveries: Sequence[Delivery], total_order: bool) -> None:
    """``got`` is ``expected`` in order; on a backend without a total order (Kafka: one
    partition per video), the same items, each video's in order."""
    if total_order:
        assert list(got) == list(expected)
        return
    assert sorted(map(repr, got)) == sorted(map(repr, expected))
    position = {repr(item): n for n, item in enumerate(expected)}
    by_video: dict[str, list[int]] = {}
    for item, delivery in zip(got, deliveries, strict=True):
        by_video.setdefault(str(getattr(delivery.event, "video_id", "")), []).append(
            position[repr(item)])
    assert all(places == sorted(places) for places in by_video.values())


async def test_publish_then_read(bus: EventBus) -> None:
    await bus.ensure_group(SOURCES, "splitter")
    video_id = new_video_id()
    event = SourceUploaded(video_id, keys.source(video_id))

    event_id = await bus.publish(SOURCES, event)
    got = await bus.read(SOURCES, "splitter", "s1", count=10, block_s=1.0)

    assert got == [Delivery(SOURCES, "splitter", event_id, event, 1, "s1")]


async def test_one_consumer_gets_events_in_publish_order(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")

    ids, events = await publish_chunks(bus, 5)
    got = await collect(bus, "all", "w1", 5)

    assert [d.id for d in got] == ids
    assert [d.event for d in got] == events
    assert len(set(ids)) == 5


async def test_topics_are_separate(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")
    await bus.ensure_group(SOURCES, "all")
    video_id = new_video_id()
    source = SourceUploaded(video_id, keys.source(video_id))

    await bus.publish(SOURCES, source)
    _, chunks = await publish_chunks(bus, 1)

    assert [d.event for d in await collect(bus, "all", "w1", 1)] == chunks
    assert await nothing_for(bus, "all", "w1")
    assert [d.event for d in await collect(bus, "all", "w1", 1, topic=SOURCES)] == [source]
    assert await nothing_for(bus, "all", "w1", topic=SOURCES)


async def test_every_group_sees_every_event(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "hi")
    await bus.ensure_group(CHUNKS, "lo")

    ids, events = await publish_chunks(bus, 4)

    for group in ("hi", "lo"):
        got = await collect(bus, group, "w1", 4)
        assert [(d.id, d.event, d.group, d.attempt) for d in got] == [
            (i, e, group, 1) for i, e in zip(ids, events, strict=True)
        ]


async def test_consumers_of_one_group_share_events(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")
    ids, _ = await publish_chunks(bus, 10)
    got: dict[str, list[str]] = {"w1": [], "w2": []}

    deadline = time.monotonic() + PATIENCE_S
    while sum(map(len, got.values())) < len(ids) and time.monotonic() < deadline:
        for consumer, seen in got.items():
            for delivery in await bus.read(CHUNKS, "all", consumer, count=2, block_s=0.1):
                assert delivery.attempt == 1
                seen.append(delivery.id)
                await bus.ack(delivery)

    everything = got["w1"] + got["w2"]
    assert sorted(everything) == sorted(ids)  # each event exactly once
    assert got["w1"] and got["w2"]
    assert await nothing_for(bus, "all", "w1", "w2")


async def test_unacked_event_is_redelivered_after_ack_timeout(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")
    [event_id], [event] = await publish_chunks(bus, 1)
    [first] = await bus.read(CHUNKS, "all", "dies", block_s=1.0)
    assert (first.id, first.event, first.attempt) == (event_id, event, 1)

    assert await nothing_for(bus, "all", "takes-over")  # still within the ack timeout

    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)
    again = await collect(bus, "all", "takes-over", 1)
    assert [(d.id, d.event, d.attempt) for d in again] == [(event_id, event, 2)]

    await bus.ack(again[0])
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)
    assert await nothing_for(bus, "all", "dies", "takes-over")
    assert await bus.backlog(CHUNKS, "all") == 0


async def test_a_kept_event_stays_with_its_consumer_and_keeps_its_count(
    bus: EventBus,
) -> None:
    await bus.ensure_group(CHUNKS, "all")
    [event_id], [event] = await publish_chunks(bus, 1)
    [held] = await bus.read(CHUNKS, "all", "working", block_s=1.0)

    # Renewed every third of the ack timeout, for several ack timeouts: nobody else gets it.
    deadline = time.monotonic() + 4 * ACK_TIMEOUT_S
    while time.monotonic() < deadline:
        assert await bus.keep(held)
        assert await nothing_for(bus, "all", "other")
        await asyncio.sleep(ACK_TIMEOUT_S / 3)

    # No longer renewed (its worker was killed): handed out again, as the second delivery.
    again = await collect(bus, "all", "other", 1)
    assert [(d.id, d.event, d.attempt) for d in again] == [(event_id, event, 2)]
    assert not await bus.keep(held)  # the first holder, back late, does not get it back
    assert await bus.keep(again[0])
    await bus.ack(again[0])
    assert not await bus.keep(again[0])
    assert await bus.backlog(CHUNKS, "all") == 0


async def test_expired_events_come_before_new_ones(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")
    [old_id], _ = await publish_chunks(bus, 1)
    await collect(bus, "all", "dies", 1)
    [new_id], _ = await publish_chunks(bus, 1)
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)

    got = await collect(bus, "all", "w2", 2)

    assert [(d.id, d.attempt) for d in got] == [(old_id, 2), (new_id, 1)]


async def test_late_and_repeated_acks_are_harmless(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")
    await publish_chunks(bus, 1)
    [slow] = await collect(bus, "all", "slow", 1)
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)
    [fast] = await collect(bus, "all", "fast", 1)

    await bus.ack(fast)
    await bus.ack(slow)  # the first holder finishes late
    await bus.ack(fast)

    assert await bus.backlog(CHUNKS, "all") == 0
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)
    assert await nothing_for(bus, "all", "slow", "fast")


async def test_acked_events_are_never_delivered_again(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")
    await publish_chunks(bus, 3)
    for delivery in await collect(bus, "all", "w1", 3):
        await bus.ack(delivery)

    await asyncio.sleep(2 * ACK_TIMEOUT_S + 0.1)

    assert await nothing_for(bus, "all", "w1", "w2", "w3")


async def test_read_waits_block_s_then_returns_nothing(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")

    started = time.monotonic()
    got = await bus.read(CHUNKS, "all", "w1", block_s=0.5)
    waited = time.monotonic() - started

    assert got == []
    assert 0.45 <= waited < 2.0


async def test_read_with_zero_block_returns_at_once(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")

    started = time.monotonic()
    got = await bus.read(CHUNKS, "all", "w1", block_s=0)

    assert got == []
    assert time.monotonic() - started < 0.5


async def test_blocked_read_returns_early_on_publish(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")
    started = time.monotonic()
    reader = asyncio.create_task(bus.read(CHUNKS, "all", "w1", block_s=5.0))
    await asyncio.sleep(0.1)

    [event_id], [event] = await publish_chunks(bus, 1)
    got = await asyncio.wait_for(reader, 5.0)

    assert [(d.id, d.event) for d in got] == [(event_id, event)]
    assert time.monotonic() - started < 1.5


async def test_an_event_published_right_after_subscribe_returns_is_received(
    bus: EventBus,
) -> None:
    video_id = new_video_id()
    for seq in range(100):
        following = await bus.subscribe(SEGMENTS)
        event = segment(video_id, seq)
        await bus.publish(SEGMENTS, event)

        assert await asyncio.wait_for(anext(following), 5.0) == event


async def test_ping_answers(bus: EventBus) -> None:
    await bus.ping()


async def test_backlog_counts_unacked_events_per_group(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "hi")
    await bus.ensure_group(CHUNKS, "lo")
    assert await bus.backlog(CHUNKS, "hi") == 0

    await publish_chunks(bus, 3)
    assert await bus.backlog(CHUNKS, "hi") == 3

    first, second = await collect(bus, "hi", "w1", 2)
    assert await bus.backlog(CHUNKS, "hi") == 3  # in flight still counts
    await bus.ack(second)
    assert await bus.backlog(CHUNKS, "hi") == 2
    await bus.ack(first)
    assert await bus.backlog(CHUNKS, "hi") == 1
    [third] = await collect(bus, "hi", "w2", 1)
    await bus.ack(third)

    assert await bus.backlog(CHUNKS, "hi") == 0
    assert await bus.backlog(CHUNKS, "lo") == 3


async def test_group_created_after_publish_misses_earlier_events(
    bus: EventBus, total_order: bool,
) -> None:
    await bus.ensure_group(CHUNKS, "early")
    earlier_ids, _ = await publish_chunks(bus, 2)
    await bus.ensure_group(CHUNKS, "late")
    [later_id], [later] = await publish_chunks(bus, 1)

    got = await collect(bus, "late", "w1", 1)

    assert [(d.id, d.event) for d in got] == [(later_id, later)]
    assert await nothing_for(bus, "late", "w1")
    assert await bus.backlog(CHUNKS, "late") == 1
    early = await collect(bus, "early", "w1", 3)
    assert_order([d.id for d in early], [*earlier_ids, later_id], early, total_order)


async def test_ensure_group_is_idempotent(bus: EventBus) -> None:
    await bus.ensure_group(CHUNKS, "all")
    [first_id, second_id], _ = await publish_chunks(bus, 2)
    [first] = await collect(bus, "all", "w1", 1)
    await bus.ack(first)

    await bus.ensure_group(CHUNKS, "all")

    got = await collect(bus, "all", "w1", 1)
    assert [d.id for d in got] == [second_id]
    assert await nothing_for(bus, "all", "w1")
    assert first.id == first_id


async def test_restart_redelivers_only_unacked_events(bus_factory: BusFactory) -> None:
    bus = await bus_factory()
    await bus.ensure_group(CHUNKS, "all")
    ids, events = await publish_chunks(bus, 3)
    [done] = await collect(bus, "all", "w1", 1)
    await bus.ack(done)
    [held] = await collect(bus, "all", "w1", 1)  # in flight when the process stops
    assert (done.id, held.id) == (ids[0], ids[1])
    await bus.close()

    bus = await bus_factory()
    assert await bus.backlog(CHUNKS, "all") == 2
    again = await collect(bus, "all", "w2", 2)

    assert {d.id: d.event for d in again} == {ids[1]: events[1], ids[2]: events[2]}
    for delivery in again:
        await bus.ack(delivery)
    assert await bus.backlog(CHUNKS, "all") == 0
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)
    assert await nothing_for(bus, "all", "w1", "w2")

    new_id = await bus.publish(CHUNKS, chunk(new_video_id(), 0))
    assert new_id not in ids
    [fresh] = await collect(bus, "all", "w2", 1)
    assert (fresh.id, fresh.attempt) == (new_id, 1)


async def test_groups_survive_restart(bus_factory: BusFactory, total_order: bool) -> None:
    bus = await bus_factory()
    await bus.ensure_group(CHUNKS, "early")
    [old_id], _ = await publish_chunks(bus, 1)
    await bus.ensure_group(CHUNKS, "late")
    await bus.close()

    bus = await bus_factory()  # no ensure_group: the groups are part of the durable state
    [new_id], _ = await publish_chunks(bus, 1)

    early = await collect(bus, "early", "w1", 2)
    late = await collect(bus, "late", "w1", 1)
    for delivery in early + late:  # acked: a slow join must not let them expire meanwhile
        await bus.ack(delivery)

    assert_order([d.id for d in early], [old_id, new_id], early, total_order)
    assert [d.id for d in late] == [new_id]
    assert await nothing_for(bus, "early", "w1")
    assert await nothing_for(bus, "late", "w1")


async def test_ids_stay_unique_across_restarts(bus_factory: BusFactory) -> None:
    bus = await bus_factory()
    await bus.ensure_group(CHUNKS, "all")
    old_ids, _ = await publish_chunks(bus, 3)
    for delivery in await collect(bus, "all", "w1", 3):
        await bus.ack(delivery)
    await bus.close()
    await (await bus_factory()).close()  # a restart with nothing to do

    bus = await bus_factory()
    new_ids, _ = await publish_chunks(bus, 2)

    assert not set(new_ids) & set(old_ids)
    assert len(set(new_ids)) == 2


async def test_attempt_count_survives_restart(bus_factory: BusFactory) -> None:
    bus = await bus_factory()
    await bus.ensure_group(CHUNKS, "all")
    [event_id], _ = await publish_chunks(bus, 1)
    await collect(bus, "all", "w1", 1)  # the process dies while handling it
    await bus.close()

    bus = await bus_factory()
    again = await collect(bus, "all", "w2", 1)

    # The worker gives up on an event after max_attempts deliveries; an event that kills
    # the process must not get a fresh count each time it is handed out again.
    assert [(d.id, d.attempt) for d in again] == [(event_id, 2)]


# -- retention: forget what nobody needs, never what a group still needs -------------------

# Far more than the backends' retention limits in these suites (see backends.py).
MANY = 300


async def test_events_a_group_has_not_handled_survive_everything_published_after(
    bus_factory: BusFactory, total_order: bool,
) -> None:
    bus = await bus_factory()
    await bus.ensure_group(CHUNKS, "busy")
    await bus.ensure_group(CHUNKS, "down")  # its workers go down for a while
    ids, events = await publish_chunks(bus, MANY)
    [held] = await collect(bus, "down", "dies", 1)  # in flight when its worker died
    for _ in range(0, MANY, 10):  # the other group keeps up, in small steps
        for delivery in await collect(bus, "busy", "w1", 10):
            await bus.ack(delivery)
    await bus.close()

    bus = await bus_factory()
    more_ids, _ = await publish_chunks(bus, MANY)
    for delivery in await collect(bus, "busy", "w1", MANY):
        await bus.ack(delivery)
    assert await bus.backlog(CHUNKS, "busy") == 0
    assert await bus.backlog(CHUNKS, "down") == 2 * MANY
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)  # what the dead worker held has expired

    got = await collect(bus, "down", "back", 2 * MANY)
    assert_order([(d.id, d.attempt) for d in got],
                 [(held.id, 2), *((i, 1) for i in ids[1:] + more_ids)], got, total_order)
    video = getattr(events[0], "video_id", None)
    assert [d.event for d in got if getattr(d.event, "video_id", None) == video] == events


async def test_work_in_flight_resumes_after_many_cycles_and_a_restart(
    bus_factory: BusFactory,
) -> None:
    bus = await bus_factory()
    await bus.ensure_group(CHUNKS, "all")
    for _ in range(40):  # plenty of history, all of it done
        await publish_chunks(bus, 5)
        for delivery in await collect(bus, "all", "w1", 5):
            await bus.ack(delivery)
    ids, events = await publish_chunks(bus, 3)
    [held] = await collect(bus, "all", "w1", 1)
    await bus.close()

    bus = await bus_factory()
    assert await bus.backlog(CHUNKS, "all") == 3
    got = await collect(bus, "all", "w2", 3)

    assert held.id == ids[0]
    assert sorted((d.id, d.event, d.attempt) for d in got) == sorted(
        [(ids[0], events[0], 2), (ids[1], events[1], 1), (ids[2], events[2], 1)])
    for delivery in got:
        await bus.ack(delivery)
    assert await bus.backlog(CHUNKS, "all") == 0
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)
    assert await nothing_for(bus, "all", "w1", "w2")
