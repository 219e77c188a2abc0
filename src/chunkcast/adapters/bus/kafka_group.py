"""One process's member of one Kafka consumer group (a bus group on one topic).

The port hands out single events and takes acks in any order; Kafka keeps one committed
offset per partition. This member bridges the two (see :mod:`.kafka` for the whole mapping):

- Every reader of the group in this process (the worker's slots) shares one Kafka consumer.
  Records fetched from the partitions assigned to it are handed out one by one; an event
  handed out and neither acked nor kept within the ack timeout is handed out again here.
- An ack marks the event done; the partition's committed offset moves only over a
  contiguous run of done events, so a crash or a rebalance redelivers whatever was not
  finished (and what was finished past an unfinished one: handlers are idempotent).
  Acks are committed together, at most ``COMMIT_DELAY_S`` after the first of them (and at
  once before the member gives up a partition or closes): an ack returns without waiting
  for the broker, and a crash redelivers what was acked in that last moment too.
- Every delivery is appended to the group's *tries log* (a topic with the same partitions,
  records ``{"o": offset, "n": attempt}``) before it is handed out. The log's own committed
  offset (a consumer group of its own) moves with the committed offset of the events, so
  the next owner of a partition reads only the few records about events past the committed
  offset, and goes on counting attempts where the last owner stopped, across crashes.
- A partition that leaves and comes back in one rebalance (eager rebalancing revokes
  everything) keeps its events in flight here, unless someone else committed meanwhile.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from aiokafka.structs import TopicPartition

from chunkcast.domain.events import Event, decode
from chunkcast.ports.bus import Delivery

log = logging.getLogger(__name__)

# Events of one partition handed out (or done) past its committed offset before the member
# stops fetching from it: bounds what an event stuck at the head of a partition holds up.
WINDOW = 1_000
FETCH_SLICE_S = 0.1  # a blocked read looks for expired events at least this often
# Acks of this long are committed in one request (a round trip per ack capped the rate).
COMMIT_DELAY_S = 0.01
# A commit that failed because the partition moved: its new owner delivers again.
MOVED = (CommitFailedError, IllegalGenerationError, IllegalStateError,
         RebalanceInProgressError, UnknownMemberIdError)

Bury = Callable[[str, str, str, str, int], Awaitable[None]]
"""Set an unreadable record aside: (group, id, data, error, attempt)."""


@dataclass
class _Partition:
    """What this member knows of one partition: ``frontier`` is the first offset not done
    (what is committed once it moves), ``done`` the done offsets past it, ``tries`` the
    deliveries counted of offsets past it and ``logged`` where each is first in the tries
    log; ``next`` the offset after the last one handed out."""

    frontier: int
    committed: int
    tries: dict[int, int]
    logged: dict[int, int]
    log_end: int
    next: int
    done: set[int] = field(default_factory=set)
    owned: bool = True

    def log_floor(self) -> int:
        """Where the tries log must be read from to know every count still needed."""
        return min((at for offset, at in self.logged.items() if offset >= self.frontier),
                   default=self.log_end)


@dataclass
class _Held:
    consumer: str
    since: float
    attempt: int
    event: Event


def delivery_id(partition: int, offset: int) -> str:
    return f"{partition}-{offset}"


def parse_delivery_id(value: str) -> tuple[int, int]:
    partition, _, offset = value.partition("-")
    return int(partition), int(offset)


class GroupMember(ConsumerRebalanceListener):  # type: ignore[misc]
    """``topic``/``group``: the bus's names; ``data``/``tries``: the Kafka topics;
    ``group_id``: the Kafka group (the tries log's is ``{group_id}.tries``)."""

    def __init__(
        self, topic: str, group: str, *, data: str, tries: str, group_id: str,
        producer: AIOKafkaProducer, ack_timeout_s: float, bury: Bury,
        options: dict[str, Any], member: dict[str, Any], fetch_wait_ms: int,
    ) -> None:
        self.topic, self.group = topic, group
        self._data, self._tries_topic = data, tries
        self._producer = producer
        self._ack_timeout = ack_timeout_s
        self._bury = bury
        self._consumer = AIOKafkaConsumer(
            group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            **options, **member)
        # Read only while taking partitions over, when every fetch held by the broker
        # (Tansu holds each one for the whole wait) delays the partitions' first events.
        self._log = AIOKafkaConsumer(group_id=f"{group_id}.tries", enable_auto_commit=False,
                                     auto_offset_reset="earliest",
                                     fetch_max_wait_ms=fetch_wait_ms, **options)
        # Per partition of the topic; one entry per partition ever assigned here.
        self._parts: dict[int, _Partition] = {}
        # Handed out and not acked, by (partition, offset); at most the window per partition.
        self._held: dict[tuple[int, int], _Held] = {}
        self._ready: deque[Any] = deque()  # fetched, not handed out yet
        self._fetching = asyncio.Lock()
        self._committing = asyncio.Lock()
        self._changes = self._committed_changes = 0
        self._committer: asyncio.Task[None] | None = None  # commits what acks leave behind
        self._joined = asyncio.Event()
        self._paused: set[TopicPartition] = set()

    async def start(self, partitions: set[int]) -> None:
        await self._consumer.start()
        await self._log.start()
        self._log_tps = [TopicPartition(self._tries_topic, p) for p in sorted(partitions)]
        self._log.assign(self._log_tps)
        self._log.pause(*self._log_tps)
        self._consumer.subscribe([self._data], listener=self)

    async def close(self) -> None:
        if self._committer is not None:
            self._committer.cancel()
            await asyncio.wait([self._committer])
        with contextlib.suppress(Exception):
            await self._commit()
        await self._consumer.stop()  # leaves the group: its partitions move at once
        await self._log.stop()

    # -- rebalances ------------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        with contextlib.suppress(Exception):
            self._changes += 1
            await self._commit()
        gone = {tp.partition for tp in revoked}
        for p in gone:
            if p in self._parts:
                self._parts[p].owned = False
        self._ready = deque(r for r in self._ready if r.partition not in gone)
        self._paused -= revoked

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        taken: dict[int, int] = {}  # partition -> committed offset, for those taken over
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            part = self._parts.get(tp.partition)
            if part is not None and committed == part.committed:
                # Back after a rebalance nobody else worked in: go on where we were.
                part.owned = True
                self._consumer.seek(tp, part.next)
                continue
            for key in [k for k in self._held if k[0] == tp.partition]:
                del self._held[key]  # held under an older ownership: read again below
            if committed is None:
                committed = (await self._consumer.beginning_offsets([tp]))[tp]
            taken[tp.partition] = committed
        for p, (tries, logged, end) in (await self._read_tries(taken)).items():
            self._parts[p] = _Partition(taken[p], taken[p], tries, logged, end, taken[p])
            self._consumer.seek(TopicPartition(self._data, p), taken[p])
        self._joined.set()

    async def _read_tries(
        self, frontiers: dict[int, int]
    ) -> dict[int, tuple[dict[int, int], dict[int, int], int]]:
        """The attempt counts the tries log holds for offsets from each partition's
        frontier on (with where each is first logged, and the log's end), in one pass over
        all the partitions."""
        tps = {p: TopicPartition(self._tries_topic, p) for p in frontiers}
        for tp in tps.values():
            start = await self._log.committed(tp)
            if start is None:
                await self._log.seek_to_beginning(tp)
            else:
                self._log.seek(tp, start)
        ends = await self._log.end_offsets(list(tps.values())) if tps else {}
        found: dict[int, tuple[dict[int, int], dict[int, int], int]] = {
            p: ({}, {}, ends[tp]) for p, tp in tps.items()}
        behind = [tp for tp in tps.values() if await self._log.position(tp) < ends[tp]]
        self._log.resume(*behind)
        try:
            while behind:
                for tp, records in (await self._log.getmany(*behind, timeout_ms=500)).items():
                    tries, logged, _ = found[tp.partition]
                    for record in records:
                        entry = json.loads(record.value)
                        offset, count = int(entry["o"]), int(entry["n"])
                        if offset >= frontiers[tp.partition]:
                            tries[offset] = max(tries.get(offset, 0), count)
                            logged.setdefault(offset, record.offset)
                behind = [tp for tp in behind if await self._log.position(tp) < ends[tp]]
        finally:
            self._log.pause(*tps.values())
        return found

    # -- reading ---------------------------------------------------------------------------

    async def read(self, consumer: str, count: int, block_s: float,
                   join_timeout_s: float) -> list[Delivery]:
        if not self._joined.is_set() and block_s > 0:
            # The first read of a group in a process waits for it to join (a rebalance).
            await asyncio.wait_for(self._joined.wait(), join_timeout_s)
        deadline = time.monotonic() + block_s
        while True:
            out = await self._take(consumer, count)
            if out:
                await self._log_tries(out)
                return out
            remaining = deadline - time.monotonic()
            async with self._fetching:
                if self._ready:
                    continue
                self._throttle()
                wait = max(0.0, min(remaining, FETCH_SLICE_S))
                batch = {}
                # getmany also waits out a rebalance in progress, however long: not a read.
                with contextlib.suppress(TimeoutError):
                    batch = await asyncio.wait_for(
                        self._consumer.getmany(timeout_ms=round(wait * 1000)),
                        wait + FETCH_SLICE_S)
                for records in batch.values():
                    self._ready.extend(records)
            if not batch and remaining <= 0:
                return []

    def _throttle(self) -> None:
        """Stop fetching from a partition whose window is full; go on once it is not."""
        full = {TopicPartition(self._data, p) for p, part in self._parts.items()
                if part.owned and part.next - part.frontier >= WINDOW}
        assigned = self._consumer.assignment()
        if full - self._paused:
            self._consumer.pause(*(full - self._paused))
        if self._paused - full:
            self._consumer.resume(*((self._paused - full) & assigned))
        self._paused = full

    async def _take(self, consumer: str, count: int) -> list[Delivery]:
        """Expired events first, then fetched ones, up to ``count``."""
        now = time.monotonic()
        out: list[Delivery] = []
        for key, held in list(self._held.items()):
            if len(out) >= count:
                break
            part = self._parts.get(key[0])
            if part is None or not part.owned or now - held.since <= self._ack_timeout:
                continue
            attempt = max(part.tries.get(key[1], 0), held.attempt) + 1
            part.tries[key[1]] = attempt
            del self._held[key]  # re-inserted last: the dict stays oldest first
            self._held[key] = _Held(consumer, now, attempt, held.event)
            out.append(Delivery(self.topic, self.group, delivery_id(*key), held.event,
                                attempt, consumer))
        while len(out) < count and self._ready:
            record = self._ready.popleft()
            key = (record.partition, record.offset)
            part = self._parts.get(record.partition)
            if (part is None or not part.owned or record.offset < part.frontier
                    or record.offset in part.done or key in self._held):
                continue
            part.next = max(part.next, record.offset + 1)
            attempt = part.tries.get(record.offset, 0) + 1
            data = record.value.decode(errors="replace")
            try:
                event = decode(data)
            except (ValueError, KeyError, TypeError) as exc:
                # A record this version cannot read would be handed out for ever.
                log.error("%s/%s: unreadable event %s: %s", self.topic, self.group,
                          delivery_id(*key), exc)
                await self._bury(self.group, delivery_id(*key), data, f"unreadable: {exc}",
                                 attempt)
                await self.ack(delivery_id(*key))
                continue
            part.tries[record.offset] = attempt
            self._held[key] = _Held(consumer, now, attempt, event)
            out.append(Delivery(self.topic, self.group, delivery_id(*key), event, attempt,
                                consumer))
        return out

    async def _log_tries(self, deliveries: list[Delivery]) -> None:
        """Append each delivery to the tries log (before it is handed out)."""
        sent = []
        for delivery in deliveries:
            partition, offset = parse_delivery_id(delivery.id)
            value = json.dumps({"o": offset, "n": delivery.attempt}).encode()
            sent.append((partition, offset, await self._producer.send(
                self._tries_topic, value, partition=partition)))
        for partition, offset, future in sent:
            written = await future
            part = self._parts.get(partition)
            if part is not None:
                part.logged.setdefault(offset, written.offset)
                part.log_end = max(part.log_end, written.offset + 1)

    # -- holding and acking ----------------------------------------------------------------

    def keep(self, delivery: Delivery) -> bool:
        key = parse_delivery_id(delivery.id)
        held = self._held.get(key)
        part = self._parts.get(key[0])
        if held is None or held.consumer != delivery.consumer or part is None or not part.owned:
            return False
        held.since = time.monotonic()
        return True

    async def ack(self, delivery_id_: str) -> None:
        key = parse_delivery_id(delivery_id_)
        self._held.pop(key, None)
        part = self._parts.get(key[0])
        if part is None:
            return
        if key[1] >= part.frontier and key[1] not in part.done:
            part.done.add(key[1])
            part.tries.pop(key[1], None)
            while part.frontier in part.done:
                part.done.remove(part.frontier)
                part.logged.pop(part.frontier, None)
                part.frontier += 1
            self._changes += 1
        if part.owned and part.frontier != part.committed:
            self._commit_soon()

    def _commit_soon(self) -> None:
        """Commit within ``COMMIT_DELAY_S``, with every ack made meanwhile."""
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())

    async def _commit_pending(self) -> None:
        while self._committed_changes < self._changes:
            await asyncio.sleep(COMMIT_DELAY_S)
            before = self._committed_changes
            try:
                await self._commit()
            except KafkaError as exc:
                # The broker is away: the next ack, a rebalance or close commits.
                log.warning("%s/%s: commit failed: %s: %s", self.topic, self.group,
                            type(exc).__name__, exc)
                return
            if self._committed_changes == before:
                return  # refused: the partitions moved, their new owner delivers again

    async def _commit(self) -> None:
        """Commit every owned partition's frontier (and the tries log's floor), once for
        all the changes made before the call; concurrent calls share a commit."""
        wanted = self._changes
        async with self._committing:
            if self._committed_changes >= wanted:
                return
            wanted = self._changes
            moved = {p: part for p, part in self._parts.items()
                     if part.owned and part.frontier != part.committed}
            if moved:
                frontiers = {p: part.frontier for p, part in moved.items()}
                floors = {TopicPartition(self._tries_topic, p): part.log_floor()
                          for p, part in moved.items()}
                try:
                    await self._consumer.commit(
                        {TopicPartition(self._data, p): f for p, f in frontiers.items()})
                except MOVED as exc:
                    log.info("%s/%s: commit refused (%s): the partitions moved", self.topic,
                             self.group, type(exc).__name__)
                    return
                for p, frontier in frontiers.items():
                    moved[p].committed = frontier
                await self._log.commit(floors)
            self._committed_changes = wanted

    def consumed(self, partition: int) -> int | None:
        """How many events of an owned partition count as done (its frontier, plus those
        done past it), or None when this member does not own it."""
        part = self._parts.get(partition)
        if part is None or not part.owned:
            return None
        return part.frontier + len(part.done)
