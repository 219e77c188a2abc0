"""Event bus on Apache Kafka (or any Kafka-protocol broker), through aiokafka.

``kafka://broker1:9092,broker2:9092?topic_prefix=chunkcast`` (see :func:`open_bus`).

Mapping of the port:

- One Kafka topic per bus topic, ``{prefix}.{topic}``, created when first used with
  ``partitions`` partitions. Events are keyed by video id, so a stream's chunks (and a
  video's segments and status changes) stay in order within one partition; an upload's
  chunks (``vod_chunks``) are keyed by video id and seq, so one upload is spread over every
  worker as the design wants (their order does not matter).
- One Kafka consumer group per bus group and topic, ``{prefix}.{topic}.{group}``: each
  rendition group sees every chunk, its members share them, partition by partition.
  :meth:`KafkaBus.ensure_group` declares it by committing the topic's end offsets, so the
  group sees what is published after it, like a Redis group created at ``$``; it does not
  join (API processes declare the worker groups too). A process joins at its first read.
- ``ack`` commits only contiguous offsets (:mod:`.kafka_group`), together with the other
  acks of the next few milliseconds; an event not acked (or acked in those last few
  milliseconds) when its process dies is delivered again by the partition's next owner,
  after the group's session timeout (a crash) or at once (a clean stop commits, then
  leaves the group).
- The ack timeout holds within a process: an event one of its consumers neither acked nor
  kept within it goes to another consumer of the process, as on Redis. Across processes
  Kafka moves whole partitions, and only when their owner leaves or misses its session
  timeout: a live process's partitions never go to another one, and ``keep`` renews only
  the local hold (the process's heartbeats are what keep its partitions).
- Attempt counts survive crashes through the group's tries log (:mod:`.kafka_group`);
  after ``max_attempts`` the worker dead-letters the event to ``{prefix}.dead.{topic}``.
- ``subscribe`` (API processes, ``segments`` and ``videos``): one group-less consumer per
  topic per process reads from the end, commits nothing and fans out to its subscribers,
  each from the end offsets read when it subscribed. A subscriber more than
  ``subscriber_limit`` events behind is cut off (:class:`SubscriptionLost`), as is every
  subscriber when the broker no longer has what the consumer was to read next.
- Retention is the broker's (``retention.ms`` of each topic), not "until every group
  acked": a group down for longer than the retention loses what was deleted.
- A member joining or leaving pauses its group (eager rebalancing: aiokafka has no
  cooperative protocol). Kafka answers the rejoins as soon as every member has sent one;
  Tansu holds each JoinGroup for half the session timeout, rounded up to whole seconds
  (at least 1 s), and holds a static member's (``group_instance_id``) joins and syncs 3 s
  each, which is why this bus does not use static membership.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, OffsetOutOfRangeError, TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from chunkcast.config import Settings
from chunkcast.domain.events import ChunkUploaded, Event, decode, encode
from chunkcast.ports.bus import DeadLetter, Delivery, SubscriptionLost

from .kafka_group import GroupMember

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "chunkcast"
DEFAULT_PARTITIONS = 6
DEFAULT_REPLICATION = 1
# Kafka brokers refuse session timeouts under group.min.session.timeout.ms (6 s by default).
DEFAULT_SESSION_TIMEOUT_MS = 6_000
SUBSCRIBER_LIMIT = 10_000
PING_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_MS = 10_000
# How long the broker may hold a fetch with nothing to return. Kafka answers as soon as
# there is data; Tansu holds a fetch for all of it, so this is also a notify's latency there.
FETCH_WAIT_MS = 10
# A worker busy in its handlers for longer than this between reads would be put out of the
# group: liveness is the heartbeats' job, and a long transcode is normal.
MAX_POLL_INTERVAL_MS = 3_600_000
STRING_OPTIONS = ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                  "sasl_plain_password", "client_id")


class BrokersUnreachable(ConnectionError):
    """No Kafka broker answered (a readiness failure, or a misconfigured URL)."""


class _Subscriber:
    def __init__(self, start: dict[int, int], limit: int) -> None:
        self.start = start
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(limit)

    def offer(self, event: Event | None) -> bool:
        """Queue ``event`` (None: cut off); False when it is full and so cut off."""
        try:
            self._queue.put_nowait(event)
            return event is not None
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
            return False

    async def next(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise SubscriptionLost("fell too far behind the topic")
        return event


class _Fanout:
    """A topic followed from its end by one group-less consumer, for many subscribers."""

    def __init__(self, name: str, partitions: set[int], limit: int,
                 options: dict[str, Any]) -> None:
        self._tps = [TopicPartition(name, p) for p in sorted(partitions)]
        self._consumer = AIOKafkaConsumer(auto_offset_reset="none",
                                          fetch_max_wait_ms=FETCH_WAIT_MS, **options)
        self._limit = limit
        self._subscribers: set[_Subscriber] = set()
        self._dispatching = asyncio.Lock()
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_end(*self._tps)
        self._pump = asyncio.create_task(self._follow())

    async def subscribe(self) -> AsyncIterator[Event]:
        # Under the dispatch lock, so no record at or past these ends is dispatched before
        # the subscriber is in the set.
        async with self._dispatching:
            ends = await self._consumer.end_offsets(self._tps)
            subscriber = _Subscriber({tp.partition: ends[tp] for tp in self._tps},
                                     self._limit)
            self._subscribers.add(subscriber)
        return self._drain(subscriber)

    async def _drain(self, subscriber: _Subscriber) -> AsyncIterator[Event]:
        try:
            while True:
                yield await subscriber.next()
        finally:
            self._subscribers.discard(subscriber)

    async def _follow(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=1_000)
            except OffsetOutOfRangeError:
                log.warning("%s: the broker deleted what followers were to read next",
                            self._tps[0].topic)
                async with self._dispatching:
                    for subscriber in self._subscribers:
                        subscriber.offer(None)
                    self._subscribers.clear()
                    await self._consumer.seek_to_end(*self._tps)
                continue
            async with self._dispatching:
                for tp, records in batch.items():
                    for record in records:
                        self._dispatch(tp, record)

    def _dispatch(self, tp: TopicPartition, record: Any) -> None:
        try:
            event = decode(record.value.decode())
        except (ValueError, KeyError, TypeError) as exc:
            log.error("%s: skipping unreadable event %s-%s: %s", tp.topic, tp.partition,
                      record.offset, exc)
            return
        for subscriber in list(self._subscribers):
            if record.offset >= subscriber.start[tp.partition] and not subscriber.offer(event):
                self._subscribers.discard(subscriber)

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.wait([self._pump])
        for subscriber in self._subscribers:
            subscriber.offer(None)
        await self._consumer.stop()


class KafkaBus:
    """``brokers``: ``host:port,…``; ``prefix`` namespaces topics and groups;
    ``partitions``/``replication``: of the topics this bus creates; ``ack_timeout_s``: how
    long an event may stay in flight before another consumer of this process gets it;
    ``session_timeout_ms``: how long a silent process keeps its partitions (a crashed
    worker's events move after it); ``options``: more aiokafka client settings (SASL)."""

    def __init__(
        self, brokers: str, *, prefix: str = DEFAULT_PREFIX,
        partitions: int = DEFAULT_PARTITIONS, replication: int = DEFAULT_REPLICATION,
        ack_timeout_s: float = 60.0, session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        subscriber_limit: int = SUBSCRIBER_LIMIT, options: dict[str, Any] | None = None,
    ) -> None:
        self._brokers = brokers
        self._prefix = prefix
        self._partitions = partitions
        self._replication = replication
        self._ack_timeout = ack_timeout_s
        self._session_ms = session_timeout_ms
        self._limit = subscriber_limit
        self._options: dict[str, Any] = {
            "bootstrap_servers": brokers, "request_timeout_ms": REQUEST_TIMEOUT_MS,
            **(options or {})}
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._offsets: AIOKafkaConsumer | None = None  # group-less: end offsets, dead letters
        self._starting = asyncio.Lock()
        self._topics: dict[str, set[int]] = {}  # Kafka topic -> its partitions, once known
        self._members: dict[tuple[str, str], GroupMember] = {}  # groups read here
        self._fanouts: dict[str, _Fanout] = {}  # topics subscribed to here
        self._closed = False

    def topic_name(self, topic: str) -> str:
        return f"{self._prefix}.{topic}"

    def group_id(self, topic: str, group: str) -> str:
        return f"{self._prefix}.{topic}.{group}"

    def _tries_name(self, topic: str, group: str) -> str:
        return f"{self._prefix}.{topic}.tries.{group}"

    def _dead_name(self, topic: str) -> str:
        return f"{self._prefix}.dead.{topic}"

    # -- connections -----------------------------------------------------------------------

    async def _started(self) -> tuple[AIOKafkaAdminClient, AIOKafkaProducer]:
        async with self._starting:
            if self._admin is None or self._producer is None:
                admin = AIOKafkaAdminClient(**self._options)
                producer = AIOKafkaProducer(acks="all", linger_ms=0, **self._options)
                offsets = AIOKafkaConsumer(**self._options)
                try:
                    await admin.start()
                    await producer.start()
                    await offsets.start()
                except KafkaError as exc:
                    await _quietly(admin.close(), producer.stop(), offsets.stop())
                    raise BrokersUnreachable(
                        f"no Kafka broker of {self._brokers} answered: {exc}") from exc
                self._admin, self._producer, self._offsets = admin, producer, offsets
            return self._admin, self._producer

    async def _topic(self, name: str) -> set[int]:
        """Create the topic if it does not exist; its partitions."""
        if name not in self._topics:
            admin, producer = await self._started()
            with contextlib.suppress(TopicAlreadyExistsError):
                reply = await admin.create_topics(
                    [NewTopic(name, self._partitions, self._replication)])
                for _, code, message in getattr(reply, "topic_errors", []):
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise KafkaError(f"cannot create topic {name}: {message}")
            self._topics[name] = set(await producer.partitions_for(name))
        return self._topics[name]

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, topic: str, event: Event) -> str:
        name = self.topic_name(topic)
        await self._topic(name)
        _, producer = await self._started()
        written = await producer.send_and_wait(name, encode(event).encode(), key=_key(event))
        return f"{written.partition}-{written.offset}"

    # -- groups ----------------------------------------------------------------------------

    async def ensure_group(self, topic: str, group: str) -> None:
        name = self.topic_name(topic)
        partitions = await self._topic(name)
        tries = await self._topic(self._tries_name(topic, group))
        gid = self.group_id(topic, group)
        await self._declare(gid, [TopicPartition(name, p) for p in partitions])
        await self._declare(f"{gid}.tries",
                            [TopicPartition(self._tries_name(topic, group), p) for p in tries])

    async def _committed(self, gid: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets (partitions without one are left out)."""
        admin, _ = await self._started()
        found = await admin.list_consumer_group_offsets(gid, partitions=tps)
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    async def _declare(self, gid: str, tps: list[TopicPartition]) -> None:
        """Commit the end offsets of the partitions the group has none for."""
        committed = await self._committed(gid, tps)
        missing = [tp for tp in tps if tp not in committed]
        if not missing:
            return
        assert self._offsets is not None
        ends = await self._offsets.end_offsets(missing)
        # A member-less commit (generation -1): accepted while nobody is in the group.
        standalone = AIOKafkaConsumer(group_id=gid, enable_auto_commit=False, **self._options)
        await standalone.start()
        try:
            standalone.assign(missing)
            await standalone.commit({tp: ends[tp] for tp in missing})
        finally:
            await standalone.stop()

    async def _member(self, topic: str, group: str) -> GroupMember:
        member = self._members.get((topic, group))
        if member is None:
            name = self.topic_name(topic)
            partitions = await self._topic(name)
            gid = self.group_id(topic, group)
            if not await self._committed(gid, [TopicPartition(name, p) for p in partitions]):
                raise KeyError(f"no consumer group {group!r} on topic {topic!r}")
            tries = self._tries_name(topic, group)
            _, producer = await self._started()
            member = GroupMember(
                topic, group, data=name, tries=tries, group_id=gid, producer=producer,
                ack_timeout_s=self._ack_timeout, bury=self._bury_for(topic),
                options=self._options, fetch_wait_ms=FETCH_WAIT_MS, member={
                    "session_timeout_ms": self._session_ms,
                    "rebalance_timeout_ms": self._session_ms,
                    "heartbeat_interval_ms": max(100, self._session_ms // 20),
                    "max_poll_interval_ms": MAX_POLL_INTERVAL_MS,
                    "fetch_max_wait_ms": FETCH_WAIT_MS})
            self._members[(topic, group)] = member
            await member.start(await self._topic(tries))
        return member

    async def read(
        self, topic: str, group: str, consumer: str, *, count: int = 1, block_s: float = 1.0
    ) -> list[Delivery]:
        member = await self._member(topic, group)
        return await member.read(consumer, count, block_s,
                                 join_timeout_s=max(30.0, 3 * self._session_ms / 1000))

    async def keep(self, delivery: Delivery) -> bool:
        member = self._members.get((delivery.topic, delivery.group))
        return member is not None and member.keep(delivery)

    async def ack(self, delivery: Delivery) -> None:
        member = self._members.get((delivery.topic, delivery.group))
        if member is not None:
            await member.ack(delivery.id)

    async def dead_letter(self, delivery: Delivery, error: str) -> None:
        """Append the event to ``{prefix}.dead.{topic}`` with ``error``, then ack it."""
        await self._bury_for(delivery.topic)(delivery.group, delivery.id,
                                             encode(delivery.event), error, delivery.attempt)
        await self.ack(delivery)

    def _bury_for(self, topic: str) -> Any:
        async def bury(group: str, msg_id: str, data: str, error: str, attempt: int) -> None:
            name = self._dead_name(topic)
            await self._topic(name)
            _, producer = await self._started()
            value = json.dumps({"event": data, "error": error, "group": group, "id": msg_id,
                                "attempt": attempt})
            await producer.send_and_wait(name, value.encode(), key=group.encode())

        return bury

    async def dead_letters(self, topic: str, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of ``topic`` the broker still has."""
        name = self._dead_name(topic)
        tps = [TopicPartition(name, p) for p in sorted(await self._topic(name))]
        reader = AIOKafkaConsumer(auto_offset_reset="earliest", **self._options)
        await reader.start()
        out: list[DeadLetter] = []
        try:
            reader.assign(tps)
            ends = await reader.end_offsets(tps)
            await reader.seek_to_beginning(*tps)
            for tp in tps:
                while await reader.position(tp) < ends[tp] and len(out) < count:
                    for record in (await reader.getmany(tp, timeout_ms=500)).get(tp, []):
                        f = json.loads(record.value)
                        out.append(DeadLetter(topic, f["group"], f["id"], f["event"],
                                              f["error"], int(f["attempt"])))
        finally:
            await reader.stop()
        return out[:count]

    async def backlog(self, topic: str, group: str) -> int:
        name = self.topic_name(topic)
        tps = [TopicPartition(name, p) for p in sorted(await self._topic(name))]
        committed = await self._committed(self.group_id(topic, group), tps)
        if not committed:
            return 0  # no such group
        assert self._offsets is not None
        ends = await self._offsets.end_offsets(tps)
        member = self._members.get((topic, group))
        total = 0
        for tp in tps:
            consumed = None if member is None else member.consumed(tp.partition)
            if consumed is None:
                consumed = committed.get(tp, 0)
            total += max(0, ends[tp] - consumed)
        return total

    # -- following -------------------------------------------------------------------------

    async def subscribe(self, topic: str) -> AsyncIterator[Event]:
        name = self.topic_name(topic)
        fanout = self._fanouts.get(name)
        if fanout is None:
            partitions = await self._topic(name)
            fanout = _Fanout(name, partitions, self._limit, self._options)
            self._fanouts[name] = fanout
            await fanout.start()
        return await fanout.subscribe()

    async def ping(self) -> None:
        try:
            admin, _ = await asyncio.wait_for(self._started(), PING_TIMEOUT_S)
            await asyncio.wait_for(admin.describe_cluster(), PING_TIMEOUT_S)
        except (KafkaError, TimeoutError) as exc:
            raise BrokersUnreachable(f"no Kafka broker of {self._brokers} answered") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await _quietly(*(m.close() for m in self._members.values()),
                       *(f.close() for f in self._fanouts.values()))
        if self._admin is not None and self._producer is not None and self._offsets:
            await _quietly(self._producer.stop(), self._offsets.stop(), self._admin.close())


async def _quietly(*closing: Any) -> None:
    for result in await asyncio.gather(*closing, return_exceptions=True):
        if isinstance(result, Exception):
            log.warning("closing the Kafka bus: %s: %s", type(result).__name__, result)


def _key(event: Event) -> bytes | None:
    """A video's events share a partition, except an upload's chunks, spread over all."""
    video_id = getattr(event, "video_id", None)
    if video_id is None:
        return None
    if isinstance(event, ChunkUploaded) and event.kind == "vod":
        return f"{video_id}/{event.seq}".encode()
    return str(video_id).encode()


def open_bus(url: str, settings: Settings) -> KafkaBus:
    """``kafka://host:port[,host:port…][?options]`` -> a bus on those brokers. Options:
    ``topic_prefix`` (default ``chunkcast``), ``partitions`` (6) and ``replication_factor``
    (1) of the topics it creates, ``session_timeout_ms`` (6000: how soon a crashed
    process's events move; brokers refuse less than their ``group.min.session.timeout.ms``),
    and aiokafka's ``security_protocol``, ``sasl_mechanism``, ``sasl_plain_username``,
    ``sasl_plain_password``, ``client_id``."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    brokers = unquote(parts.netloc)
    if not brokers:
        raise ValueError("a Kafka bus URL names its brokers: kafka://host:port[,host:port…]")
    options = {k: query.pop(k) for k in STRING_OPTIONS if k in query}
    prefix = query.pop("topic_prefix", DEFAULT_PREFIX)
    partitions = int(query.pop("partitions", DEFAULT_PARTITIONS))
    replication = int(query.pop("replication_factor", DEFAULT_REPLICATION))
    session_ms = int(query.pop("session_timeout_ms", DEFAULT_SESSION_TIMEOUT_MS))
    if query:
        raise ValueError(f"unknown Kafka bus options: {', '.join(sorted(query))}")
    if partitions < 1 or replication < 1 or session_ms < 100:
        raise ValueError("partitions and replication_factor are at least 1, "
                         "session_timeout_ms at least 100")
    return KafkaBus(brokers, prefix=prefix, partitions=partitions, replication=replication,
                    ack_timeout_s=settings.ack_timeout_seconds, session_timeout_ms=session_ms,
                    options=options)
