"""KAFKA BACKEND ONLY: what the Kafka bus adds to the contract, and where it differs.

Consumers in other processes (a crash moves a partition after the session timeout),
contiguous commits, dead letters, unreachable brokers, fan-out across bus objects, and
broker restarts (on a broker of their own that keeps its data in SeaweedFS).
"""

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from chunkcast.adapters.bus.kafka import BrokersUnreachable, KafkaBus, open_bus
from chunkcast.config import load_settings
from chunkcast.domain.events import CHUNKS, SEGMENTS
from chunkcast.domain.ids import new_video_id
from chunkcast.ports.bus import Delivery
from chunkcast.testing import free_port
from tests.servers.kafka import KafkaServer, broker_or_skip
from tests.servers.seaweedfs import SeaweedServer

from .backends import ACK_TIMEOUT_S, KAFKA_PARTITIONS, KAFKA_SESSION_TIMEOUT_MS
from .bus_helpers import chunk, collect, nothing_for, publish_chunks, segment

OpenBus = Callable[[], KafkaBus]


@pytest.fixture
async def prefix() -> str:
    return f"test-{uuid4().hex}"


@contextlib.asynccontextmanager
async def _buses(server: KafkaServer, prefix: str) -> AsyncIterator[OpenBus]:
    """Opens buses on ``server`` in one namespace, like processes of one deployment; every
    bus is closed at the end."""
    opened: list[KafkaBus] = []

    def opener() -> KafkaBus:
        bus = KafkaBus(server.brokers, prefix=prefix, partitions=KAFKA_PARTITIONS,
                       ack_timeout_s=ACK_TIMEOUT_S,
                       session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS)
        opened.append(bus)
        return bus

    try:
        yield opener
    finally:
        for bus in opened:
            await bus.close()


@pytest.fixture
async def open_kafka(kafka_server: KafkaServer, prefix: str) -> AsyncIterator[OpenBus]:
    """Opens buses on the session's broker in one fresh namespace."""
    async with _buses(kafka_server, prefix) as opener:
        yield opener


@pytest.fixture
def durable_kafka(seaweedfs: SeaweedServer, tmp_path: Path) -> Iterator[KafkaServer]:
    """A broker of this test's own, its data in a bucket of the session's SeaweedFS (Tansu's
    s3 engine): it can be restarted, and keeps everything. Skipped, saying why, only when the
    binary cannot run here."""
    yield from broker_or_skip(tmp_path / "kafka", seaweedfs=seaweedfs)


@pytest.fixture
async def open_durable(durable_kafka: KafkaServer, prefix: str) -> AsyncIterator[OpenBus]:
    """Opens buses on this test's durable broker."""
    async with _buses(durable_kafka, prefix) as opener:
        yield opener


# A process that takes one event of group "all" and dies holding it (no leave, no commit).
CRASHING_READER = """
import asyncio, os, sys
from chunkcast.adapters.bus.kafka import KafkaBus
async def main():
    bus = KafkaBus(sys.argv[1], prefix=sys.argv[2], partitions=int(sys.argv[3]),
                   ack_timeout_s=0.3, session_timeout_ms=int(sys.argv[4]))
    got = []
    while not got:
        got = await bus.read("chunks", "all", "doomed", block_s=1.0)
    print(got[0].id, flush=True)
    os._exit(9)
asyncio.run(main())
"""


async def test_an_event_held_by_a_crashed_process_goes_to_another_with_its_count(
    open_kafka: OpenBus, kafka_server: KafkaServer, prefix: str,
) -> None:
    bus = open_kafka()
    await bus.ensure_group(CHUNKS, "all")
    [event_id], [event] = await publish_chunks(bus, 1)

    crashed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", CRASHING_READER, kafka_server.brokers, prefix,
                         str(KAFKA_PARTITIONS), str(KAFKA_SESSION_TIMEOUT_MS)],
        capture_output=True, text=True, timeout=60, env=os.environ)
    assert crashed.stdout.strip() == event_id, crashed.stderr

    # The crashed member's session expires, its partitions move here, and the tries log
    # says the event was delivered once already.
    got = await collect(bus, "all", "survivor", 1, timeout_s=20)
    assert [(d.id, d.event, d.attempt) for d in got] == [(event_id, event, 2)]


# A process that takes ``count`` events of group "all", acks every one and dies at once:
# before the commit that gathers acks is sent (an ack does not wait for the broker).
ACKING_THEN_CRASHING = """
import asyncio, os, sys
from chunkcast.adapters.bus.kafka import KafkaBus
async def main():
    bus = KafkaBus(sys.argv[1], prefix=sys.argv[2], partitions=int(sys.argv[3]),
                   ack_timeout_s=0.3, session_timeout_ms=int(sys.argv[4]))
    got = []
    while len(got) < int(sys.argv[5]):
        got += await bus.read("chunks", "all", "doomed", count=100, block_s=1.0)
    for delivery in got:
        await bus.ack(delivery)
    print(" ".join(d.id for d in got), flush=True)
    os._exit(9)
asyncio.run(main())
"""


async def test_events_acked_just_before_a_crash_are_delivered_again_not_lost(
    open_kafka: OpenBus, kafka_server: KafkaServer, prefix: str,
) -> None:
    bus = open_kafka()
    await bus.ensure_group(CHUNKS, "all")
    published = [await bus.publish(CHUNKS, chunk(new_video_id(), 0)) for _ in range(12)]

    crashed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", ACKING_THEN_CRASHING, kafka_server.brokers,
                         prefix, str(KAFKA_PARTITIONS), str(KAFKA_SESSION_TIMEOUT_MS),
                         str(len(published))],
        capture_output=True, text=True, timeout=60, env=os.environ)
    assert sorted(crashed.stdout.split()) == sorted(published), crashed.stderr

    # Acks are committed together a moment later, and the process died within that moment:
    # every event comes back (handlers are idempotent), counted, and none is missing.
    got = await collect(bus, "all", "survivor", len(published), timeout_s=20)
    assert sorted((d.id, d.attempt) for d in got) == sorted((i, 2) for i in published)
    for delivery in got:
        await bus.ack(delivery)

    # Acks of a live process are committed soon, without waiting for it to stop.
    other = open_kafka()
    deadline = time.monotonic() + 5
    while await other.backlog(CHUNKS, "all") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await other.backlog(CHUNKS, "all") == 0


async def test_acks_out_of_order_commit_only_up_to_the_first_unfinished_event(
    open_kafka: OpenBus,
) -> None:
    bus = open_kafka()
    await bus.ensure_group(CHUNKS, "all")
    ids, _ = await publish_chunks(bus, 3)  # one video: one partition, in order
    first, second, third = await collect(bus, "all", "w1", 3)
    await bus.ack(third)
    await bus.ack(second)  # done out of order: the first is still being worked on
    await bus.close()  # the process stops before finishing the first

    again = open_kafka()
    assert await again.backlog(CHUNKS, "all") == 3  # nothing past the first was committed
    got = await collect(again, "all", "w2", 3)
    # The unfinished one comes back (with its count); the finished ones are handed out
    # again too (Kafka has one offset per partition): handlers are idempotent.
    assert [(d.id, d.attempt) for d in got] == [(ids[0], 2), (ids[1], 2), (ids[2], 2)]
    assert first.id == ids[0]


async def test_members_in_two_processes_share_a_group_and_one_takes_over_on_leave(
    open_kafka: OpenBus,
) -> None:
    a, b = open_kafka(), open_kafka()
    await a.ensure_group(CHUNKS, "all")
    # a joins first: Tansu puts members that join together in generation 0, and aiokafka
    # sends no LeaveGroup from generation 0 (Kafka's generations start at 1).
    assert await a.read(CHUNKS, "all", "a", block_s=0.5) == []
    assert await b.read(CHUNKS, "all", "b", block_s=0.5) == []  # b has joined too
    published = [await a.publish(CHUNKS, chunk(new_video_id(), 0)) for _ in range(30)]
    seen: dict[str, list[str]] = {"a": [], "b": []}

    async def work(name: str, bus: KafkaBus, until: float) -> None:
        while time.monotonic() < until and sum(map(len, seen.values())) < len(published):
            for delivery in await bus.read(CHUNKS, "all", name, count=5, block_s=0.2):
                seen[name].append(delivery.id)
                await bus.ack(delivery)

    until = time.monotonic() + 20
    await asyncio.gather(work("a", a, until), work("b", b, until))
    assert sorted(seen["a"] + seen["b"]) == sorted(published)  # each exactly once
    assert seen["a"] and seen["b"]  # the partitions were shared

    await b.close()  # leaves the group: its partitions go to a at once
    later = [await a.publish(CHUNKS, chunk(new_video_id(), 0)) for _ in range(10)]
    got: list[str] = []
    deadline = time.monotonic() + 15
    while len(got) < len(later) and time.monotonic() < deadline:
        for delivery in await a.read(CHUNKS, "all", "a", count=10, block_s=0.2):
            got.append(delivery.id)
            await a.ack(delivery)
    assert sorted(got) == sorted(later)


async def test_dead_letter_goes_to_the_dead_letter_topic(open_kafka: OpenBus) -> None:
    bus = open_kafka()
    await bus.ensure_group(CHUNKS, "all")
    [event_id], [event] = await publish_chunks(bus, 1)
    [delivery] = await collect(bus, "all", "w1", 1)

    await bus.dead_letter(delivery, "bad media")

    [dead] = await bus.dead_letters(CHUNKS)
    assert (dead.id, dead.event, dead.error, dead.group, dead.attempt) == (
        event_id, event, "bad media", "all", 1)
    assert await bus.backlog(CHUNKS, "all") == 0
    await asyncio.sleep(ACK_TIMEOUT_S + 0.1)
    assert await nothing_for(bus, "all", "w1")


async def test_unreachable_brokers_fail_clearly_and_fast() -> None:
    bus = KafkaBus(f"127.0.0.1:{free_port()}", ack_timeout_s=ACK_TIMEOUT_S)
    try:
        started = time.monotonic()
        with pytest.raises(BrokersUnreachable, match=r"no Kafka broker of 127\.0\.0\.1"):
            await bus.ping()
        assert time.monotonic() - started < 5
        with pytest.raises(BrokersUnreachable):
            await bus.publish(CHUNKS, chunk(new_video_id(), 0))
    finally:
        await bus.close()


async def test_every_subscriber_in_every_process_gets_every_event(
    open_kafka: OpenBus,
) -> None:
    a, b = open_kafka(), open_kafka()
    followers = [await a.subscribe(SEGMENTS), await a.subscribe(SEGMENTS),
                 await b.subscribe(SEGMENTS)]
    video_id = new_video_id()
    events = [segment(video_id, seq) for seq in range(5)]
    for event in events:
        await b.publish(SEGMENTS, event)

    for follower in followers:
        got = [await asyncio.wait_for(anext(follower), 10) for _ in events]
        assert got == events  # one video: one partition, in order


def test_the_url_names_brokers_and_options() -> None:
    settings = load_settings()
    bus = open_bus("kafka://b1:9092,b2:9092?topic_prefix=cc&partitions=12", settings)
    assert bus.topic_name(CHUNKS) == "cc.chunks"
    assert bus.group_id(CHUNKS, "hi") == "cc.chunks.hi"
    with pytest.raises(ValueError, match="unknown Kafka bus options: nope"):
        open_bus("kafka://b1:9092?nope=1", settings)
    with pytest.raises(ValueError, match="names its brokers"):
        open_bus("kafka://", settings)


async def _committed(server: KafkaServer, bus: KafkaBus, group: str) -> dict[int, int]:
    """The group's committed offsets on ``chunks``, by partition, as the broker has them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=server.brokers)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(
            bus.group_id(CHUNKS, group),
            partitions=[TopicPartition(bus.topic_name(CHUNKS), p)
                        for p in range(KAFKA_PARTITIONS)])
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}


async def test_nothing_is_lost_when_the_broker_restarts(
    open_durable: OpenBus, durable_kafka: KafkaServer,
) -> None:
    """Publish, hold some events, kill the broker and start it again: the held events (and
    everything unacked) are delivered again, groups and offsets are kept, and nothing
    acknowledged is delivered again."""
    bus = open_durable()
    await bus.ensure_group(CHUNKS, "all")
    # The held events are published last, so that no acked event is past one of them in a
    # partition (an ack commits only contiguous offsets: that one would come back too).
    others = [await bus.publish(CHUNKS, chunk(new_video_id(), 0)) for _ in range(6)]
    ids, events = await publish_chunks(bus, 4)  # one video: one partition, in order
    got = await collect(bus, "all", "w1", len(others) + len(ids), timeout_s=20)
    assert sorted(d.id for d in got) == sorted(others + ids)
    held = ids[2:]
    for delivery in got:
        if delivery.id not in held:
            await bus.ack(delivery)
    await bus.close()  # commits the acks and leaves the group: the held ones stay unacked
    committed = await _committed(durable_kafka, bus, "all")
    assert committed  # the group is declared and has worked

    await asyncio.to_thread(durable_kafka.restart, crash=True)  # SIGKILL: nothing flushed

    assert await _committed(durable_kafka, bus, "all") == committed
    again = open_durable()
    got = await collect(again, "all", "w2", len(held), timeout_s=20)
    # Their attempt counts are not checked: Kafka says 2, but Tansu answers the tries log's
    # latest offset short of its end (tests/servers/kafka.py), so a new owner may read no
    # count back and say 1.
    assert [(d.id, d.event) for d in got] == list(zip(held, events[2:], strict=True))
    for delivery in got:
        await again.ack(delivery)
    extra: list[Delivery] = []  # longer than the ack timeout: nothing else comes
    deadline = time.monotonic() + ACK_TIMEOUT_S + 0.5
    while time.monotonic() < deadline:
        extra += await again.read(CHUNKS, "all", "w2", count=10, block_s=0.1)
    assert extra == []


async def test_a_running_consumer_goes_on_after_the_broker_restarts(
    open_durable: OpenBus, durable_kafka: KafkaServer,
) -> None:
    """A process reading a group and following a topic while the broker is killed and
    started again reconnects by itself: it gets what is published after the restart, and
    nothing it acknowledged before."""
    bus = open_durable()
    await bus.ensure_group(CHUNKS, "all")
    follower = await bus.subscribe(SEGMENTS)
    before, _ = await publish_chunks(bus, 2)
    seen: list[Delivery] = []

    async def work(want: int) -> None:
        while len(seen) < want:
            for delivery in await bus.read(CHUNKS, "all", "w1", count=10, block_s=0.2):
                seen.append(delivery)
                await bus.ack(delivery)

    await asyncio.wait_for(work(len(before)), 20)
    deadline = time.monotonic() + 5  # the acks are committed within milliseconds
    while sum((await _committed(durable_kafka, bus, "all")).values()) < len(before):
        assert time.monotonic() < deadline, "the acks were not committed"
        await asyncio.sleep(0.02)
    worker = asyncio.create_task(work(len(before) + 3))  # reads on through the restart
    try:
        await asyncio.to_thread(durable_kafka.restart, crash=True)

        video_id = new_video_id()
        after = [await bus.publish(CHUNKS, chunk(video_id, seq)) for seq in range(3)]
        await bus.publish(SEGMENTS, segment(video_id, 0))
        await asyncio.wait_for(worker, 20)
    finally:
        worker.cancel()
    # One video: one partition, in order; nothing acked before the restart came back.
    assert [(d.id, d.attempt) for d in seen] == [(i, 1) for i in before + after]
    assert await asyncio.wait_for(anext(follower), 10) == segment(video_id, 0)
