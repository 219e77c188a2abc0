"""Event bus benchmark: memory, Redis and Kafka (a Tansu broker) in one run.

For each bus: chunk events per second published (32 publishers at a time) and consumed
(read 100 at a time, each acked; the consumer joined its group before, and how long that
took is reported apart), the time from "segment ready" published by another
process to a subscriber notified (p50/p99), and, for the buses with consumer groups across
processes, how long a live stream (a chunk every 50 ms) stalls when a second member joins
its group and when it leaves (the longest wait between two deliveries, minus the 50 ms).

    .venv/bin/python bench/bus.py [--events 3000] [--notifies 300]

Targets: >= 1,000 chunk events/s, Kafka notify p99 within 2x Redis, rebalance stall <= 1 s.
Writes bench/results/bus-*.json.
"""

import argparse
import asyncio
import contextlib
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.servers.kafka import run_kafka  # noqa: E402
from tests.servers.redis import run_redis  # noqa: E402

from capacity import Measured, write_capacity  # noqa: E402
from chunkcast.adapters.bus.kafka import KafkaBus  # noqa: E402
from chunkcast.adapters.bus.memory import MemoryBus  # noqa: E402
from chunkcast.adapters.bus.redis import RedisBus  # noqa: E402
from chunkcast.domain import keys  # noqa: E402
from chunkcast.domain.clock import iso_now  # noqa: E402
from chunkcast.domain.events import CHUNKS, SEGMENTS, ChunkUploaded, SegmentReady  # noqa: E402
from chunkcast.domain.ids import new_video_id  # noqa: E402
from chunkcast.domain.plan import BUS_EVENTS  # noqa: E402
from chunkcast.ports.bus import EventBus  # noqa: E402
from common import write_result  # noqa: E402

PUBLISHERS = 32
LIVE_INTERVAL_S = 0.05
LOCAL_VIDEO = new_video_id()


def chunk(video_id: str, seq: int) -> ChunkUploaded:
    return ChunkUploaded(video_id=video_id, kind="live", seq=seq,
                         key=keys.chunk(video_id, seq), pts_start=seq, duration=1.0,
                         captured_at=iso_now(), reported_at=iso_now())


def ready(video_id: str, seq: int) -> SegmentReady:
    return SegmentReady(video_id=video_id, rendition="240p", seq=seq,
                        key=keys.segment(video_id, "240p", seq),
                        init_key=keys.init_segment(video_id, "240p"), pts_start=seq,
                        duration=1.0, captured_at=None, ready_at=iso_now())


def open_bus(kind: str, where: str, prefix: str, session_ms: int = 6_000) -> EventBus:
    if kind == "memory":
        return MemoryBus(None, ack_timeout_s=3.0)
    if kind == "redis":
        return RedisBus(where, prefix=prefix, ack_timeout_s=3.0)
    return KafkaBus(where, prefix=prefix, ack_timeout_s=3.0, session_timeout_ms=session_ms)


async def throughput(bus: EventBus, events: int) -> dict[str, float]:
    """Publish, then consume; the consumer joins its group first, apart (a worker joins
    once when it starts: that is the rebalance figures' business, not the rate's)."""
    await bus.ensure_group(CHUNKS, "bench")
    started = time.perf_counter()
    assert await bus.read(CHUNKS, "bench", "c1", block_s=0.01) == []
    joined = time.perf_counter() - started
    videos = [new_video_id() for _ in range(8)]  # a few live streams at once
    started = time.perf_counter()
    for first in range(0, events, PUBLISHERS):
        await asyncio.gather(*(bus.publish(CHUNKS, chunk(videos[n % 8], n))
                               for n in range(first, min(events, first + PUBLISHERS))))
    published = events / (time.perf_counter() - started)
    done = 0
    started = time.perf_counter()
    while done < events:
        deliveries = await bus.read(CHUNKS, "bench", "c1", count=100, block_s=1.0)
        await asyncio.gather(*(bus.ack(d) for d in deliveries))
        done += len(deliveries)
    return {"published_per_s": round(published), "consumed_per_s":
            round(events / (time.perf_counter() - started)), "group_join_s": round(joined, 2)}


async def notify(bus: EventBus, kind: str, where: str, prefix: str, count: int) -> dict[str, Any]:
    """Latency from a publish in another process (in this one for memory) to here."""
    following = await bus.subscribe(SEGMENTS)
    if kind == "memory":
        async def local() -> None:
            for seq in range(count):
                await bus.publish(SEGMENTS, ready(LOCAL_VIDEO, seq))
                await asyncio.sleep(0.005)

        publisher: Any = asyncio.create_task(local())
    else:
        publisher = subprocess.Popen([sys.executable, __file__, "--publish", kind, where, prefix,
                                      str(count)])
    waits = []
    for _ in range(count):
        event = await asyncio.wait_for(anext(following), 30)
        assert isinstance(event, SegmentReady)
        sent = datetime.fromisoformat(event.ready_at.replace("Z", "+00:00"))
        waits.append((datetime.now(UTC) - sent).total_seconds() * 1000)
    if isinstance(publisher, subprocess.Popen):
        publisher.wait(30)
    waits.sort()
    return {"notify_p50_ms": round(statistics.median(waits), 1),
            "notify_p99_ms": round(waits[int(0.99 * (len(waits) - 1))], 1),
            "across_processes": kind != "memory"}


async def publish_segments(kind: str, where: str, prefix: str, count: int) -> None:
    bus = open_bus(kind, where, prefix)
    await bus.publish("bench_warmup", ready(new_video_id(), 0))  # connections open first
    await asyncio.sleep(1.0)  # the subscriber is positioned before the warm-up returns
    video = new_video_id()
    for seq in range(count):
        await bus.publish(SEGMENTS, ready(video, seq))
        await asyncio.sleep(0.005)
    await bus.close()


async def rebalance(kind: str, where: str, session_ms: int) -> dict[str, float]:
    """The longest pause of a live stream's deliveries when a member joins, then leaves."""
    prefix = f"bench-{uuid4().hex[:8]}"
    first, second = (open_bus(kind, where, prefix, session_ms) for _ in range(2))
    await first.ensure_group(CHUNKS, "live")
    await first.read(CHUNKS, "live", "warm", block_s=0.5)  # joined before the clock starts
    delivered: list[float] = []
    stop = asyncio.Event()

    async def member(bus: EventBus, name: str, until: asyncio.Event) -> None:
        while not until.is_set():
            for delivery in await bus.read(CHUNKS, "live", name, count=10, block_s=0.05):
                delivered.append(time.monotonic())
                await bus.ack(delivery)

    async def stream() -> None:
        live, seq = new_video_id(), 0
        while not stop.is_set():
            await first.publish(CHUNKS, chunk(live, seq))
            seq += 1
            await asyncio.sleep(LIVE_INTERVAL_S)

    leaves = asyncio.Event()
    tasks = [asyncio.create_task(stream()), asyncio.create_task(member(first, "a", stop))]
    await asyncio.sleep(3)
    joined_at = time.monotonic()
    tasks.append(asyncio.create_task(member(second, "b", leaves)))
    await asyncio.sleep(3 + 2 * session_ms / 1000)
    leaves.set()
    await tasks[-1]
    await second.close()
    left_at = time.monotonic()
    await asyncio.sleep(3 + 2 * session_ms / 1000)
    stop.set()
    await asyncio.gather(*tasks)
    await first.close()

    def stall(start: float, end: float) -> float:
        times = [start] + [t for t in delivered if start <= t <= end]
        return max(b - a for a, b in itertools.pairwise(times)) - LIVE_INTERVAL_S

    return {"join_stall_s": round(stall(joined_at, left_at), 2),
            "leave_stall_s": round(stall(left_at, left_at + 3 + session_ms / 1000), 2)}


@contextlib.contextmanager
def servers(root: Path) -> Iterator[dict[str, str]]:
    with run_redis(root / "redis") as redis, run_kafka(root / "kafka") as kafka:
        yield {"memory": "", "redis": redis.url, "kafka": kafka.brokers}


async def main(events: int, notifies: int) -> None:
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch, servers(Path(scratch)) as where:
        for kind in ("memory", "redis", "kafka"):
            prefix = f"bench-{uuid4().hex[:8]}"
            bus = open_bus(kind, where[kind], prefix)
            figures = await throughput(bus, events)
            figures |= await notify(bus, kind, where[kind], prefix, notifies)
            await bus.close()
            result[kind] = figures
            print(kind, figures, flush=True)
        for kind, session_ms in (("redis", 6_000), ("kafka", 6_000), ("kafka", 1_000)):
            figures = await rebalance(kind, where[kind], session_ms)
            result[f"rebalance_{kind}_session_{session_ms}ms"] = figures
            print("rebalance", kind, session_ms, figures, flush=True)
    kafka, redis = result["kafka"], result["redis"]
    result["ratios"] = {"kafka_notify_p99_over_redis": round(
        kafka["notify_p99_ms"] / max(redis["notify_p99_ms"], 0.1), 2)}
    print("ratios", result["ratios"])
    path = write_result("bus", {"events": events, "notifies": notifies, **result})
    print(path)
    # What `chunkcast plan` plans with: Redis, the default distributed bus.
    print(write_capacity("bus", {BUS_EVENTS: Measured(
        redis["consumed_per_s"], "events/s",
        f"chunk events consumed per second from one Redis node, "
        f"notify p99 {redis['notify_p99_ms']} ms; {path.name}")}, path))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--publish":
        kind, where, prefix, count = sys.argv[2:6]
        asyncio.run(publish_segments(kind, where, prefix, int(count)))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--notifies", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.notifies))
