"""In-process event bus with the semantics of the distributed one.

Topics are logs of integer ids; each consumer group has a start id, the ids waiting for it,
the ids it acked that another group still needs, and the ids in flight with their attempt
counts.

Retention, so that a process can run for months:

- A topic without a consumer group (``segments``, ``videos``: API processes only follow
  them live) keeps nothing: an event goes to the current subscribers and is forgotten. It
  is never journaled.
- An event of a topic with groups is kept until every group that existed when it was
  published has acked it (dead-lettering acks), then dropped.
- Each subscriber has a queue of at most ``subscriber_limit`` events. A subscriber that
  falls that far behind is cut off: its queue is dropped and its iterator raises
  :class:`SubscriptionLost`; it subscribes again and recovers what it missed from the
  catalogue (see the live feed).
- ``dead_letters`` keeps the last :data:`DEAD_LETTER_LIMIT` events set aside.

With a journal file, every publish (of a topic with groups), group, delivery and ack is
appended as a JSON line, so events that were waiting or in flight when the process stopped
are handed out again after a restart, with their attempt counts. The journal holds only
what is still unacked: it is rewritten with the live state when the bus opens, and again
whenever its dead lines (about events since dropped) outnumber the live ones and
``compact_after_lines``, so its size follows the work in flight, not history.
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chunkcast.config import Settings
from chunkcast.domain.events import Event, decode, encode
from chunkcast.ports.bus import Delivery, SubscriptionLost

from .journal import Journal, Record

DEAD_LETTER_LIMIT = 1_000
SUBSCRIBER_LIMIT = 10_000
COMPACT_AFTER_LINES = 1_000
# Ids are reserved this many at a time in the journal, so that ids of events that are never
# journaled (topics without groups) are not reused after a restart either.
ID_BLOCK = 1_024


@dataclass
class _InFlight:
    consumer: str
    since: float


@dataclass
class _Group:
    start: int
    waiting: deque[int] = field(default_factory=deque)  # not handed out since (re)start
    acked: set[int] = field(default_factory=set)  # only ids another group still needs
    in_flight: dict[int, _InFlight] = field(default_factory=dict)  # until acked
    attempts: dict[int, int] = field(default_factory=dict)  # ids not acked yet


@dataclass
class _Topic:
    next_id: int = 0
    reserved: int = 0  # the journal says no id below this may be used again
    messages: dict[int, Event] = field(default_factory=dict)  # until every group acked
    groups: dict[str, _Group] = field(default_factory=dict)


class _Subscription:
    """One subscriber's queue, cut off past ``limit`` waiting events."""

    def __init__(self, limit: int) -> None:
        self._events: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._limit = limit
        self._lost = False

    def offer(self, event: Event) -> bool:
        """Queue ``event``; False (and the subscription is over) when it is full."""
        if len(self._events) >= self._limit:
            self._lost = True
            self._events.clear()
        else:
            self._events.append(event)
        self._ready.set()
        return not self._lost

    async def next(self) -> Event:
        while not self._events:
            if self._lost:
                raise SubscriptionLost(f"fell {self._limit} events behind")
            self._ready.clear()
            await self._ready.wait()
        return self._events.popleft()


class MemoryBus:
    """``ack_timeout_s``: how long an event may stay in flight before another consumer gets
    it; ``subscriber_limit``: events queued for one subscriber before it is cut off;
    ``compact_after_lines``: dead journal lines tolerated before a rewrite, at least."""

    def __init__(
        self, journal: Path | None = None, ack_timeout_s: float = 60.0, *,
        subscriber_limit: int = SUBSCRIBER_LIMIT, compact_after_lines: int = COMPACT_AFTER_LINES,
    ) -> None:
        self._topics: dict[str, _Topic] = {}
        # Per topic; a subscription leaves when its iterator is closed or it is cut off.
        self._subscribers: dict[str, set[_Subscription]] = {}
        # Inspected by operators and tests; the oldest go first.
        self.dead_letters: deque[tuple[Delivery, str]] = deque(maxlen=DEAD_LETTER_LIMIT)
        self._changed = asyncio.Condition()
        self._ack_timeout = ack_timeout_s
        self._subscriber_limit = subscriber_limit
        self._compact_after = compact_after_lines
        self._journal: Journal | None = None
        if journal is not None:
            self._journal = Journal(journal)
            for record in self._journal.read():
                self._apply(record)
            self._after_replay()
            self._journal.rewrite(self._state())

    # -- journal ---------------------------------------------------------------------------

    def _apply(self, record: Record) -> None:
        topic = self._topic(record["topic"])
        match record["op"]:
            case "pub":
                msg_id = record["id"]
                topic.next_id = max(topic.next_id, msg_id + 1)
                # Kept only if a group needs it (journals written before topics without
                # groups stopped being journaled hold their events too).
                if any(g.start <= msg_id for g in topic.groups.values()):
                    topic.messages[msg_id] = decode(record["event"])
            case "next":  # ids are never reused
                topic.next_id = max(topic.next_id, record["id"])
            case "group":
                topic.groups.setdefault(record["group"], _Group(record["start"]))
                topic.next_id = max(topic.next_id, record["start"])
            case "try":
                group = topic.groups.get(record["group"])
                msg_id = record["id"]
                if group is not None and msg_id in topic.messages:
                    group.attempts[msg_id] = group.attempts.get(msg_id, 0) + record.get("n", 1)
            case "ack":
                group = topic.groups.get(record["group"])
                msg_id = record["id"]
                if group is not None and msg_id in topic.messages:
                    group.attempts.pop(msg_id, None)
                    group.acked.add(msg_id)
                    self._forget_if_done(topic, msg_id)

    def _after_replay(self) -> None:
        """Everything kept and not acked is waiting again; ids go on above all used ones."""
        for topic in self._topics.values():
            topic.reserved = topic.next_id
            for group in topic.groups.values():
                group.waiting = deque(i for i in topic.messages
                                      if i >= group.start and i not in group.acked)

    def _state(self) -> Iterator[Record]:
        """The live state as journal records: what a rewritten journal holds."""
        for name, topic in self._topics.items():
            yield {"op": "next", "topic": name, "id": max(topic.next_id, topic.reserved)}
            for group_name, group in topic.groups.items():
                yield {"op": "group", "topic": name, "group": group_name, "start": group.start}
            for msg_id, event in topic.messages.items():
                yield {"op": "pub", "topic": name, "id": msg_id, "event": encode(event)}
            for group_name, group in topic.groups.items():
                for msg_id in sorted(group.acked):
                    yield {"op": "ack", "topic": name, "group": group_name, "id": msg_id}
                for msg_id, tries in group.attempts.items():
                    yield {"op": "try", "topic": name, "group": group_name, "id": msg_id,
                           "n": tries}

    def _live_lines(self) -> int:
        """How many records :meth:`_state` would write."""
        return sum(1 + len(t.groups) + len(t.messages)
                   + sum(len(g.acked) + len(g.attempts) for g in t.groups.values())
                   for t in self._topics.values())

    def _log(self, **record: object) -> None:
        if self._journal is not None:
            self._journal.append(record)

    def _compact_if_worth_it(self) -> None:
        if self._journal is None:
            return
        live = self._live_lines()
        if self._journal.lines - live > max(live, self._compact_after):
            self._journal.rewrite(self._state())

    # -- bus -------------------------------------------------------------------------------

    def _topic(self, name: str) -> _Topic:
        return self._topics.setdefault(name, _Topic())

    def _new_id(self, name: str, topic: _Topic) -> int:
        if topic.next_id >= topic.reserved:
            topic.reserved = topic.next_id + ID_BLOCK
            self._log(op="next", topic=name, id=topic.reserved)
        topic.next_id += 1
        return topic.next_id - 1

    async def publish(self, topic: str, event: Event) -> str:
        t = self._topic(topic)
        msg_id = self._new_id(topic, t)
        if t.groups:  # every group started at or before this id
            t.messages[msg_id] = event
            for group in t.groups.values():
                group.waiting.append(msg_id)
            self._log(op="pub", topic=topic, id=msg_id, event=encode(event))
        self._compact_if_worth_it()
        subscribers = self._subscribers.get(topic, set())
        for subscription in list(subscribers):
            if not subscription.offer(event):
                subscribers.discard(subscription)
        async with self._changed:
            self._changed.notify_all()
        return str(msg_id)

    async def ensure_group(self, topic: str, group: str) -> None:
        t = self._topic(topic)
        if group not in t.groups:
            t.groups[group] = _Group(t.next_id)
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
        while len(ids) < count and group.waiting:
            msg_id = group.waiting.popleft()
            if msg_id in t.messages and msg_id not in group.acked:
                ids.append(msg_id)
        out = []
        for msg_id in ids:
            attempt = group.attempts.get(msg_id, 0) + 1
            group.attempts[msg_id] = attempt
            group.in_flight[msg_id] = _InFlight(consumer, now)
            # Deliveries are journaled so a poison event's count survives crashes it causes.
            self._log(op="try", topic=topic, group=group_name, id=msg_id)
            out.append(Delivery(topic, group_name, str(msg_id), t.messages[msg_id], attempt,
                                consumer))
        if out:
            self._compact_if_worth_it()
        return out

    async def keep(self, delivery: Delivery) -> bool:
        # In-flight times are not journaled (a restart makes everything unacked waiting
        # again), so neither is this.
        group = self._topic(delivery.topic).groups.get(delivery.group)
        held = None if group is None else group.in_flight.get(int(delivery.id))
        if held is None or held.consumer != delivery.consumer:
            return False
        held.since = time.monotonic()
        return True

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
        self._compact_if_worth_it()

    async def dead_letter(self, delivery: Delivery, error: str) -> None:
        self.dead_letters.append((delivery, error))
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

    def retained(self, topic: str) -> int:
        """How many events of ``topic`` the bus holds (for operators and tests)."""
        return len(self._topic(topic).messages)

    async def subscribe(self, topic: str) -> AsyncIterator[Event]:
        # Registered now, not at the first iteration, so nothing published after this
        # call is missed.
        subscription = _Subscription(self._subscriber_limit)
        subscribers = self._subscribers.setdefault(topic, set())
        subscribers.add(subscription)
        return self._drain(subscription, subscribers)

    @staticmethod
    async def _drain(subscription: _Subscription,
                     subscribers: set[_Subscription]) -> AsyncIterator[Event]:
        try:
            while True:
                yield await subscription.next()
        finally:
            subscribers.discard(subscription)

    async def ping(self) -> None:
        """In-process: always there."""

    async def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def open_bus(url: str, settings: Settings) -> MemoryBus:
    """``memory://`` -> an in-process bus journaled in the data dir (``memory://?journal=0``
    keeps nothing on disk)."""
    journal = None if "journal=0" in url else settings.data_dir / "bus.journal"
    return MemoryBus(journal, ack_timeout_s=settings.ack_timeout_seconds)
