"""Driving an API process's live feed from the bus: its ``segments`` and ``videos`` events,
and the periodic sweep."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from chunkcast.domain import events
from chunkcast.ports.bus import EventBus
from chunkcast.services.live import LiveFeed
from chunkcast.services.outages import OutageLog

log = logging.getLogger(__name__)


async def run_feed(feed: LiveFeed, bus: EventBus) -> None:
    """Follow the bus until cancelled (one of these per API process)."""
    async def take_segment(event: events.Event) -> None:
        if isinstance(event, events.SegmentReady):
            await feed.on_segment(event)

    async def take_video(event: events.Event) -> None:
        if isinstance(event, events.VideoStatusChanged):
            await feed.on_status(event)
        elif isinstance(event, events.VideoPrivacyChanged):
            feed.on_privacy(event)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(_follow(feed, bus, events.SEGMENTS, take_segment))
        tasks.create_task(_follow(feed, bus, events.VIDEOS, take_video))
        tasks.create_task(_sweep(feed))


async def _follow(feed: LiveFeed, bus: EventBus, topic: str,
                  take: Callable[[events.Event], Awaitable[None]]) -> None:
    """Feed every event of ``topic`` to ``take``. If the subscription breaks or is cut off,
    subscribe again, then catch up with the catalogue (:meth:`LiveFeed.resync`)."""
    lost = False
    outage = OutageLog(log, f"live feed ({topic})")
    while True:
        try:
            # Positioned before the catalogue is read: nothing falls between the two.
            subscription = await bus.subscribe(topic)
            if lost:
                await feed.resync(topic)
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
