"""The outbox: a write that must be announced records its events in the catalogue in the same
transaction, so a bus that is down loses none. The writer publishes them right after its
commit (no delay on the live path); what it could not publish, the relay of every API
process publishes later, in the order it was recorded. Delivery stays at-least-once: an
event may be published twice (its handlers are idempotent), never lost."""

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from chunkcast.cancellation import reraise_cancellation
from chunkcast.domain.clock import utc_now
from chunkcast.metrics import Metrics
from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import PendingEvent, VideoRepository

log = logging.getLogger(__name__)

# Younger events are left to their writer, which is publishing them right now.
RELAY_DELAY_S = 1.0
RELAY_INTERVAL_S = 0.5
RELAY_BATCH = 100


async def publish_recorded(repo: VideoRepository, bus: EventBus,
                           recorded: Sequence[PendingEvent]) -> bool:
    """Publish events already committed to the outbox, in order, and remove those published.
    A failure is logged, not raised: the write they announce is done and they are kept, so
    the relay publishes them later (the one that failed and those after it, in order).
    Returns whether every event was published."""
    if not recorded:
        return True
    published: list[int] = []
    try:
        for pending in recorded:
            await bus.publish(pending.topic, pending.event)
            published.append(pending.id)
    except Exception as exc:  # any bus error: the event is durable, the relay retries it
        log.warning("%s not published now, the outbox relay will: %s",
                    recorded[len(published)].event.type, exc)
    try:
        await repo.delete_pending(published)
    except Exception as exc:  # published: at worst the relay publishes it again
        log.warning("published events left in the outbox: %s", exc)
    return len(published) == len(recorded)


class OutboxRelay:
    """Publishes what writers left in the outbox. Every API process runs one; on PostgreSQL
    two relays never take the same event at once."""

    def __init__(self, repo: VideoRepository, bus: EventBus, metrics: Metrics, *,
                 delay_s: float = RELAY_DELAY_S, interval_s: float = RELAY_INTERVAL_S,
                 batch: int = RELAY_BATCH, clock: Callable[[], datetime] = utc_now) -> None:
        self._repo = repo
        self._bus = bus
        self._metrics = metrics
        self._delay = timedelta(seconds=delay_s)
        self._interval = interval_s
        self._batch = batch
        self._clock = clock
        self._failing = False

    async def relay(self) -> int:
        """Publish, in the order they were recorded, the events older than the delay until
        none is left, then set the outbox gauges. Returns how many were published; raises
        what the bus or the catalogue raised (what was published before stays published)."""
        total = 0
        try:
            while True:
                published = await self._repo.relay_pending(
                    self._publish, recorded_before=self._clock() - self._delay,
                    limit=self._batch)
                total += published
                if published < self._batch:
                    return total
        finally:
            await self._measure()

    async def run(self) -> None:
        """Relay every interval until cancelled. A dependency that fails is logged once and
        tried again each round."""
        while True:
            try:
                published = await self.relay()
            except Exception as exc:  # any dependency error: the events wait, in order
                reraise_cancellation()
                if not self._failing:
                    log.warning("outbox relay: cannot publish now, retrying: %s", exc)
                self._failing = True
            else:
                if self._failing or published:
                    log.info("outbox relay: published %d waiting events", published)
                self._failing = False
            await asyncio.sleep(self._interval)

    async def _publish(self, pending: PendingEvent) -> None:
        await self._bus.publish(pending.topic, pending.event)

    async def _measure(self) -> None:
        count, oldest = await self._repo.outbox_backlog()
        self._metrics.outbox_pending.set(count)
        lag = 0.0 if oldest is None else (self._clock() - oldest).total_seconds()
        self._metrics.outbox_lag.set(max(0.0, lag))
