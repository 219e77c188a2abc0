"""In-process event bus with the semantics of the distributed one.

Topics are append-only logs of integer ids; each consumer group has a start id, a cursor,
the set of ids it acked and the ids in flight. With a journal file every publish, group and
ack is appended as a JSON line, so events that were waiting or in flight when the process
stopped are handed out again after a restart. The journal is compacted on open.
"""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from chunkcast.config import Settings
from chunkcast.domain.events import Event, decode, encode
from chunkcast.ports.bus import Delivery


@dataclass
class _InFlight:
    consumer: str
    since: float
    attempt: int


@dataclass
class _Group:
    start: int
    cursor: int
    acked: set[int] = field(default_factory=set)
    in_flight: dict[int, _InFlight] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)


@dataclass
class _Topic:
    next_id: int = 0
    messages: dict[int, Event] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)


class MemoryBus:
    """``ack_timeout_s``: how long an event may stay in flight before another consumer gets it."""

    def __init__(self, journal: Path | None = None, ack_timeout_s: float = 60.0) -> None:
        self._topics: dict[str, _Topic] = {}
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = {}
        self.dead_letters: list[tuple[Delivery, str]] = []  # inspected by operators and tests
        self._changed = asyncio.Condition()
        self._ack_timeout = ack_timeout_s
        self._journal: IO[str] | None = None
        if journal is not None:
            self._replay(journal)
            self._compact(journal)

    # -- journal ---------------------------------------------------------------------------

    def _replay(self, path: Path) -> None:
        if not path.exists():
            return
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: the op never completed
                self._apply(record)

    def _apply(self, record: dict[str, Any]) -> None:
        topic = self._topic(record["topic"])
        match record["op"]:
            case "pub":
                topic.messages[record["id"]] = decode(record["event"])
                topic.next_id = max(topic.next_id, record["id"] + 1)
            case "next":  # written by compaction: ids are never reused
                topic.next_id = max(topic.next_id, record["id"])
            case "try":
                group = topic.groups.get(record["group"])
                if group is not None:
                    group.attempts[record["id"]] = group.attempts.get(record["id"], 0) + 1
            case "group":
                topic.groups.setdefault(record["group"], _Group(record["start"], record["start"]))
                topic.next_id = max(topic.next_id, record["start"])
            case "ack":
                group = topic.groups.get(record["group"])
                if group is not None:
                    group.acked.add(record["id"])
                    self._forget_if_done(topic, record["id"])

    def _compact(self, path: Path) -> None:
        temp = path.with_suffix(".tmp")
        with temp.open("w", encoding="utf-8") as out:
            for name, topic in self._topics.items():
                self._dump(out, op="next", topic=name, id=topic.next_id)
                for group_name, group in topic.groups.items():
                    self._dump(out, op="group", topic=name, group=group_name, start=group.start)
                for msg_id, event in topic.messages.items():
                    self._dump(out, op="pub", topic=name, id=msg_id, event=encode(event))
                for group_name, group in topic.groups.items():
                    for msg_id in sorted(group.acked):
                        self._dump(out, op="ack", topic=name, group=group_name, id=msg_id)
                    for msg_id, tries in group.attempts.items():
                        for _ in range(tries):
                            self._dump(out, op="try", topic=name, group=group_name, id=msg_id)
        temp.replace(path)
        self._journal = path.open("a", encoding="utf-8")

    @staticmethod
    def _dump(out: IO[str], **record: Any) -> None:
        out.write(json.dumps(record, separators=(",", ":")) + "\n")

    def _log(self, **record: Any) -> None:
        if self._journal is not None:
            self._dump(self._journal, **record)
            self._journal.flush()

    # -- bus -------------------------------------------------------------------------------

    def _topic(self, name: str) -> _Topic:
        return self._topics.setdefault(name, _Topic())

    async def publish(self, topic: str, event: Event) -> str:
        t = self._topic(topic)
        msg_id = t.next_id
        t.next_id += 1
        t.messages[msg_id] = event
        self._log(op="pub", topic=topic, id=msg_id, event=encode(event))
        for queue in self._subscribers.get(topic, ()):
            queue.put_nowait(event)
        async with self._changed:
            self._changed.notify_all()
        return str(msg_id)

    async def ensure_group(self, topic: str, group: str) -> None:
        t = self._topic(topic)
        if group not in t.groups:
            t.groups[group] = _Group(t.next_id, t.next_id)
            self._log(op="group", topic=topic, group=group, start=t.next_id)

    async def read(
        self, topic: str, group: str, consumer: str, *, count: int = 1, block_s: float = 1.0
    ) -> list[Delivery]:
        deadline = time.monotonic() + block_s
        while True:
            out = self._take(topic, group, consumer, count)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 0.25))

    def _take(self, topic: str, group_name: str, consumer: str, count: int) -> list[Delivery]:
        t = self._topic(topic)
        group = t.groups.get(group_name)
        if group is None:
            raise KeyError(f"no consumer group {group_name!r} on topic {topic!r}")
        now = time.monotonic()
        expired = (i for i, f in group.in_flight.items() if now - f.since > self._ack_timeout)
        ids = [i for i, _ in zip(expired, range(count), strict=False)]
        while len(ids) < count and group.cursor < t.next_id:
            if group.cursor in t.messages and group.cursor not in group.acked:
                ids.append(group.cursor)
            group.cursor += 1
        out = []
        for msg_id in ids:
            attempt = group.attempts.get(msg_id, 0) + 1
            group.attempts[msg_id] = attempt
            group.in_flight[msg_id] = _InFlight(consumer, now, attempt)
            # Deliveries are journaled so a poison event's count survives crashes it causes.
            self._log(op="try", topic=topic, group=group_name, id=msg_id)
            out.append(Delivery(topic, group_name, str(msg_id), t.messages[msg_id], attempt))
        return out

    async def ack(self, delivery: Delivery) -> None:
        t = self._topic(delivery.topic)
        group = t.groups[delivery.group]
        msg_id = int(delivery.id)
        if msg_id in group.acked or msg_id not in t.messages:
            return
        group.in_flight.pop(msg_id, None)
        group.attempts.pop(msg_id, None)
        group.acked.add(msg_id)
        self._log(op="ack", topic=delivery.topic, group=delivery.group, id=msg_id)
        self._forget_if_done(t, msg_id)

    async def dead_letter(self, delivery: Delivery, error: str) -> None:
        self.dead_letters.append((delivery, error))
        self._log(op="dead", topic=delivery.topic, group=delivery.group, id=int(delivery.id),
                  error=error)
        await self.ack(delivery)

    def _forget_if_done(self, topic: _Topic, msg_id: int) -> None:
        """Drop an event once every group that should see it has acked it."""
        relevant = [g for g in topic.groups.values() if g.start <= msg_id]
        if all(msg_id in g.acked for g in relevant):
            topic.messages.pop(msg_id, None)
            for g in relevant:
                g.acked.discard(msg_id)

    async def backlog(self, topic: str, group: str) -> int:
        t = self._topic(topic)
        g = t.groups.get(group)
        if g is None:
            return 0
        return sum(1 for i in t.messages if i >= g.start and i not in g.acked)

    def subscribe(self, topic: str) -> AsyncIterator[Event]:
        # Registered now, not at the first iteration, so nothing published after this
        # call is missed.
        queue: asyncio.Queue[Event] = asyncio.Queue()
        subscribers = self._subscribers.setdefault(topic, set())
        subscribers.add(queue)
        return self._drain(queue, subscribers)

    @staticmethod
    async def _drain(queue: asyncio.Queue[Event],
                     subscribers: set[asyncio.Queue[Event]]) -> AsyncIterator[Event]:
        try:
            while True:
                yield await queue.get()
        finally:
            subscribers.discard(queue)

    async def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def open_bus(url: str, settings: Settings) -> MemoryBus:
    """``memory://`` -> an in-process bus journaled in the data dir (``memory://?journal=0``
    keeps nothing on disk)."""
    journal = None if "journal=0" in url else settings.data_dir / "bus.journal"
    return MemoryBus(journal, ack_timeout_s=settings.ack_timeout_seconds)
