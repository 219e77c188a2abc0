"""The consumer loop: handlers, retries, dead letters, graceful stop."""

import asyncio

from chunkcast.adapters.bus.memory import MemoryBus
from chunkcast.domain import events
from chunkcast.domain.events import Event
from chunkcast.metrics import Metrics
from chunkcast.worker.consumer import Consumer

EVENT = events.SourceUploaded("a" * 16, "sources/aaaaaaaaaaaaaaaa/source")


async def test_an_event_that_keeps_failing_is_given_up_and_dead_lettered() -> None:
    bus = MemoryBus()
    calls: list[Event] = []
    given_up: list[tuple[Event, str]] = []

    async def handler(event: Event) -> None:
        calls.append(event)
        raise ValueError("boom")

    async def give_up(event: Event, exc: BaseException) -> None:
        given_up.append((event, str(exc)))

    consumer = Consumer(bus, events.SOURCES, "g", "c", {events.SourceUploaded: handler},
                        (events.SourceUploaded,), metrics=Metrics(), max_attempts=3,
                        give_up=give_up, retry_delay_s=0.01)
    task = asyncio.create_task(consumer.run())
    await asyncio.sleep(0.05)
    await bus.publish(events.SOURCES, EVENT)
    for _ in range(100):
        if bus.dead_letters:
            break
        await asyncio.sleep(0.02)
    consumer.stop()
    await asyncio.wait_for(task, 5)
    assert len(calls) == 3
    assert given_up == [(EVENT, "boom")]
    (delivery, error), = bus.dead_letters
    assert delivery.event == EVENT and error == "ValueError: boom"
    assert await bus.backlog(events.SOURCES, "g") == 0


async def test_a_handler_map_missing_an_event_type_is_refused() -> None:
    try:
        Consumer(MemoryBus(), events.SOURCES, "g", "c", {}, (events.SourceUploaded,),
                 metrics=Metrics())
    except TypeError as exc:
        assert "SourceUploaded" in str(exc)
    else:
        raise AssertionError("a consumer without a handler for its events was accepted")


async def test_a_stop_lets_the_event_in_hand_finish_and_takes_no_new_one() -> None:
    from chunkcast.runtime import run_consumers

    bus = MemoryBus()
    started = asyncio.Event()
    finished: list[Event] = []

    async def slow(event: Event) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(event)

    consumer = Consumer(bus, events.SOURCES, "g", "c", {events.SourceUploaded: slow},
                        (events.SourceUploaded,), metrics=Metrics())
    stop = asyncio.Event()
    running = asyncio.create_task(run_consumers([consumer], stop, grace_s=5))
    await asyncio.sleep(0.05)
    await bus.publish(events.SOURCES, EVENT)
    await started.wait()
    stop.set()  # SIGTERM in `chunkcast worker`
    await bus.publish(events.SOURCES, EVENT)
    await asyncio.wait_for(running, 5)
    assert finished == [EVENT]  # the one in hand was finished and acked...
    assert await bus.backlog(events.SOURCES, "g") == 1  # ...the next one waits for others


async def test_past_the_grace_period_the_event_in_hand_is_released() -> None:
    from chunkcast.runtime import run_consumers

    bus = MemoryBus(ack_timeout_s=0.1)
    started = asyncio.Event()

    async def stuck(event: Event) -> None:
        started.set()
        await asyncio.sleep(60)

    consumer = Consumer(bus, events.SOURCES, "g", "c", {events.SourceUploaded: stuck},
                        (events.SourceUploaded,), metrics=Metrics())
    stop = asyncio.Event()
    running = asyncio.create_task(run_consumers([consumer], stop, grace_s=0.2))
    await asyncio.sleep(0.05)
    await bus.publish(events.SOURCES, EVENT)
    await started.wait()
    stop.set()
    await asyncio.wait_for(running, 5)
    await asyncio.sleep(0.15)
    (again,) = await bus.read(events.SOURCES, "g", "other", block_s=0)
    assert again.event == EVENT and again.attempt == 2  # another worker gets it
