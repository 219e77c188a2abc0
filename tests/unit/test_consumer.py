"""The consumer loop: bad media against dependency trouble, retry budgets, bookkeeping that
must be recorded before an ack, surviving the bus's own trouble, heartbeats, graceful stop."""

import asyncio
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

from tests.services.faulty import FAST, FaultyBus, Outage, settled, working

from chunkcast.adapters.bus.memory import MemoryBus
from chunkcast.domain import events, keys
from chunkcast.domain.clock import iso_ms
from chunkcast.domain.errors import MediaError, Unavailable
from chunkcast.domain.events import Event
from chunkcast.metrics import Metrics
from chunkcast.runtime import run_consumers
from chunkcast.services.outages import CATALOGUE, STORAGE
from chunkcast.worker.consumer import (
    CRASHED,
    Consumer,
    GiveUp,
    Handler,
    RetryBudget,
    outage_reason,
)

VIDEO = "a" * 16
SOURCE = events.SourceUploaded(VIDEO, keys.source(VIDEO))
SHORT = RetryBudget(live_s=0.2, vod_s=0.2, first_delay_s=0.01, max_delay_s=0.05)
ACK_TIMEOUT_S = 0.3
WAIT_S = 5.0


def live_chunk(seq: int = 0, reported_at: str | None = None) -> events.ChunkUploaded:
    return events.ChunkUploaded(VIDEO, "live", seq, keys.chunk(VIDEO, seq), 2.0 * seq, 2.0,
                                reported_at=reported_at)


class Outcomes:
    """What the consumer's ``give_up`` was asked to record; it fails while ``outage`` is
    down, as the catalogue would."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.given_up: list[tuple[Event, str]] = []
        self.outage = outage or Outage(CATALOGUE)
        self.asked = asyncio.Event()

    async def __call__(self, event: Event, reason: str) -> None:
        self.asked.set()
        await self.outage.check("give_up")
        self.given_up.append((event, reason))


def failing(*errors: Exception) -> tuple[Handler, list[Event]]:
    """A handler raising ``errors`` one call after the other, then succeeding."""
    calls: list[Event] = []
    pending = list(errors)

    async def handler(event: Event) -> None:
        calls.append(event)
        if pending:
            raise pending.pop(0)

    return handler, calls


def consuming(
    bus: FaultyBus, handler: Handler, give_up: GiveUp, *, topic: str = events.SOURCES,
    budget: RetryBudget = FAST, metrics: Metrics | None = None, max_attempts: int = 3,
) -> AbstractAsyncContextManager[Consumer]:
    """A consumer of group "g" running for the block, then stopped."""
    return working(bus, topic, "g", handler, give_up, budget=budget, metrics=metrics,
                   ack_timeout_s=ACK_TIMEOUT_S, max_attempts=max_attempts)


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def group_ready(bus: MemoryBus, topic: str = events.SOURCES) -> None:
    await bus.ensure_group(topic, "g")


# -- bad media against dependency trouble ----------------------------------------------

async def test_bad_media_is_given_up_at_once_and_set_aside() -> None:
    inner = MemoryBus()
    bus = FaultyBus(inner)
    handler, calls = failing(MediaError("not a readable video file"))
    outcomes = Outcomes()
    async with consuming(bus, handler, outcomes):
        await group_ready(inner)
        await inner.publish(events.SOURCES, SOURCE)
        _, error = await settled(bus)
    assert calls == [SOURCE]  # never retried: the same file fails the same way
    assert outcomes.given_up == [(SOURCE, "not a readable video file")]
    assert error == "not a readable video file"
    assert await inner.backlog(events.SOURCES, "g") == 0


async def test_dependency_trouble_is_retried_in_place_until_it_passes() -> None:
    inner = MemoryBus()
    bus = FaultyBus(inner)
    metrics = Metrics()
    handler, calls = failing(Unavailable("no answer", dependency=STORAGE),
                             ConnectionRefusedError(111, "refused"), TimeoutError())
    outcomes = Outcomes()
    async with consuming(bus, handler, outcomes, metrics=metrics):
        await group_ready(inner)
        await inner.publish(events.SOURCES, SOURCE)
        delivery, error = await settled(bus)
    assert (delivery.attempt, error) == (1, None)  # acked, by the consumer that read it
    assert calls == [SOURCE] * 4
    assert outcomes.given_up == []
    assert counted(metrics, "chunkcast_retries_total", operation="sources.handle") == 3
    assert counted(metrics, "chunkcast_retry_budget_exhausted_total", kind="vod") == 0


async def test_an_upload_is_retried_for_its_budget_then_failed_with_a_plain_reason() -> None:
    inner = MemoryBus()
    bus = FaultyBus(inner)
    metrics = Metrics()
    outage = Unavailable("http://10.0.0.1:8333/bucket/sources/x did not answer",
                         dependency=STORAGE)
    handler, calls = failing(*[outage] * 1000)
    outcomes = Outcomes()
    async with consuming(bus, handler, outcomes, budget=SHORT, metrics=metrics):
        await group_ready(inner)
        await inner.publish(events.SOURCES, SOURCE)
        _, error = await settled(bus)
    assert len(calls) > 2
    assert outcomes.given_up == [(SOURCE, "storage was unreachable for 1 second")]
    assert error == "storage was unreachable for 1 second"
    assert counted(metrics, "chunkcast_retry_budget_exhausted_total", kind="vod") == 1


async def test_a_live_chunk_reported_too_long_ago_is_not_retried() -> None:
    inner = MemoryBus()
    bus = FaultyBus(inner)
    metrics = Metrics()
    chunk = live_chunk(reported_at=iso_ms(datetime.now(UTC) - timedelta(seconds=60)))
    handler, calls = failing(Unavailable("no answer", dependency=STORAGE))
    outcomes = Outcomes()
    async with consuming(bus, handler, outcomes, topic=events.CHUNKS, metrics=metrics):
        await group_ready(inner, events.CHUNKS)
        await inner.publish(events.CHUNKS, chunk)
        await settled(bus)
    assert calls == [chunk]  # 60 s after its report, a live chunk is of no use any more
    assert outcomes.given_up == [(chunk, "storage was unreachable for 1 second")]
    assert counted(metrics, "chunkcast_retry_budget_exhausted_total", kind="live") == 1


async def test_a_fresh_live_chunk_is_retried_and_made() -> None:
    inner = MemoryBus()
    bus = FaultyBus(inner)
    chunk = live_chunk(reported_at=iso_ms(datetime.now(UTC)))
    handler, calls = failing(Unavailable("no answer", dependency=STORAGE))
    async with consuming(bus, handler, Outcomes(), topic=events.CHUNKS):
        await group_ready(inner, events.CHUNKS)
        await inner.publish(events.CHUNKS, chunk)
        _, error = await settled(bus)
    assert (calls, error) == ([chunk, chunk], None)


def test_budgets_and_reasons() -> None:
    budget = RetryBudget(live_s=30.0, vod_s=900.0)
    reported = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
    assert budget.deadline(live_chunk(reported_at=iso_ms(reported)), 5.0) == (
        reported.timestamp() + 30.0)
    assert budget.deadline(live_chunk(), 5.0) == 35.0  # no report time: from the 1st try
    assert budget.deadline(SOURCE, 5.0) == 905.0
    assert outage_reason(Unavailable("x", dependency=STORAGE), 901.0) == (
        "storage was unreachable for 15 minutes")
    assert outage_reason(Unavailable("x", dependency=CATALOGUE), 30.2) == (
        "the catalogue was unreachable for 30 seconds")
    assert outage_reason(KeyError("a bug"), 7200.0) == "processing kept failing for 2 hours"


# -- never ack what was not recorded; never die of the bus's trouble -------------------

async def test_the_event_is_not_acked_until_giving_up_is_recorded() -> None:
    inner = MemoryBus()
    bus = FaultyBus(inner)
    handler, _ = failing(MediaError("undecodable"))
    outcomes = Outcomes()
    outcomes.outage.begin()  # the catalogue is down when the failure is to be recorded
    async with consuming(bus, handler, outcomes):
        await group_ready(inner)
        await inner.publish(events.SOURCES, SOURCE)
        await outcomes.outage.refusals(3)
        assert bus.settled.empty()
        assert await inner.backlog(events.SOURCES, "g") == 1
        outcomes.outage.end()
        _, error = await settled(bus)
    assert outcomes.given_up == [(SOURCE, "undecodable")]
    assert error == "undecodable"


async def test_a_consumer_outlives_its_bus_being_down() -> None:
    inner = MemoryBus()
    outage = Outage("bus")
    bus = FaultyBus(inner, outage)
    second = events.SourceUploaded("b" * 16, keys.source("b" * 16))
    calls: list[Event] = []

    async def handler(event: Event) -> None:
        calls.append(event)
        if event == second:
            outage.begin()  # the bus goes down while the second event is handled

    outage.begin()  # down from the start: the group cannot even be created
    async with consuming(bus, handler, Outcomes()):
        await outage.refusals(3)
        outage.end()
        await group_ready(inner)
        await inner.publish(events.SOURCES, SOURCE)
        _, error = await settled(bus)
        assert (calls, error) == ([SOURCE], None)

        await inner.publish(events.SOURCES, second)
        await outage.refusals(outage.refused + 3)  # its ack is refused for a while
        assert await inner.backlog(events.SOURCES, "g") == 1
        outage.end()
        delivery, error = await settled(bus)
    assert (delivery.event, error) == (second, None)
    assert calls == [SOURCE, second]  # handled once: the ack was retried, not the work
    assert await inner.backlog(events.SOURCES, "g") == 0


async def test_a_consumer_that_stops_on_its_own_is_started_again() -> None:
    inner = MemoryBus()
    bus = FaultyBus(inner)
    handler, calls = failing()

    class Fragile(Consumer):
        """Dies once, as a bug the loop did not survive would make it."""

        runs = 0

        async def run(self) -> None:
            Fragile.runs += 1
            if Fragile.runs == 1:
                raise RuntimeError("a bug")
            await super().run()

    consumer = Fragile(bus, events.SOURCES, "g", "c", {events.SourceUploaded: handler},
                       (events.SourceUploaded,), metrics=Metrics(), give_up=Outcomes(),
                       ack_timeout_s=ACK_TIMEOUT_S)
    stop = asyncio.Event()
    running = asyncio.create_task(run_consumers([consumer], stop, grace_s=1,
                                                restart_after_s=0.01))
    await group_ready(inner)
    await inner.publish(events.SOURCES, SOURCE)
    _, error = await settled(bus)
    stop.set()
    await asyncio.wait_for(running, WAIT_S)
    assert (Fragile.runs, calls, error) == (2, [SOURCE], None)


async def test_an_event_that_kept_crashing_its_worker_is_given_up_unhandled() -> None:
    inner = MemoryBus(ack_timeout_s=0.01)
    bus = FaultyBus(inner)
    await group_ready(inner)
    await inner.publish(events.SOURCES, SOURCE)
    for attempt in (1, 2, 3):  # three workers died holding it
        while not (got := await inner.read(events.SOURCES, "g", f"dead-{attempt}",
                                           block_s=0.1)):
            pass
        assert got[0].attempt == attempt
    handler, calls = failing()
    outcomes = Outcomes()
    async with consuming(bus, handler, outcomes, max_attempts=3):
        delivery, error = await settled(bus)
    assert (delivery.attempt, calls, error) == (4, [], CRASHED)
    assert outcomes.given_up == [(SOURCE, CRASHED)]


# -- heartbeats, stops --------------------------------------------------------------------

async def test_an_event_in_hand_is_never_handed_to_another_worker() -> None:
    inner = MemoryBus(ack_timeout_s=ACK_TIMEOUT_S)
    bus = FaultyBus(inner)
    started, finish = asyncio.Event(), asyncio.Event()

    async def long_transcode(event: Event) -> None:
        started.set()
        await finish.wait()

    async with consuming(bus, long_transcode, Outcomes()):
        await group_ready(inner)
        await inner.publish(events.SOURCES, SOURCE)
        await asyncio.wait_for(started.wait(), WAIT_S)
        # Five ack timeouts later, another worker still finds nothing to take over.
        assert await inner.read(events.SOURCES, "g", "other", block_s=5 * ACK_TIMEOUT_S) == []
        finish.set()
        delivery, error = await settled(bus)
    assert (delivery.attempt, error) == (1, None)


async def test_an_event_held_by_a_killed_worker_goes_to_another_within_the_ack_timeout(
) -> None:
    inner = MemoryBus(ack_timeout_s=ACK_TIMEOUT_S)
    started = asyncio.Event()

    async def long_transcode(event: Event) -> None:
        started.set()
        await asyncio.Event().wait()

    consumer = Consumer(inner, events.SOURCES, "g", "c",
                        {events.SourceUploaded: long_transcode}, (events.SourceUploaded,),
                        metrics=Metrics(), give_up=Outcomes(), ack_timeout_s=ACK_TIMEOUT_S)
    running = asyncio.create_task(consumer.run())
    await group_ready(inner)
    await inner.publish(events.SOURCES, SOURCE)
    await asyncio.wait_for(started.wait(), WAIT_S)
    running.cancel()  # killed: no more heartbeats, no ack
    killed_at = asyncio.get_running_loop().time()
    await asyncio.wait([running])

    (again,) = await inner.read(events.SOURCES, "g", "other", block_s=WAIT_S)
    assert (again.event, again.attempt) == (SOURCE, 2)
    assert asyncio.get_running_loop().time() - killed_at < ACK_TIMEOUT_S + 0.5


async def test_a_stop_releases_an_event_waiting_to_be_retried() -> None:
    inner = MemoryBus(ack_timeout_s=0.1)
    bus = FaultyBus(inner)
    tried = asyncio.Event()

    async def handler(event: Event) -> None:
        tried.set()
        raise Unavailable("down", dependency=STORAGE)

    slow = RetryBudget(vod_s=900.0, first_delay_s=60.0, max_delay_s=60.0)
    async with consuming(bus, handler, Outcomes(), budget=slow):
        await group_ready(inner)
        await inner.publish(events.SOURCES, SOURCE)
        await asyncio.wait_for(tried.wait(), WAIT_S)
    # Stopped at once, not after a minute; the event waits for another worker.
    assert bus.settled.empty()
    (again,) = await inner.read(events.SOURCES, "g", "other", block_s=WAIT_S)
    assert again.event == SOURCE


async def test_a_handler_map_missing_an_event_type_is_refused() -> None:
    try:
        Consumer(MemoryBus(), events.SOURCES, "g", "c", {}, (events.SourceUploaded,),
                 metrics=Metrics(), give_up=Outcomes())
    except TypeError as exc:
        assert "SourceUploaded" in str(exc)
    else:
        raise AssertionError("a consumer without a handler for its events was accepted")


async def test_a_stop_lets_the_event_in_hand_finish_and_takes_no_new_one() -> None:
    bus = MemoryBus()
    started = asyncio.Event()
    finished: list[Event] = []
    release = asyncio.Event()

    async def slow(event: Event) -> None:
        started.set()
        await release.wait()
        finished.append(event)

    consumer = Consumer(bus, events.SOURCES, "g", "c", {events.SourceUploaded: slow},
                        (events.SourceUploaded,), metrics=Metrics(), give_up=Outcomes())
    stop = asyncio.Event()
    running = asyncio.create_task(run_consumers([consumer], stop, grace_s=5))
    await group_ready(bus)
    await bus.publish(events.SOURCES, SOURCE)
    await started.wait()
    stop.set()  # SIGTERM in `chunkcast worker`
    await bus.publish(events.SOURCES, SOURCE)
    release.set()
    await asyncio.wait_for(running, 5)
    assert finished == [SOURCE]  # the one in hand was finished and acked...
    assert await bus.backlog(events.SOURCES, "g") == 1  # ...the next one waits for others


async def test_past_the_grace_period_the_event_in_hand_is_released() -> None:
    bus = MemoryBus(ack_timeout_s=0.1)
    started = asyncio.Event()

    async def stuck(event: Event) -> None:
        started.set()
        await asyncio.Event().wait()

    consumer = Consumer(bus, events.SOURCES, "g", "c", {events.SourceUploaded: stuck},
                        (events.SourceUploaded,), metrics=Metrics(), give_up=Outcomes(),
                        ack_timeout_s=0.1)
    stop = asyncio.Event()
    running = asyncio.create_task(run_consumers([consumer], stop, grace_s=0.2))
    await group_ready(bus)
    await bus.publish(events.SOURCES, SOURCE)
    await started.wait()
    stop.set()
    await asyncio.wait_for(running, 5)
    (again,) = await bus.read(events.SOURCES, "g", "other", block_s=WAIT_S)
    assert again.event == SOURCE and again.attempt == 2  # another worker gets it
