"""Dependencies that go down when a test says so: wrappers of the real store, catalogue and
bus of :mod:`tests.services.world` that refuse every call while their :class:`Outage` is on,
and pass it through to the real thing otherwise.

A refused call raises :class:`Unavailable` naming the dependency, as an adapter does when
its server does not answer. While storage is down, ``input_url`` still answers (an S3
store signs URLs without asking the server) but gives a URL nothing can be read from, so
the prober and the encoder fail on it as ffmpeg fails on an unreachable server: with a
:class:`MediaError` that is not the media's fault.
"""

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from chunkcast.domain import events
from chunkcast.domain.errors import Unavailable
from chunkcast.metrics import Metrics
from chunkcast.ports.bus import Delivery
from chunkcast.services.outages import BUS, CATALOGUE, STORAGE
from chunkcast.worker.consumer import Consumer, GiveUp, Handler, RetryBudget

# Retries a test can wait out: a few milliseconds apart, for the default budgets.
FAST = RetryBudget(live_s=30.0, vod_s=30.0, first_delay_s=0.01, max_delay_s=0.05)


class Outage:
    """One dependency, up or down. ``refused`` counts the calls refused so far; a test
    waits for the next ones with :meth:`refusals` (no sleeping)."""

    def __init__(self, dependency: str) -> None:
        self.dependency = dependency
        self.refused = 0
        self._down = False
        self._spared = 0
        self._changed = asyncio.Condition()

    def begin(self, *, after_calls: int = 0) -> None:
        """Go down, once ``after_calls`` more calls have gone through."""
        self._down, self._spared = True, after_calls

    def end(self) -> None:
        self._down = False

    @property
    def down(self) -> bool:
        return self._down and not self._spared

    async def check(self, operation: str) -> None:
        """Raise :class:`Unavailable` if the dependency is down."""
        if not self._down:
            return
        if self._spared:
            self._spared -= 1
            return
        self.refused += 1
        async with self._changed:
            self._changed.notify_all()
        raise Unavailable(f"{self.dependency} did not answer {operation}",
                          dependency=self.dependency)

    async def refusals(self, count: int) -> None:
        """Return once ``count`` calls in all have been refused."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.refused >= count)


class _Switched:
    """Every coroutine method of ``inner`` (but those ``spared``) checks ``outage`` first;
    everything else is ``inner``'s own."""

    def __init__(self, inner: Any, outage: Outage, spared: frozenset[str]) -> None:
        self._inner = inner
        self._outage = outage
        self._spared = spared

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in self._spared or not inspect.iscoroutinefunction(attr):
            return attr
        return self._checked(name, attr)

    def _checked(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            await self._outage.check(name)
            return await method(*args, **kwargs)
        return call


class FaultyStore(_Switched):
    """An :class:`~chunkcast.ports.storage.ObjectStore` that is down while ``outage`` is."""

    def __init__(self, inner: Any, outage: Outage) -> None:
        super().__init__(inner, outage, frozenset({"close", "input_url"}))

    async def input_url(self, key: str, expires_s: int = 3600) -> str:
        url: str = await self._inner.input_url(key, expires_s)
        return url + ".unreachable" if self._outage.down else url


class FaultyRepo(_Switched):
    """A :class:`~chunkcast.ports.repository.VideoRepository` that is down while
    ``outage`` is."""

    def __init__(self, inner: Any, outage: Outage) -> None:
        super().__init__(inner, outage, frozenset({"close"}))


class FaultyBus(_Switched):
    """An :class:`~chunkcast.ports.bus.EventBus` that is down while ``outage`` is, and
    tells what its consumers settled: every delivery acked or dead-lettered through it is
    put on ``settled`` (with the dead letter's error, or None)."""

    def __init__(self, inner: Any, outage: Outage | None = None) -> None:
        super().__init__(inner, outage or Outage(BUS), frozenset({"close"}))
        self.settled: asyncio.Queue[tuple[Delivery, str | None]] = asyncio.Queue()

    async def ack(self, delivery: Delivery) -> None:
        await self._outage.check("ack")
        await self._inner.ack(delivery)
        self.settled.put_nowait((delivery, None))

    async def dead_letter(self, delivery: Delivery, error: str) -> None:
        await self._outage.check("dead_letter")
        await self._inner.dead_letter(delivery, error)
        self.settled.put_nowait((delivery, error))


class Outages:
    """The switches of one world: its storage and its catalogue."""

    def __init__(self) -> None:
        self.storage = Outage(STORAGE)
        self.catalogue = Outage(CATALOGUE)

    def store(self, inner: Any) -> FaultyStore:
        return FaultyStore(inner, self.storage)

    def repo(self, inner: Any) -> FaultyRepo:
        return FaultyRepo(inner, self.catalogue)


@asynccontextmanager
async def working(
    bus: FaultyBus, topic: str, group: str, handler: Handler, give_up: GiveUp, *,
    metrics: Metrics | None = None, budget: RetryBudget = FAST, ack_timeout_s: float = 0.3,
    max_attempts: int = 3,
) -> AsyncIterator[Consumer]:
    """A worker's consumer of ``group`` on ``topic`` through ``bus``, running for the
    block; stopped at its end (what it holds then is released, not acked)."""
    expected = events.TOPIC_EVENTS[topic]
    consumer = Consumer(bus, topic, group, "w", dict.fromkeys(expected, handler), expected,
                        metrics=metrics or Metrics(), give_up=give_up, budget=budget,
                        ack_timeout_s=ack_timeout_s, max_attempts=max_attempts)
    running = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        consumer.stop()
        await asyncio.wait_for(running, 5.0)


async def settled(bus: FaultyBus) -> tuple[Delivery, str | None]:
    """The next delivery a consumer acked (error None) or set aside (its error)."""
    return await asyncio.wait_for(bus.settled.get(), 5.0)
