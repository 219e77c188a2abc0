"""MEMORY BACKEND ONLY: the journal that makes the in-process bus survive a restart.

A crash can cut the journal's last line short; opening the bus again must not fail and
must treat the cut operation as never done.
"""

from pathlib import Path

import pytest

from chunkcast.adapters.bus.memory import MemoryBus
from chunkcast.domain.events import CHUNKS
from chunkcast.ports.bus import EventBus

from .backends import ACK_TIMEOUT_S
from .bus_helpers import chunk, collect, nothing_for, publish_chunks


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
