"""What operators read: Prometheus metrics, with the gauges that come from the catalogue and
the bus refreshed at scrape time, and readiness (can this process reach what it needs?)."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from chunkcast.domain.errors import Unavailable, public_text
from chunkcast.metrics import Metrics
from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import VideoRepository
from chunkcast.ports.storage import ObjectStore
from chunkcast.services.outages import BUS, CATALOGUE, STORAGE, failed_dependency

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Check:
    """One dependency's answer: ``ms`` is how long it took (or how long it was waited for);
    ``reason`` says why it failed, in plain words without hosts or URLs."""

    ok: bool
    ms: float
    reason: str | None = None


class Operations:
    def __init__(self, repo: VideoRepository, bus: EventBus, store: ObjectStore,
                 metrics: Metrics, consumer_groups: Sequence[tuple[str, str]], *,
                 check_timeout_s: float = CHECK_TIMEOUT_S) -> None:
        """``consumer_groups``: the (topic, group) pairs whose backlog is reported;
        ``check_timeout_s``: how long readiness waits for each dependency."""
        self._repo = repo
        self._bus = bus
        self._metrics = metrics
        self._groups = tuple(consumer_groups)
        self._timeout = check_timeout_s
        self._pings: dict[str, Callable[[], Awaitable[None]]] = {
            CATALOGUE: repo.ping, STORAGE: store.ping, BUS: bus.ping}
        # The check of each dependency still running, shared by every readiness request
        # meanwhile: a server that hangs costs one pending call, however often it is asked.
        # Eviction: removed when the call ends.
        self._running: dict[str, asyncio.Task[None]] = {}
        self._up: dict[str, bool] = {}  # the last answer of each, to log only changes

    async def metrics_text(self) -> bytes:
        """The metrics in Prometheus' text format, gauges refreshed. A gauge whose source is
        unreachable keeps its last value: the scrape still shows everything else (and
        ``dependency_up`` says what is down)."""
        try:
            for status, count in (await self._repo.count_by_status()).items():
                self._metrics.videos.labels(status).set(count)
        except Exception as exc:
            if failed_dependency(exc) is None:
                raise
        try:
            for topic, group in self._groups:
                self._metrics.bus_backlog.labels(topic, group).set(
                    await self._bus.backlog(topic, group))
        except Exception as exc:
            if failed_dependency(exc) is None:
                raise
        return self._metrics.render()

    async def readiness(self) -> dict[str, Check]:
        """Every dependency checked at once, each for at most the check timeout."""
        names = list(self._pings)
        checks = await asyncio.gather(*(self._check(name) for name in names))
        return dict(zip(names, checks, strict=True))

    async def _check(self, name: str) -> Check:
        task = self._running.get(name)
        if task is None:
            task = self._running[name] = asyncio.create_task(self._ping(name),
                                                             name=f"ping-{name}")
            task.add_done_callback(lambda done: self._forget(name, done))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(task)
        except TimeoutError:
            check = Check(False, _ms(started), f"no answer within {self._timeout:g} s")
            self._record(name, check, None)
        except Exception as exc:
            check = Check(False, _ms(started), _reason(exc))
            self._record(name, check, exc)
        else:
            check = Check(True, _ms(started))
            self._record(name, check, None)
        return check

    async def _ping(self, name: str) -> None:
        await self._pings[name]()

    def _forget(self, name: str, task: "asyncio.Task[None]") -> None:
        if self._running.get(name) is task:
            del self._running[name]
        if not task.cancelled():
            task.exception()  # retrieved: a ping nobody waited for any more is not an error

    def _record(self, name: str, check: Check, exc: BaseException | None) -> None:
        self._metrics.dependency_up.labels(name).set(1 if check.ok else 0)
        if self._up.get(name, True) != check.ok:
            if check.ok:
                log.warning("readiness: the %s answers again", name)
            else:
                log.warning("readiness: the %s fails: %s", name, check.reason, exc_info=exc)
        self._up[name] = check.ok


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _reason(exc: BaseException) -> str:
    """Why a check failed, for anyone to read: the error's kind, never its text (which may
    name hosts and ports), except our own :class:`Unavailable` whose text is written so."""
    if isinstance(exc, Unavailable):
        return public_text(exc.message)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"unreachable ({type(exc).__name__})"
