"""A consumer group member: read events, run the handler for their type, ack when done."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from chunkcast.domain.events import Event
from chunkcast.metrics import Metrics
from chunkcast.ports.bus import Delivery, EventBus

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None]]
GiveUp = Callable[[Event, BaseException], Awaitable[None]]


class Consumer:
    """``handlers`` must cover every event type ``topic`` carries (checked at construction).

    A handler that raises is retried in place with backoff up to ``max_attempts``; then
    ``give_up`` is called and the event acked, so one poisoned event cannot block a group.
    An event held by a process that died is handed out again by the bus after its ack timeout.
    """

    def __init__(
        self, bus: EventBus, topic: str, group: str, name: str,
        handlers: Mapping[type[Event], Handler], expected: tuple[type[Event], ...], *,
        metrics: Metrics, concurrency: int = 1, max_attempts: int = 3,
        give_up: GiveUp | None = None, retry_delay_s: float = 1.0,
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
        self._retry_delay = retry_delay_s
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Take no new event; :meth:`run` returns once the events in hand are done."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop` (graceful) or cancellation (the events in hand are not
        acked, so the bus hands them to another consumer after the ack timeout)."""
        await self._bus.ensure_group(self._topic, self._group)
        async with asyncio.TaskGroup() as tasks:
            for slot in range(self._concurrency):
                tasks.create_task(self._loop(f"{self._name}-{slot}"))

    async def _loop(self, consumer: str) -> None:
        while not self._stopping.is_set():
            try:
                deliveries = await self._bus.read(self._topic, self._group, consumer)
            except Exception:
                # The bus is unreachable (a restart, a network blip): wait and read again.
                # Events in flight stay pending and are handed out after the ack timeout.
                log.exception("%s/%s: reading from the bus failed", self._topic, self._group)
                await asyncio.sleep(self._retry_delay)
                continue
            for delivery in deliveries:
                await self._process(delivery)

    async def _process(self, delivery: Delivery) -> None:
        handler = self._handlers[type(delivery.event)]
        if delivery.attempt > self._max_attempts:
            # Handed out again and again: the process died each time it held this event.
            log.error("%s/%s: giving up on %s after %d deliveries", self._topic, self._group,
                      delivery.event, delivery.attempt - 1)
            crashed = RuntimeError("processing kept crashing")
            if self._give_up is not None:
                await self._give_up(delivery.event, crashed)
            await self._bus.dead_letter(delivery, str(crashed))
            return
        for attempt in range(delivery.attempt, self._max_attempts + 1):
            try:
                await handler(delivery.event)
                break
            except asyncio.CancelledError:
                raise  # not acked: the bus hands the event out again
            except Exception as exc:
                self._metrics.handler_failures.labels(self._topic, self._group).inc()
                log.exception("%s/%s: handler failed on %s (attempt %d)", self._topic,
                              self._group, delivery.event, attempt)
                if attempt >= self._max_attempts:
                    if self._give_up is not None:
                        await self._give_up(delivery.event, exc)
                    await self._bus.dead_letter(delivery, f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(self._retry_delay * attempt)
        try:
            await self._bus.ack(delivery)
        except Exception:
            # Not acked: the event is handed out again; handlers are idempotent.
            log.exception("%s/%s: ack failed for %s", self._topic, self._group, delivery.event)
