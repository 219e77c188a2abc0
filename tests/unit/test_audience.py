"""Viewers across the cluster: each API process's reports summed by every other, expired when
a process goes silent, bounded, and told to viewers as the cluster's total."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import uuid4

import pytest
from tests.servers.redis import RedisServer
from tests.unit.feed_support import Clock, add_video, watch

from chunkcast.adapters.bus.memory import MemoryBus
from chunkcast.adapters.bus.redis import RedisBus
from chunkcast.adapters.db.repository import SqlVideoRepository
from chunkcast.domain import events
from chunkcast.domain.events import AudienceReported
from chunkcast.metrics import Metrics
from chunkcast.ports.bus import EventBus
from chunkcast.services.audience import EXPIRE_INTERVALS, MAX_COUNT, Audience
from chunkcast.services.live import VIEWERS_INTERVAL_S, LiveFeed
from chunkcast.services.live_follow import leave_audience, run_feed

V1, V2, V3 = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"


def said(process: str, counts: dict[str, int], *, every_s: float = 1.0,
         leaving: bool = False) -> AudienceReported:
    return AudienceReported(process, counts, "2026-11-24T10:00:00.000Z", every_s, leaving)


def test_the_others_reports_are_summed_per_video_and_replaced_whole() -> None:
    audience = Audience("here", clock=Clock())
    assert audience.heard(said("a", {V1: 3, V2: 1})) == {V1, V2}
    assert audience.heard(said("b", {V1: 2})) == {V1}
    assert (audience.others(V1), audience.others(V2), audience.others(V3)) == (5, 1, 0)
    # The next report is a's whole table: V2 left out means none there any more.
    assert audience.heard(said("a", {V1: 3, V3: 4})) == {V2, V3}
    assert (audience.others(V1), audience.others(V2), audience.others(V3)) == (5, 0, 4)
    assert audience.heard(said("a", {V1: 3, V3: 4})) == set()  # nothing new
    assert audience.per_process() == {"a": 7, "b": 2}


def test_its_own_reports_back_from_the_bus_are_not_counted() -> None:
    audience = Audience("here", clock=Clock())
    assert audience.heard(said("here", {V1: 3})) == set()
    assert audience.others(V1) == 0


def test_a_silent_process_expires_with_its_viewers_and_a_leaving_one_at_once() -> None:
    clock = Clock()
    audience = Audience("here", clock=clock)
    audience.heard(said("a", {V1: 3}))
    audience.heard(said("b", {V1: 2}, every_s=2.0))
    audience.heard(said("c", {V2: 1}))
    assert audience.heard(said("c", {}, leaving=True)) == {V2}  # a clean stop: gone now
    clock.now += EXPIRE_INTERVALS * 1.0 - 0.01
    assert audience.expire() == set()
    clock.now += 0.01
    assert audience.expire() == {V1}  # a's three intervals are up, not b's (2 s each)
    assert audience.others(V1) == 2
    clock.now += EXPIRE_INTERVALS * 1.0
    assert audience.expire() == {V1}
    assert audience.others(V1) == 0
    assert audience.sizes() == {"processes": 0, "videos": 0, "counts": 0}


def test_a_process_reports_while_it_has_viewers_then_once_without() -> None:
    audience = Audience("here", clock=Clock())
    assert audience.report({}) is None
    first = audience.report({V1: 2, V2: 0})
    assert first is not None and first.process == "here" and first.counts == {V1: 2}
    again = audience.report({V1: 2})
    assert again is not None and again.counts == {V1: 2}  # every interval: it is alive
    last = audience.report({})
    assert last is not None and last.counts == {}
    assert audience.report({}) is None
    leaving = audience.leave()
    assert leaving.leaving and leaving.counts == {}


def test_reports_are_bounded_in_videos_and_processes() -> None:
    audience = Audience("here", max_processes=2, max_videos=2, clock=Clock())
    made = audience.report({V1: 1, V2: 5, V3: 3})
    assert made is not None and made.counts == {V2: 5, V3: 3}  # the most watched
    audience.heard(said("a", {V1: 1, V2: 5, V3: 3}))
    assert (audience.others(V1), audience.others(V2)) == (0, 5)
    audience.heard(said("b", {V1: 1}))
    audience.heard(said("c", {V1: 1}))  # one too many: the least recently heard goes
    assert audience.per_process() == {"b": 1, "c": 1}
    assert (audience.others(V1), audience.others(V2)) == (2, 0)


@pytest.mark.parametrize("counts", [
    {"../etc": 3, V1: -1, V2: True, V3: "7"},
    ["not", "a", "table"],
    {V1: 1.5},
])
def test_malformed_reports_count_nothing(counts: Any) -> None:
    audience = Audience("here", clock=Clock())
    assert audience.heard(said("a", counts)) == set()
    assert audience.sizes()["processes"] == 0


def test_counts_and_intervals_from_outside_are_clamped() -> None:
    clock = Clock()
    audience = Audience("here", clock=clock)
    audience.heard(said("a", {V1: 10**12}, every_s=float("nan")))
    audience.heard(said("b", {V2: 1}, every_s=1e9))
    assert audience.others(V1) == MAX_COUNT
    clock.now += EXPIRE_INTERVALS * 1.0  # nan: the default interval
    assert audience.expire() == {V1}
    clock.now += 3600  # a huge interval is at most a minute
    assert audience.expire() == {V2}
    assert audience.heard(said("x" * 201, {V1: 1})) == set()


async def test_viewers_are_told_the_total_of_every_process(
    repo: SqlVideoRepository,
) -> None:
    clock = Clock()
    audience = Audience("here", clock=clock)
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, elsewhere=audience.others,
                    clock=clock)
    video_id = await add_video(repo)
    viewer, _ = await watch(feed, video_id, "240p")
    await watch(feed, video_id, "360p")
    assert feed.audience() == {video_id: 2}
    clock.now += VIEWERS_INTERVAL_S
    await feed.sweep()
    assert viewer.messages("viewers") == [{"type": "viewers", "count": 2}]

    feed.recount(audience.heard(said("there", {video_id: 5, V1: 1})))
    assert (feed.viewers(video_id), feed.viewers_here(video_id), feed.viewers(V1)) == (7, 2, 1)
    assert feed.audience() == {video_id: 2}  # a report names this process's viewers only
    await feed.sweep()
    assert len(viewer.messages("viewers")) == 1  # at most one message per interval
    clock.now += VIEWERS_INTERVAL_S
    await feed.sweep()
    assert viewer.messages("viewers")[-1] == {"type": "viewers", "count": 7}
    clock.now += EXPIRE_INTERVALS * audience.every_s
    feed.recount(audience.expire())
    clock.now += VIEWERS_INTERVAL_S
    await feed.sweep()
    assert viewer.messages("viewers")[-1] == {"type": "viewers", "count": 2}


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until ``condition`` holds, checking after each turn of the event loop's work."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    """The embedded bus, and Redis (a key prefix of the test's own)."""
    if request.param == "memory":
        opened: EventBus = MemoryBus(None)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        opened = RedisBus(server.url, prefix=f"audience-{uuid4().hex}")
    yield opened
    await opened.close()


async def test_two_processes_on_one_bus_see_the_same_total(
    repo: SqlVideoRepository, bus: EventBus,
) -> None:
    """Two API processes' feeds on one bus (in one event loop): each reports its viewers and
    shows the sum; one that stops is dropped from the other's total at once."""
    video_id = await add_video(repo)
    audiences = [Audience(name, every_s=0.05) for name in ("api-1", "api-2")]
    feeds = [LiveFeed(repo, "http://cdn", gap_timeout_s=5, elsewhere=a.others)
             for a in audiences]
    metrics = [Metrics(), Metrics()]
    running = [asyncio.create_task(run_feed(f, bus, a, m))
               for f, a, m in zip(feeds, audiences, metrics, strict=True)]
    try:
        first, _ = await watch(feeds[0], video_id)
        await watch(feeds[1], video_id)
        await watch(feeds[1], video_id, "360p")
        await _until(lambda: [f.viewers(video_id) for f in feeds] == [3, 3])
        await _until(lambda: {"type": "viewers", "count": 3} in first.messages("viewers"))
        await _until(lambda: 'chunkcast_viewers{process="api-2"} 2.0'
                     in metrics[0].render().decode())
        assert 'chunkcast_viewers{process="api-1"} 1.0' in metrics[0].render().decode()

        running[1].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running[1]
        await leave_audience(audiences[1], bus)
        await _until(lambda: feeds[0].viewers(video_id) == 1)
        await _until(lambda: "api-2" not in metrics[0].render().decode())
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


async def test_a_process_that_goes_silent_is_dropped_after_the_expiry(
    repo: SqlVideoRepository, bus: EventBus,
) -> None:
    video_id = await add_video(repo)
    audience = Audience("api-1", every_s=0.05)
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, elsewhere=audience.others)
    following = asyncio.create_task(run_feed(feed, bus, audience))
    try:
        # Another process, as seen on the bus: it reports (until the feed has subscribed
        # and heard it), then dies without a word.
        async with asyncio.timeout(10):
            while feed.viewers(video_id) != 4:
                await bus.publish(events.AUDIENCE, said("killed", {video_id: 4}, every_s=0.05))
                await asyncio.sleep(0.02)
        heard = time.monotonic()
        await _until(lambda: feed.viewers(video_id) == 0)
        # Not before its three intervals, and soon after them (the feed checks every 0.05 s).
        assert EXPIRE_INTERVALS * 0.05 - 0.03 <= time.monotonic() - heard < 1.0
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
