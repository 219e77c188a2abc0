"""Helpers for the EventBus suites: sample events, reading until enough arrived."""

import time

from chunkcast.domain import keys
from chunkcast.domain.events import CHUNKS, SEGMENTS, ChunkUploaded, Event, SegmentReady
from chunkcast.domain.ids import new_video_id
from chunkcast.ports.bus import Delivery, EventBus

from .backends import ACK_TIMEOUT_S

# Long enough for a redelivery that needs the ack timeout to pass first.
PATIENCE_S = 3 * ACK_TIMEOUT_S + 1.0


def chunk(video_id: str, seq: int) -> ChunkUploaded:
    return ChunkUploaded(
        video_id=video_id, kind="live", seq=seq, key=keys.chunk(video_id, seq),
        pts_start=2.0 * seq, duration=2.0, captured_at=f"2026-11-24T10:00:{2 * seq:02d}.123Z",
    )


def segment(video_id: str, seq: int) -> SegmentReady:
    return SegmentReady(
        video_id=video_id, rendition="240p", seq=seq, key=keys.segment(video_id, "240p", seq),
        init_key=keys.init_segment(video_id, "240p"), pts_start=2.0 * seq, duration=2.0,
        captured_at=None, ready_at="2026-11-24T10:00:00.123Z",
    )


async def publish_segments(bus: EventBus, count: int) -> list[Event]:
    """``count`` events on ``segments``, a topic without consumer groups."""
    video_id = new_video_id()
    events: list[Event] = [segment(video_id, seq) for seq in range(count)]
    for event in events:
        await bus.publish(SEGMENTS, event)
    return events


async def publish_chunks(bus: EventBus, count: int) -> tuple[list[str], list[Event]]:
    video_id = new_video_id()
    events: list[Event] = [chunk(video_id, seq) for seq in range(count)]
    ids = [await bus.publish(CHUNKS, event) for event in events]
    return ids, events


async def collect(
    bus: EventBus, group: str, consumer: str, want: int, *, topic: str = CHUNKS,
    timeout_s: float = PATIENCE_S,
) -> list[Delivery]:
    """Read until ``want`` deliveries arrived or ``timeout_s`` passed (nothing is acked)."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += await bus.read(topic, group, consumer, count=want - len(got), block_s=0.1)
    return got


async def nothing_for(bus: EventBus, group: str, *consumers: str, topic: str = CHUNKS) -> bool:
    """True when none of ``consumers`` gets anything right now."""
    for consumer in consumers:
        if await bus.read(topic, group, consumer, count=10, block_s=0.05):
            return False
    return True
