"""Driving an API process's live feed from the bus: its ``segments`` and ``videos`` events,
the periodic sweep, and the cluster's audience (``audience``: this process's viewer counts
reported, the others' taken)."""

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable

from chunkcast.domain import events
from chunkcast.metrics import Metrics
from chunkcast.ports.bus import EventBus
from chunkcast.services.audience import Audience
from chunkcast.services.live import LiveFeed
from chunkcast.services.outages import OutageLog

log = logging.getLogger(__name__)

LEAVE_TIMEOUT_S = 1.0  # a stopping process waits this long at most to say it is leaving


async def run_feed(feed: LiveFeed, bus: EventBus, audience: Audience | None = None,
                   metrics: Metrics | None = None) -> None:
    """Follow the bus until cancelled (one of these per API process). With ``audience``
    (every API process; the feed's ``elsewhere`` must be its :meth:`Audience.others`), also
    report this process's viewers and take the others' (and keep ``metrics``' viewers
    gauge)."""
    async def take_segment(event: events.Event) -> None:
        if isinstance(event, events.SegmentReady):
            await feed.on_segment(event)

    async def take_video(event: events.Event) -> None:
        if isinstance(event, events.VideoStatusChanged):
            await feed.on_status(event)
        elif isinstance(event, events.VideoPrivacyChanged):
            feed.on_privacy(event)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(_follow(bus, events.SEGMENTS, take_segment,
                                  functools.partial(feed.resync, events.SEGMENTS)))
        tasks.create_task(_follow(bus, events.VIDEOS, take_video,
                                  functools.partial(feed.resync, events.VIDEOS)))
        tasks.create_task(_sweep(feed))
        if audience is not None:
            tasks.create_task(_follow_audience(feed, bus, audience))
            tasks.create_task(_report(feed, bus, audience, metrics or Metrics()))


async def leave_audience(audience: Audience, bus: EventBus) -> None:
    """Tell the other API processes this one is stopping (its viewers are gone): they drop
    its counts at once rather than after the expiry. Best effort, briefly."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(bus.publish(events.AUDIENCE, audience.leave()), LEAVE_TIMEOUT_S)


async def _follow(bus: EventBus, topic: str, take: Callable[[events.Event], Awaitable[None]],
                  recover: Callable[[], Awaitable[None]]) -> None:
    """Feed every event of ``topic`` to ``take``. If the subscription breaks or is cut off,
    subscribe again, then ``recover`` what was missed (the feed catches up with the
    catalogue: :meth:`LiveFeed.resync`)."""
    lost = False
    outage = OutageLog(log, f"live feed ({topic})")
    while True:
        try:
            # Positioned before the catalogue is read: nothing falls between the two.
            subscription = await bus.subscribe(topic)
            if lost:
                await recover()
                lost = False
            outage.ok()
            async for event in subscription:
                try:
                    await take(event)
                except Exception:
                    log.exception("live feed: could not take %s", event)
        except Exception as exc:  # subscribing again, then catching up
            outage.failed(exc)
            lost = True
            await asyncio.sleep(1.0)


async def _sweep(feed: LiveFeed) -> None:
    outage = OutageLog(log, "live feed sweep")
    while True:
        await asyncio.sleep(feed.sweep_interval_s)
        try:
            await feed.sweep()
        except Exception as exc:
            outage.failed(exc)
        else:
            outage.ok()


async def _follow_audience(feed: LiveFeed, bus: EventBus, audience: Audience) -> None:
    """The other processes' reports: their viewers' totals change."""
    async def take(event: events.Event) -> None:
        if isinstance(event, events.AudienceReported):
            feed.recount(audience.heard(event))

    async def nothing_to_recover() -> None:
        """Reports lost meanwhile are made good by the next ones (each is a whole table)."""

    await _follow(bus, events.AUDIENCE, take, nothing_to_recover)


async def _report(feed: LiveFeed, bus: EventBus, audience: Audience, metrics: Metrics) -> None:
    """Every interval: report this process's viewers, drop the processes gone silent (their
    viewers' totals change), and set the per-process viewers gauge."""
    outage = OutageLog(log, "audience report")
    while True:
        feed.recount(audience.expire())
        here = feed.audience()
        metrics.set_viewers({audience.process: sum(here.values()), **audience.per_process()})
        report = audience.report(here)
        if report is not None:
            await outage.attempt(bus.publish(events.AUDIENCE, report))
        await asyncio.sleep(audience.every_s)
