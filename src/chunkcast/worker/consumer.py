"""A consumer group member: read events, run the handler for their type, ack when done.

Two kinds of trouble are told apart. Bad media (:class:`MediaError`) is the event's own
fault: trying again changes nothing, so the event is given up at once. Anything else is
taken for a dependency in trouble (storage, the catalogue, the bus: down, restarting, slow)
and the handler is tried again in place, with capped exponential backoff, for as long as the
event is worth it (:class:`RetryBudget`); only then is it given up. Giving up is the
service's decision (a live chunk becomes a gap, an upload fails) and must be recorded
before the event is acked, so that bookkeeping is retried until it works too.

While an event is in hand it is renewed on the bus (:meth:`EventBus.keep`) every third of
the ack timeout, so a long transcode or a long outage keeps it here, while a worker that is
killed loses its events to another one within about the ack timeout.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chunkcast.cancellation import reraise_cancellation
from chunkcast.domain.clock import as_utc
from chunkcast.domain.errors import MediaError
from chunkcast.domain.events import ChunkUploaded, Event
from chunkcast.metrics import Metrics
from chunkcast.ports.bus import Delivery, EventBus
from chunkcast.services.outages import BUS, CATALOGUE, STORAGE, failed_dependency

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None]]
GiveUp = Callable[[Any, str], Awaitable[None]]
"""Settle an event the worker stops trying, with a reason a person can read."""

CRASHED = "processing kept crashing the worker"
# How a reason names the dependency :func:`failed_dependency` found.
DEPENDENCY_NAMES = {CATALOGUE: "the catalogue", STORAGE: "storage", BUS: "the event bus",
                    "": "a service it needs"}


@dataclass(frozen=True)
class RetryBudget:
    """How long an event is worth retrying while a dependency is in trouble: a live chunk
    until ``live_s`` after it was reported (viewers have moved on by then), an upload's
    chunk or source for ``vod_s`` from the first attempt. Attempts are ``first_delay_s``
    apart, doubling up to ``max_delay_s``."""

    live_s: float = 30.0
    vod_s: float = 900.0
    first_delay_s: float = 0.5
    max_delay_s: float = 2.0  # how late after an outage ends a held chunk goes on, at worst

    def deadline(self, event: Event, first_attempt: float) -> float:
        """The wall-clock time (Unix seconds) after which ``event`` is given up."""
        if not is_live(event):
            return first_attempt + self.vod_s
        reported = _unix_time(getattr(event, "reported_at", None))
        return (first_attempt if reported is None else reported) + self.live_s


def is_live(event: Event) -> bool:
    return isinstance(event, ChunkUploaded) and event.kind == "live"


def _unix_time(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return as_utc(datetime.fromisoformat(iso)).timestamp()
    except ValueError:
        return None


def outage_reason(exc: BaseException, seconds: float) -> str:
    """A public reason for giving up after ``seconds`` of ``exc`` (no paths, no URLs): the
    dependency it says was down, or, for an error that names none (a bug, most likely),
    that processing kept failing."""
    dependency = failed_dependency(exc)
    lasted = _duration(seconds)
    if dependency is None:
        return f"processing kept failing for {lasted}"
    return f"{DEPENDENCY_NAMES.get(dependency, dependency)} was unreachable for {lasted}"


def _duration(seconds: float) -> str:
    def count(n: int, unit: str) -> str:
        return f"{n} {unit}" if n == 1 else f"{n} {unit}s"

    if seconds < 120:
        return count(max(1, round(seconds)), "second")
    if seconds < 2 * 3600:
        return count(round(seconds / 60), "minute")
    return count(round(seconds / 3600), "hour")


class _Released:
    """The consumer stopped while waiting to retry: the event is left unacked."""


_RELEASED = _Released()


class Consumer:
    """``handlers`` must cover every event type ``topic`` carries (checked at construction).

    ``give_up(event, reason)`` settles an event the consumer stops trying: bad media, a
    spent :class:`RetryBudget`, or an event handed out more than ``max_attempts`` times
    (the process died each time it held it). It runs before the event is acked and is
    retried until it works. Nothing stops a consumer but :meth:`stop` or cancellation:
    errors of the bus are logged and waited out.
    """

    def __init__(
        self, bus: EventBus, topic: str, group: str, name: str,
        handlers: Mapping[type[Event], Handler], expected: tuple[type[Event], ...], *,
        metrics: Metrics, give_up: GiveUp, concurrency: int = 1, max_attempts: int = 3,
        budget: RetryBudget = RetryBudget(), ack_timeout_s: float = 3.0,
    ) -> None:
        missing = [t.__name__ for t in expected if t not in handlers]
        if missing:
            raise TypeError(f"consumer {group} on {topic} has no handler for {missing}")
        self._bus, self._topic, self._group, self._name = bus, topic, group, name
        self._handlers = handlers
        self._metrics = metrics
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._give_up = give_up
        self._budget = budget
        self._keep_every = ack_timeout_s / 3
        # A read waits no longer than this, so expired events are claimed soon after.
        self._read_block = min(1.0, ack_timeout_s / 3)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Take no new event; :meth:`run` returns once the events in hand are done (an event
        waiting to be retried is released instead: another worker gets it later)."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop` (graceful) or cancellation (the events in hand are not
        acked, so the bus hands them to another consumer after the ack timeout)."""
        if not await self._persist("bus.ensure_group",
                                   lambda: self._bus.ensure_group(self._topic, self._group)):
            return
        async with asyncio.TaskGroup() as tasks:
            for slot in range(self._concurrency):
                tasks.create_task(self._loop(f"{self._name}-{slot}"))

    async def _loop(self, consumer: str) -> None:
        delay = self._budget.first_delay_s
        while not self._stopping.is_set():
            try:
                deliveries = await self._bus.read(self._topic, self._group, consumer,
                                                  block_s=self._read_block)
                reraise_cancellation()  # a bus client may have lost it (read: not acked)
            except Exception as exc:
                # The bus is unreachable (a restart, a network blip), or lost the group
                # (a Redis restarted without its data): wait and read again. Events in
                # flight stay pending and are handed out after the ack timeout.
                self._failed("bus.read", exc, delay)
                if isinstance(exc, KeyError):
                    with contextlib.suppress(Exception):
                        await self._bus.ensure_group(self._topic, self._group)
                await self._pause(delay)
                delay = min(2 * delay, self._budget.max_delay_s)
                continue
            delay = self._budget.first_delay_s
            for delivery in deliveries:
                try:
                    await self._process(delivery)
                except Exception:
                    # Not acked: handed out again after the ack timeout.
                    log.exception("%s/%s: could not process %s", self._topic, self._group,
                                  delivery.event)

    async def _process(self, delivery: Delivery) -> None:
        async with self._kept(delivery):
            if delivery.attempt > self._max_attempts:
                # Handed out again and again: the process died each time it held this event.
                log.error("%s/%s: giving up on %s after %d deliveries", self._topic,
                          self._group, delivery.event, delivery.attempt - 1)
                await self._settle(delivery, CRASHED)
                return
            reason = await self._handle(delivery)
            if isinstance(reason, _Released):
                return
            if reason is None:
                await self._persist("bus.ack", lambda: self._bus.ack(delivery))
            else:
                await self._settle(delivery, reason)

    async def _handle(self, delivery: Delivery) -> str | _Released | None:
        """Run the handler until it succeeds (None), the event is bad or its budget is
        spent (the reason to give up with), or the consumer stops meanwhile (released)."""
        event = delivery.event
        handler = self._handlers[type(event)]
        first = time.time()
        deadline = self._budget.deadline(event, first)
        delay = self._budget.first_delay_s
        while True:
            try:
                await handler(event)
                return None
            except MediaError as exc:
                # The handler did not settle bad media itself: the worker does.
                self._metrics.handler_failures.labels(self._topic, self._group).inc()
                log.warning("%s/%s: bad media in %s: %s", self._topic, self._group, event,
                            exc.message)
                return exc.message
            except Exception as exc:
                self._metrics.handler_failures.labels(self._topic, self._group).inc()
                now = time.time()
                if now >= deadline:
                    self._metrics.gave_up.labels("live" if is_live(event) else "vod").inc()
                    log.error("%s/%s: giving up on %s after %.0f s of trouble", self._topic,
                              self._group, event, now - first, exc_info=exc)
                    return outage_reason(exc, now - first)
                wait = min(delay, deadline - now)
                self._failed(f"{self._topic}.handle", exc, wait, event)
                if not await self._pause(wait):
                    return _RELEASED
                delay = min(2 * delay, self._budget.max_delay_s)

    async def _settle(self, delivery: Delivery, reason: str) -> None:
        """Record the service's decision, then set the event aside; neither is skipped
        because a dependency is down (only a stop leaves the event for another worker)."""
        if await self._persist(f"{self._topic}.give_up",
                               lambda: self._give_up(delivery.event, reason)):
            await self._persist("bus.dead_letter",
                                lambda: self._bus.dead_letter(delivery, reason))

    async def _persist(self, operation: str, call: Callable[[], Awaitable[object]]) -> bool:
        """``call()`` until it works (True) or the consumer stops (False)."""
        delay = self._budget.first_delay_s
        while True:
            try:
                await call()
                return True
            except Exception as exc:
                self._failed(operation, exc, delay)
                if not await self._pause(delay):
                    return False
                delay = min(2 * delay, self._budget.max_delay_s)

    def _failed(self, operation: str, exc: Exception, retry_in: float,
                event: Event | None = None) -> None:
        reraise_cancellation()  # a cancelled consumer retries nothing
        self._metrics.retries.labels(operation).inc()
        log.warning("%s/%s: %s failed%s (%s: %s); again in %.1f s", self._topic, self._group,
                    operation, f" on {event}" if event else "", type(exc).__name__, exc,
                    retry_in)

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False if the consumer was told to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(seconds, 0.0))
        return not self._stopping.is_set()

    @contextlib.asynccontextmanager
    async def _kept(self, delivery: Delivery) -> AsyncIterator[None]:
        """Renew ``delivery`` on the bus for as long as the block runs."""
        async def renew() -> None:
            while True:
                await asyncio.sleep(self._keep_every)
                try:
                    kept = await self._bus.keep(delivery)
                    reraise_cancellation()  # a bus client may have lost it
                    if not kept:
                        log.warning("%s/%s: %s was handed to another consumer", self._topic,
                                    self._group, delivery.event)
                except Exception as exc:
                    # Cancelled when the block ends: that must end this loop, or the
                    # block's end would wait for it forever.
                    reraise_cancellation()
                    log.warning("%s/%s: could not renew %s (%s: %s)", self._topic,
                                self._group, delivery.event, type(exc).__name__, exc)

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            await asyncio.wait([renewing])

