"""The event bus: topics, consumer groups, at-least-once delivery."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from chunkcast.domain.events import Event, decode


@dataclass(frozen=True)
class Delivery:
    """One event handed to one consumer (``consumer``, the name it read under);
    ``attempt`` counts deliveries (1 = first)."""

    topic: str
    group: str
    id: str
    event: Event
    attempt: int
    consumer: str


@dataclass(frozen=True)
class DeadLetter:
    """An event a bus set aside after too many deliveries (Redis and Kafka keep them):
    ``data`` is the encoded event as it was read."""

    topic: str
    group: str
    id: str
    data: str
    error: str
    attempt: int

    @property
    def event(self) -> Event:
        return decode(self.data)


class SubscriptionLost(Exception):
    """A subscriber fell too far behind and was cut off: subscribe again, and recover what
    was published meanwhile from elsewhere (the catalogue)."""


class EventBus(Protocol):
    """Each consumer group sees every event of a topic published after the group was created;
    members of one group share them. An event read but not acked within the ack timeout is
    handed out again (to any member), including after a restart of the process, unless its
    consumer keeps it (:meth:`keep`)."""

    async def publish(self, topic: str, event: Event) -> str:
        """Append ``event`` to ``topic``; returns its id."""

    async def ensure_group(self, topic: str, group: str) -> None:
        """Create the consumer group if it does not exist (idempotent)."""

    async def read(
        self, topic: str, group: str, consumer: str, *, count: int = 1, block_s: float = 1.0
    ) -> list[Delivery]:
        """Up to ``count`` events for this consumer: expired unacked ones first, then new
        ones; waits up to ``block_s`` when there are none."""

    async def keep(self, delivery: Delivery) -> bool:
        """Still working on it: the event's ack timeout starts again, without counting a
        delivery. A consumer renews what it holds well within the ack timeout, so a long
        job stays with it while a consumer that died loses its events after the timeout.
        False when the event is no longer this consumer's (acked, or handed to another)."""

    async def ack(self, delivery: Delivery) -> None:
        """The consumer is done with this event; it is never handed out again."""

    async def dead_letter(self, delivery: Delivery, error: str) -> None:
        """Set aside an event that keeps failing, with its error, and ack it."""

    async def backlog(self, topic: str, group: str) -> int:
        """Events of ``topic`` the group has not acked yet (waiting or in flight)."""

    async def subscribe(self, topic: str) -> AsyncIterator[Event]:
        """Every event published to ``topic`` after this call returns, by any process, for
        as long as the returned iterator is consumed (where the topic ends is known before
        the call returns): fan-out to every subscriber, no group, no ack (what each API
        process uses to follow ``segments`` and ``videos``). Nothing is kept for a
        subscriber that is not there; one that falls too far behind may be cut off
        (iteration raises :class:`SubscriptionLost`) rather than buffered without bound."""

    async def ping(self) -> None:
        """Return when the bus answers; raise when it cannot be reached (readiness)."""

    async def close(self) -> None:
        """Release connections and files."""
