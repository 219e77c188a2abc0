"""MEMORY BACKEND ONLY: the journal that makes the in-process bus survive a restart, and
what the bus forgets so that a process can run for months.

A crash can cut the journal's last line short; opening the bus again must not fail and
must treat the cut operation as never done. The journal holds what is still unacked, not
history; events of topics without groups are never kept; a subscriber that stops reading
is cut off instead of being buffered for.
"""

import asyncio
import json
from pathlib import Path

import pytest

from chunkcast.adapters.bus.memory import COMPACT_AFTER_LINES, MemoryBus
from chunkcast.domain.events import CHUNKS, SEGMENTS, SegmentReady, encode
from chunkcast.ports.bus import EventBus, SubscriptionLost

from .backends import ACK_TIMEOUT_S
from .bus_helpers import chunk, collect, nothing_for, publish_chunks, publish_segments, segment


def cut_last_line(journal: Path) -> None:
    """Keep only the first half of the journal's last line, as a crash mid-write would."""
    data = journal.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    last = data[start:]
    journal.write_bytes(data[: start + len(last) // 2])


async def reopen(journal: Path) -> EventBus:
    return MemoryBus(journal, ack_timeout_s=ACK_TIMEOUT_S)


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "bus.journal"


async def test_half_written_line_is_ignored_on_open(journal: Path) -> None:
    bus = await reopen(journal)
    await bus.ensure_group(CHUNKS, "all")
    ids, events = await publish_chunks(bus, 2)
    await bus.close()
    with journal.open("a", encoding="utf-8") as out:
        out.write('{"op":"pub","topic":"chunks","id":2,"event":"{\\"type\\":\\"chu')

    bus = await reopen(journal)
    try:
        got = await collect(bus, "all", "w1", 2)
        assert [(d.id, d.event) for d in got] == list(zip(ids, events, strict=True))
        assert await nothing_for(bus, "all", "w1")
    finally:
        await bus.close()


async def test_publish_cut_short_never_happened(journal: Path) -> None:
    bus = await reopen(journal)
    await bus.ensure_group(CHUNKS, "all")
    ids, events = await publish_chunks(bus, 2)
    await publish_chunks(bus, 1)
    await bus.close()
    cut_last_line(journal)

    bus = await reopen(journal)
    try:
        assert await bus.backlog(CHUNKS, "all") == 2
        got = await collect(bus, "all", "w1", 2)
        assert [(d.id, d.event) for d in got] == list(zip(ids, events, strict=True))
        assert await nothing_for(bus, "all", "w1")
    finally:
        await bus.close()


async def test_ack_cut_short_means_redelivery(journal: Path) -> None:
    bus = await reopen(journal)
    await bus.ensure_group(CHUNKS, "all")
    ids, _ = await publish_chunks(bus, 2)
    for delivery in await collect(bus, "all", "w1", 2):
        await bus.ack(delivery)
    await bus.close()
    cut_last_line(journal)  # the second ack

    bus = await reopen(journal)
    try:
        got = await collect(bus, "all", "w2", 1)
        assert [d.id for d in got] == [ids[1]]
    finally:
        await bus.close()


async def test_bus_keeps_journaling_after_a_cut_line(journal: Path) -> None:
    bus = await reopen(journal)
    await bus.ensure_group(CHUNKS, "all")
    old_ids, _ = await publish_chunks(bus, 1)
    await publish_chunks(bus, 1)
    await bus.close()
    cut_last_line(journal)

    bus = await reopen(journal)
    event = chunk("abcdefghijklmnop", 9)
    new_id = await bus.publish(CHUNKS, event)
    await bus.close()

    bus = await reopen(journal)  # what was written after the cut line survives a restart
    try:
        got = await collect(bus, "all", "w1", 2)
        assert [d.id for d in got] == [old_ids[0], new_id]
        assert got[1].event == event
        assert new_id not in old_ids
    finally:
        await bus.close()


def lines(journal: Path) -> int:
    return len(journal.read_bytes().splitlines())


async def test_events_of_a_topic_without_groups_are_not_kept(journal: Path) -> None:
    bus = MemoryBus(journal, ack_timeout_s=ACK_TIMEOUT_S)
    await bus.ensure_group(CHUNKS, "all")
    following = await bus.subscribe(SEGMENTS)
    before = journal.stat().st_size

    events = await publish_segments(bus, 5_000)

    assert [await anext(following) for _ in events] == events  # delivered live...
    assert bus.retained(SEGMENTS) == 0  # ...and forgotten
    # Only the ids reserved for them are journaled (one line per 1,024 ids).
    assert journal.stat().st_size - before < 500
    await bus.close()

    bus = MemoryBus(journal, ack_timeout_s=ACK_TIMEOUT_S)
    try:
        await bus.ensure_group(SEGMENTS, "late")
        assert bus.retained(SEGMENTS) == 0
        assert await bus.backlog(SEGMENTS, "late") == 0
        new_id = await bus.publish(SEGMENTS, segment("abcdefghijklmnop", 0))
        assert int(new_id) >= len(events)  # ids are not reused after a restart
    finally:
        await bus.close()


async def test_events_acked_by_every_group_are_dropped(journal: Path) -> None:
    bus = MemoryBus(journal, ack_timeout_s=ACK_TIMEOUT_S)
    try:
        await bus.ensure_group(CHUNKS, "hi")
        await bus.ensure_group(CHUNKS, "lo")
        await publish_chunks(bus, 3)
        for delivery in await collect(bus, "hi", "w1", 3):
            await bus.ack(delivery)
        assert bus.retained(CHUNKS) == 3  # "lo" still needs them

        for delivery in await collect(bus, "lo", "w1", 3):
            await bus.ack(delivery)
        assert bus.retained(CHUNKS) == 0
    finally:
        await bus.close()


async def test_journal_stays_bounded_over_many_cycles_and_work_still_resumes(
    journal: Path,
) -> None:
    bus = MemoryBus(journal, ack_timeout_s=ACK_TIMEOUT_S)
    await bus.ensure_group(CHUNKS, "hi")
    await bus.ensure_group(CHUNKS, "lo")
    longest = 0
    for _ in range(1_000):  # ~6 journal lines a cycle: 6,000 without compaction
        await publish_chunks(bus, 1)
        for group in ("hi", "lo"):
            for delivery in await collect(bus, group, "w1", 1):
                await bus.ack(delivery)
        longest = max(longest, lines(journal))
    ids, events = await publish_chunks(bus, 2)
    [held] = await collect(bus, "hi", "w1", 1)
    await bus.close()

    assert longest <= COMPACT_AFTER_LINES + 20  # not 6,000
    bus = MemoryBus(journal, ack_timeout_s=ACK_TIMEOUT_S)
    try:
        assert lines(journal) < 20  # rewritten at start: the two events and the groups
        assert held.id == ids[0]
        hi = await collect(bus, "hi", "w2", 2)
        lo = await collect(bus, "lo", "w2", 2)
        assert [(d.id, d.event, d.attempt) for d in hi] == [
            (ids[0], events[0], 2), (ids[1], events[1], 1)]
        assert [(d.id, d.attempt) for d in lo] == [(ids[0], 1), (ids[1], 1)]
    finally:
        await bus.close()


async def test_journal_follows_work_in_flight_not_history(journal: Path) -> None:
    bus = MemoryBus(journal, ack_timeout_s=ACK_TIMEOUT_S, compact_after_lines=50)
    try:
        await bus.ensure_group(CHUNKS, "all")
        await publish_chunks(bus, 500)  # a group that is down: all of it is live
        assert lines(journal) > 500

        for delivery in await collect(bus, "all", "w1", 500):
            await bus.ack(delivery)

        assert bus.retained(CHUNKS) == 0
        assert lines(journal) <= 2 * 50 + 10
    finally:
        await bus.close()


async def test_a_journal_from_before_retention_rules_is_shrunk(journal: Path) -> None:
    """Older journals kept events of topics without groups, and dead-letter lines."""
    old = [{"op": "next", "topic": SEGMENTS, "id": 0}, {"op": "next", "topic": CHUNKS, "id": 0},
           {"op": "group", "topic": CHUNKS, "group": "all", "start": 0}]
    old += [{"op": "pub", "topic": SEGMENTS, "id": i,
             "event": encode(segment("abcdefghijklmnop", i))} for i in range(100)]
    kept = chunk("abcdefghijklmnop", 1)
    old += [{"op": "pub", "topic": CHUNKS, "id": 0, "event": encode(chunk("abcdefghijklmnop", 0))},
            {"op": "try", "topic": CHUNKS, "group": "all", "id": 0},
            {"op": "dead", "topic": CHUNKS, "group": "all", "id": 0, "error": "boom"},
            {"op": "ack", "topic": CHUNKS, "group": "all", "id": 0},
            {"op": "pub", "topic": CHUNKS, "id": 1, "event": encode(kept)},
            {"op": "try", "topic": CHUNKS, "group": "all", "id": 1}]
    journal.write_text("".join(json.dumps(r) + "\n" for r in old), encoding="utf-8")

    bus = MemoryBus(journal, ack_timeout_s=ACK_TIMEOUT_S)
    try:
        assert lines(journal) < 10
        assert bus.retained(SEGMENTS) == 0
        assert [(d.id, d.event, d.attempt) for d in await collect(bus, "all", "w1", 1)] == [
            ("1", kept, 2)]
        assert await nothing_for(bus, "all", "w2")
        assert int(await bus.publish(SEGMENTS, segment("abcdefghijklmnop", 100))) >= 100
    finally:
        await bus.close()


async def test_a_subscriber_that_stops_reading_is_cut_off() -> None:
    bus = MemoryBus(subscriber_limit=10)
    stalled = await bus.subscribe(SEGMENTS)
    following = await bus.subscribe(SEGMENTS)
    first = await publish_segments(bus, 5)
    assert [await anext(stalled) for _ in first] == first  # reads a little, then stops

    assert [await anext(following) for _ in first] == first
    got = []
    for seq in range(30):
        await bus.publish(SEGMENTS, segment("abcdefghijklmnop", seq))
        got.append(await asyncio.wait_for(anext(following), 5))

    # The one that keeps reading gets everything...
    assert [e.seq for e in got if isinstance(e, SegmentReady)] == list(range(30))
    # ...the stalled one is told it lost events once it reads again, and nothing is queued
    # for it any more; it subscribes again and follows on.
    with pytest.raises(SubscriptionLost):
        await anext(stalled)
    again = await bus.subscribe(SEGMENTS)
    later = await publish_segments(bus, 3)
    assert [await asyncio.wait_for(anext(again), 5) for _ in later] == later
    await bus.close()
