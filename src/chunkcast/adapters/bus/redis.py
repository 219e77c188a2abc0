"""Event bus on Redis Streams: one stream per topic, one Redis consumer group per group.

Redis keeps what the memory bus journals: the events (stream entries), where each group is
(its last delivered id) and what is in flight (the group's pending entries list, with
the consumer holding each entry and how many times it was delivered). An entry left
pending longer than the ack timeout is taken over with XAUTOCLAIM, so a consumer that died
holding it, even in another process, loses nothing; a consumer still working on an entry
renews it (:meth:`RedisBus.keep`: XCLAIM to itself with JUSTID, which restarts its idle time
without counting a delivery). Events that could not be handled can be moved to a
dead-letter stream.

Retention, so that Redis's memory follows the work in flight, not history:

- A stream no consumer group reads (``segments``, ``videos``: API processes only follow
  them live with XREAD) is trimmed to about ``max_len`` entries at every publish (XADD
  then XTRIM MAXLEN ~, in one script, only while the stream has no group). A subscriber
  more than ``max_len`` entries behind skips what was trimmed; the live feed recovers
  segments from the catalogue.
- A stream with groups is never trimmed by length: an entry stays until every group has
  acked it. Whoever reads a group (the claim loop, :meth:`RedisBus.read`) trims the stream
  every ``maintain_every_s`` with XTRIM MINID ~ to the oldest entry any group still needs:
  the minimum over the groups of the entry after its last delivered id and of the oldest
  entry in its pending list (XINFO GROUPS, then XPENDING). A group that is down keeps its
  events, however many are published meanwhile. A group nobody reads any more (removed
  from the configuration) keeps them too, until an operator destroys it (XGROUP DESTROY).
- Each worker process joins its groups under new consumer names. The same reader removes
  the group's consumers that have nothing pending and have been idle for more than
  :data:`DEAD_CONSUMER_ACK_TIMEOUTS` ack timeouts (XINFO CONSUMERS and XGROUP DELCONSUMER,
  in one script, so no entry can be handed to a consumer between the check and the
  removal). A dead consumer's pending entries are first claimed by live readers after the
  ack timeout, as above; once it holds none, it is removed. A live consumer that happens to
  be removed is created again by its next read.
- Dead-letter streams are trimmed to about ``max_len`` entries.
"""

import logging
import math
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as LostConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as NoAnswer
from redis.typing import EncodableT, FieldT

from chunkcast.cancellation import reraise_cancellation
from chunkcast.config import Settings
from chunkcast.domain.events import Event, decode, encode
from chunkcast.ports.bus import DeadLetter, Delivery

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "chunkcast"
DEFAULT_MAX_LEN = 10_000  # entries kept in a stream without groups, and of dead letters
MAINTAIN_EVERY_MAX_S = 30.0  # a group's stream is trimmed at least this often while read
DEAD_CONSUMER_ACK_TIMEOUTS = 3  # idle this many ack timeouts, with nothing pending: removed
# A connection that stops answering (a network partition: no reset, no refusal) is given up
# after this long and opened again, instead of after TCP's own retransmission timeout.
SOCKET_TIMEOUT_S = 2.5
CONNECT_TIMEOUT_S = 2.0
SUBSCRIBE_BLOCK_MS = 1_500  # a subscriber's XREAD returns at least this often
PING_TIMEOUT_S = 2.0  # a readiness check answers within this, retrying nothing
BACKLOG_PAGE = 1_000
# Ride out a Redis restart or failover of a few seconds instead of failing the caller.
# A retried command may have run already: at-least-once delivery absorbs a doubled XADD.
RECONNECT_TRIES = 12
RECONNECT_BACKOFF_CAP_S = 1.0

Entry = tuple[str, str | None]
"""A stream entry: its id and the encoded event (None for an entry deleted since)."""

# XADD, and while no group reads the stream, XTRIM by length. A group created later starts
# after the newest entry, so nothing it will need is ever trimmed here.
PUBLISH_SCRIPT = """
local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[1])
if #redis.call('XINFO', 'GROUPS', KEYS[1]) == 0 then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2])
end
return id
"""

# Restart the idle time of entry ARGV[3] if consumer ARGV[2] of group ARGV[1] holds it;
# returns 1 if it did. XCLAIM with JUSTID does not count a delivery; checking the holder
# first, in the same script, keeps a late renewal from taking the entry back from a
# consumer that claimed it meanwhile.
KEEP_SCRIPT = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""

# Remove the group's consumers idle longer than ARGV[2] ms with nothing pending; returns
# their names. Atomic: XGROUP DELCONSUMER would drop any entry pending for the consumer.
FORGET_DEAD_CONSUMERS_SCRIPT = """
local removed = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    table.insert(removed, info['name'])
  end
end
return removed
"""


class RedisBus:
    """``prefix`` namespaces every key (``{prefix}:{topic}``, ``{prefix}:dead:{topic}``);
    ``ack_timeout_s``: how long an event may stay in flight before another consumer gets it;
    ``max_len``: roughly how many entries a stream without groups, and a dead-letter
    stream, keeps; ``maintain_every_s``: how often a reader trims its group's stream and
    removes dead consumers (default: the ack timeout, at most 30 s)."""

    def __init__(
        self, url: str, *, prefix: str = DEFAULT_PREFIX, ack_timeout_s: float = 60.0,
        max_len: int = DEFAULT_MAX_LEN, maintain_every_s: float | None = None,
    ) -> None:
        self._redis = Redis.from_url(
            # Blocking reads wait up to SUBSCRIBE_BLOCK_MS: the socket timeout must be longer.
            url, decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(ExponentialWithJitterBackoff(cap=RECONNECT_BACKOFF_CAP_S, base=0.02),
                        RECONNECT_TRIES),
            retry_on_error=[LostConnection, NoAnswer])
        self._prefix = prefix
        self._min_idle_ms = max(1, round(ack_timeout_s * 1000))
        self._max_len = max_len
        self._maintain_every = (min(ack_timeout_s, MAINTAIN_EVERY_MAX_S)
                                if maintain_every_s is None else maintain_every_s)
        self._dead_idle_ms = DEAD_CONSUMER_ACK_TIMEOUTS * self._min_idle_ms
        # When each (topic, group) was last maintained: one entry per group read here.
        self._maintained: dict[tuple[str, str], float] = {}
        # Commands above ride out an outage of seconds; a readiness check must not.
        self._pinger = Redis.from_url(url, socket_timeout=PING_TIMEOUT_S,
                                      socket_connect_timeout=PING_TIMEOUT_S,
                                      retry=Retry(NoBackoff(), 0), single_connection_client=True)
        self._publish = self._redis.register_script(PUBLISH_SCRIPT)
        self._keep = self._redis.register_script(KEEP_SCRIPT)
        self._forget_dead = self._redis.register_script(FORGET_DEAD_CONSUMERS_SCRIPT)
        self._closed = False

    def stream_key(self, topic: str) -> str:
        return f"{self._prefix}:{topic}"

    def dead_letter_key(self, topic: str) -> str:
        return f"{self._prefix}:dead:{topic}"

    async def publish(self, topic: str, event: Event) -> str:
        msg_id = await self._publish(keys=[self.stream_key(topic)],
                                     args=[encode(event), self._max_len])
        return _text(msg_id)

    async def ensure_group(self, topic: str, group: str) -> None:
        try:
            await self._redis.xgroup_create(self.stream_key(topic), group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, topic: str, group: str, consumer: str, *, count: int = 1, block_s: float = 1.0
    ) -> list[Delivery]:
        key = self.stream_key(topic)
        try:
            await self._maintain_if_due(key, topic, group)
            out = await self._claim_expired(key, topic, group, consumer, count)
            if len(out) < count:
                # Redis reads BLOCK 0 as "forever": no BLOCK at all means "don't wait".
                wait = out or block_s <= 0
                fresh = await self._redis.xreadgroup(
                    group, consumer, {key: ">"}, count=count - len(out),
                    block=None if wait else max(1, round(block_s * 1000)))
                out += await self._deliveries(topic, group, consumer, _read_entries(fresh),
                                              {})
        except ResponseError as exc:
            if "NOGROUP" in str(exc) or "no such key" in str(exc):
                raise KeyError(f"no consumer group {group!r} on topic {topic!r}") from exc
            raise
        return out

    async def _maintain_if_due(self, key: str, topic: str, group: str) -> None:
        now = time.monotonic()
        if now - self._maintained.get((topic, group), -math.inf) < self._maintain_every:
            return
        self._maintained[(topic, group)] = now  # before awaiting: one run at a time
        removed = await self._forget_dead(keys=[key], args=[group, self._dead_idle_ms])
        if removed:
            log.info("%s/%s: removed dead consumers %s", topic, group,
                     ", ".join(map(_text, removed)))
        await self._trim_consumed(key)

    async def _trim_consumed(self, key: str) -> None:
        """Drop the entries every group has acked (XTRIM MINID to the oldest one a group
        still needs).

        Not atomic, and safe: the groups' positions are read before their pending lists,
        so an entry delivered in between comes after the position read, and kept; an entry
        below the floor was acked by every group, and an acked entry is never needed again.
        A group created meanwhile starts after the newest entry."""
        floor: tuple[int, int] | None = None
        for info in await self._redis.xinfo_groups(key):
            needs = _next_id(_text(info["last-delivered-id"]))
            if int(info["pending"]):
                oldest = (await self._redis.xpending(key, _text(info["name"])))["min"]
                if oldest is not None:
                    needs = min(needs, _parse_id(_text(oldest)))
            floor = needs if floor is None else min(floor, needs)
        if floor is not None:
            await self._redis.xtrim(key, minid=f"{floor[0]}-{floor[1]}", approximate=True)

    async def _claim_expired(
        self, key: str, topic: str, group: str, consumer: str, count: int
    ) -> list[Delivery]:
        """Take over entries pending longer than the ack timeout, oldest first."""
        claimed: list[Entry] = []
        cursor = "0-0"
        while len(claimed) < count:
            # Each call scans a slice of the pending list; the cursor says where to go on.
            reply = await self._redis.xautoclaim(key, group, consumer, self._min_idle_ms,
                                                 cursor, count=count - len(claimed))
            cursor = _text(reply[0])
            claimed += _entries(reply[1])
            if cursor == "0-0":
                break
        if not claimed:
            return []
        return await self._deliveries(topic, group, consumer, claimed, await self._attempts(
            key, group, [msg_id for msg_id, _ in claimed]))

    async def _attempts(self, key: str, group: str, ids: list[str]) -> dict[str, int]:
        """How many times each entry was delivered, as Redis counts it (survives restarts)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for msg_id in ids:
                pipe.xpending_range(key, group, msg_id, msg_id, 1)
            replies: list[Any] = await pipe.execute()
        return {_text(row["message_id"]): int(row["times_delivered"])
                for reply in replies for row in reply}

    async def _deliveries(
        self, topic: str, group: str, consumer: str, entries: list[Entry],
        attempts: dict[str, int],
    ) -> list[Delivery]:
        out = []
        for msg_id, data in entries:
            if data is None:
                continue  # trimmed away while pending: nothing left to hand out
            try:
                event = decode(data)
            except (ValueError, KeyError, TypeError) as exc:
                # An event this version cannot read (e.g. from a newer publisher) would be
                # handed out for ever: set it aside instead.
                log.error("%s/%s: unreadable event %s: %s", topic, group, msg_id, exc)
                await self._bury(topic, group, msg_id, data, f"unreadable: {exc}", 1)
                continue
            out.append(Delivery(topic, group, msg_id, event, attempts.get(msg_id, 1),
                                consumer))
        return out

    async def keep(self, delivery: Delivery) -> bool:
        kept = await self._keep(keys=[self.stream_key(delivery.topic)],
                                args=[delivery.group, delivery.consumer, delivery.id])
        return bool(int(kept))

    async def ack(self, delivery: Delivery) -> None:
        await self._redis.xack(self.stream_key(delivery.topic), delivery.group, delivery.id)

    async def dead_letter(self, delivery: Delivery, error: str) -> None:
        """Move an event that cannot be handled to ``{prefix}:dead:{topic}`` with ``error``
        and ack it, in one transaction."""
        await self._bury(delivery.topic, delivery.group, delivery.id, encode(delivery.event),
                         error, delivery.attempt)

    async def _bury(
        self, topic: str, group: str, msg_id: str, data: str, error: str, attempt: int
    ) -> None:
        fields: dict[FieldT, EncodableT] = {
            "event": data, "error": error, "group": group, "id": msg_id, "attempt": attempt}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_key(topic), fields, maxlen=self._max_len,
                      approximate=True)
            pipe.xack(self.stream_key(topic), group, msg_id)
            await pipe.execute()

    async def dead_letters(self, topic: str, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of ``topic``."""
        entries = await self._redis.xrange(self.dead_letter_key(topic), count=count)
        out = []
        for _, fields in entries or []:
            if fields is not None:
                f = {_text(k): _text(v) for k, v in fields.items()}
                out.append(DeadLetter(topic, f["group"], f["id"], f["event"], f["error"],
                                      int(f["attempt"])))
        return out

    async def backlog(self, topic: str, group: str) -> int:
        key = self.stream_key(topic)
        try:
            groups = await self._redis.xinfo_groups(key)
        except ResponseError:
            return 0  # no such stream, so no such group
        for info in groups:
            if _text(info["name"]) == group:
                lag = info.get("lag")
                if lag is None:  # Redis cannot tell after some deletions: count them
                    lag = await self._count_after(key, _text(info["last-delivered-id"]))
                return int(info["pending"]) + int(lag)
        return 0

    async def _count_after(self, key: str, last_id: str) -> int:
        total, start = 0, f"({last_id}"
        while True:
            page = await self._redis.xrange(key, min=start, count=BACKLOG_PAGE) or []
            total += len(page)
            if len(page) < BACKLOG_PAGE:
                return total
            start = f"({_text(page[-1][0])}"

    async def subscribe(self, topic: str) -> AsyncIterator[Event]:
        # Where the stream ends is known before this returns, so an entry any process adds
        # afterwards comes after it (stream ids only grow) and is read.
        key = self.stream_key(topic)
        return self._follow(topic, key, await self._last_id(key))

    async def _last_id(self, key: str) -> str:
        newest = await self._redis.xrevrange(key, count=1)
        return _text(newest[0][0]) if newest else "0-0"

    async def _follow(self, topic: str, key: str, last: str) -> AsyncIterator[Event]:
        while True:
            reply = await self._redis.xread({key: last}, count=100, block=SUBSCRIBE_BLOCK_MS)
            reraise_cancellation()  # redis-py can lose one mid-command
            for msg_id, data in _read_entries(reply):
                last = msg_id
                if data is None:
                    continue
                try:
                    event = decode(data)
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("%s: skipping unreadable event %s: %s", topic, msg_id, exc)
                    continue
                yield event

    async def ping(self) -> None:
        await self._pinger.ping()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pinger.aclose()
        await self._redis.aclose()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    return str(value)


def _parse_id(msg_id: str) -> tuple[int, int]:
    millis, _, seq = msg_id.partition("-")
    return int(millis), int(seq or 0)


def _next_id(msg_id: str) -> tuple[int, int]:
    """The smallest id after ``msg_id``."""
    millis, seq = _parse_id(msg_id)
    return millis, seq + 1


def _entries(raw: Iterable[Any]) -> list[Entry]:
    """``[(id, {field: value}), …]`` -> ``[(id, encoded event or None), …]``."""
    out: list[Entry] = []
    for msg_id, fields in raw:
        data = fields.get("event") if isinstance(fields, dict) else None
        out.append((_text(msg_id), None if data is None else _text(data)))
    return out


def _read_entries(reply: object) -> list[Entry]:
    """The entries of an XREAD/XREADGROUP reply on one stream, in either reply shape:
    ``[[stream, entries]]`` (RESP2) or ``{stream: [entries]}`` (RESP3)."""
    if isinstance(reply, dict):
        return [e for batches in reply.values() for batch in batches for e in _entries(batch)]
    if isinstance(reply, list):
        return [e for _, batch in reply for e in _entries(batch)]
    return []


def open_bus(url: str, settings: Settings) -> RedisBus:
    """``redis://host:port/db`` -> a bus on that Redis. Two options of ours may ride in the
    query: ``prefix`` (key namespace, default ``chunkcast``) and ``maxlen`` (entries kept
    in a stream without consumer groups and in a dead-letter stream); the rest is passed to
    redis-py."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", DEFAULT_PREFIX)
    max_len = int(query.pop("maxlen", DEFAULT_MAX_LEN))
    redis_url = parts._replace(query=urlencode(query)).geturl()
    return RedisBus(redis_url, prefix=prefix, ack_timeout_s=settings.ack_timeout_seconds,
                    max_len=max_len)
