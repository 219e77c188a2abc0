"""Publishers across the cluster: every ingest process (``chunkcast ingest``, and the one
inside ``chunkcast up``) reports the figures of its publishers per stream on the bus
(``ingest`` topic, :class:`~chunkcast.domain.events.IngestReported`), and every API process
keeps the latest report of each ingest process, so a stream's resource shows its publisher
whichever ingest process it is connected to. The same rules as the audience
(:mod:`chunkcast.services.audience`):

A report is a process's whole table, not a change: a lost report is made good by the next
one. An ingest process reports every ``every_s`` while it has publishers, once more (empty)
when it has none left, and once with ``leaving`` when it stops cleanly; one not heard from
for :data:`EXPIRE_INTERVALS` of its intervals (killed, cut off from the bus) is dropped with
its publishers. Unlike the audience, an API process takes its own reports too: the ingest
inside ``chunkcast up`` reports through the bus like any other.

Bounded: reports of at most ``max_processes`` ingest processes (beyond, the least recently
heard is dropped), each naming at most ``max_streams`` streams (a report is cut to them when
made and when read). Reports come from the bus, so they are parsed as outside input: a
malformed stream id or protocol drops the stream, a malformed figure is dropped or clamped,
never trusted.
"""

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chunkcast.domain import events
from chunkcast.domain.clock import iso_now, parse_iso
from chunkcast.domain.errors import InvalidInput
from chunkcast.domain.events import IngestReported
from chunkcast.domain.ids import check_video_id
from chunkcast.ports.bus import EventBus
from chunkcast.services.outages import OutageLog

log = logging.getLogger(__name__)

REPORT_EVERY_S = 1.0  # how often an ingest process with publishers reports them
EXPIRE_INTERVALS = 3  # a process silent for this many of its report intervals is gone
MAX_PROCESSES = 256  # reports kept: ingest processes in one cluster
MAX_STREAMS = 4096  # streams named in one report
MAX_NAME = 200  # characters of a process name
MIN_EVERY_S, MAX_EVERY_S = 0.1, 60.0  # a reported interval is clamped to these
PROTOCOLS = ("rtmp", "srt")
MAX_KBPS = 10_000_000.0  # 10 Gb/s: a bitrate in is clamped to this
MAX_KEYFRAME_S = 3600.0
MAX_CHUNKS = 10**12
MAX_WARNING = 300  # characters of a warning
LEAVE_TIMEOUT_S = 1.0  # a stopping ingest waits this long at most to say it is leaving


@dataclass(frozen=True)
class PublisherStats:
    """What is measured of one live publisher (:mod:`chunkcast.ingest.publication`)."""

    protocol: str  # rtmp or srt
    bitrate_kbps: float  # over the last few seconds of arrivals
    keyframe_interval_s: float | None  # measured (RTMP), else the longest recent chunk
    keyframe_warning: str | None  # for people, when keyframes are too far apart
    chunks_cut: int  # chunks cut from its stream so far
    chunks_skipped: int  # of those, not stored (a gap for viewers)
    connected_at: str | None  # when it connected (ISO 8601 UTC)

    def wire(self) -> dict[str, Any]:
        """As a report carries it."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SeenPublisher:
    """A stream's publisher as an API process knows it: its figures, the ingest process it
    is connected to and when that process reported it; ``publishers``: how many ingest
    processes report a publisher on the stream (more than one: two encoders fighting over
    it, each on a different ingest process)."""

    stats: PublisherStats
    process: str
    reported_at: str
    publishers: int


@dataclass
class _Report:
    streams: dict[str, PublisherStats]
    at: str
    expires: float  # monotonic time after which the process is taken to be gone
    heard: float  # monotonic time it was received


class IngestReporter:
    """An ingest process's side: what it publishes, given its publishers' figures.
    ``process``: its name on the bus, unique in the cluster (host and pid)."""

    def __init__(self, process: str, *, every_s: float = REPORT_EVERY_S,
                 max_streams: int = MAX_STREAMS) -> None:
        self.process = process[:MAX_NAME]
        self.every_s = every_s
        self._max_streams = max_streams
        self._named_streams = False  # the last report named some: one empty one follows

    def report(self, here: Mapping[str, PublisherStats]) -> IngestReported | None:
        """What to publish now (None: nothing, there were no publishers at the last report
        either). Beyond ``max_streams`` the longest connected are named."""
        kept = sorted(here.items(), key=lambda item: (item[1].connected_at or "", item[0]))
        streams = {video_id: stats.wire() for video_id, stats in kept[:self._max_streams]}
        if not streams and not self._named_streams:
            return None
        self._named_streams = bool(streams)
        return IngestReported(self.process, streams, iso_now(), self.every_s)

    def leave(self) -> IngestReported:
        """The last report of a process that stops: the others drop it at once."""
        self._named_streams = False
        return IngestReported(self.process, {}, iso_now(), self.every_s, leaving=True)


class IngestStats:
    """The publishers every ingest process reported (an API process's table)."""

    def __init__(self, *, max_processes: int = MAX_PROCESSES, max_streams: int = MAX_STREAMS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_processes = max_processes
        self._max_streams = max_streams
        self._clock = clock
        # The latest report of every ingest process with publishers, least recently heard
        # first. Eviction: an empty or leaving report, expiry (EXPIRE_INTERVALS of its
        # intervals without a report: ignored from then on, dropped by the next sweep, at
        # most a second later when anything is heard or looked up), or beyond max_processes
        # the least recently heard.
        self._reports: OrderedDict[str, _Report] = OrderedDict()
        # Stream id -> the processes whose kept report names it. Eviction: with the report.
        self._by_stream: dict[str, set[str]] = {}
        self._swept = clock()  # when expired processes were last dropped

    def of(self, video_id: str) -> SeenPublisher | None:
        """The publisher of ``video_id`` most recently reported (None: no ingest process
        reports one, or none that is still heard from)."""
        now = self._sweep_if_due()
        live = [(name, report) for name in self._by_stream.get(video_id, ())
                if (report := self._reports[name]).expires > now]
        if not live:
            return None
        name, report = max(live, key=lambda item: item[1].heard)
        return SeenPublisher(report.streams[video_id], name, report.at, len(live))

    def heard(self, event: IngestReported) -> None:
        """Take an ingest process's report (this process's own included); the processes
        gone silent are dropped meanwhile."""
        self._sweep_if_due()
        name = event.process if isinstance(event.process, str) else ""
        if not name or len(name) > MAX_NAME:
            return
        streams = {} if event.leaving else self._parse(event.streams)
        if not streams:
            self._replace(name, None)
            return
        every_s = event.every_s if isinstance(event.every_s, int | float) \
            and math.isfinite(event.every_s) else REPORT_EVERY_S
        every_s = min(max(every_s, MIN_EVERY_S), MAX_EVERY_S)
        now = self._clock()
        self._replace(name, _Report(streams, _when(event.at) or iso_now(),
                                    now + EXPIRE_INTERVALS * every_s, now))
        while len(self._reports) > self._max_processes:
            self._replace(next(iter(self._reports)), None)

    def expire(self) -> None:
        """Drop the processes not heard from in time. Visits every report kept (at most
        ``max_processes``)."""
        now = self._swept = self._clock()
        for name in [n for n, r in self._reports.items() if r.expires <= now]:
            self._replace(name, None)

    def _sweep_if_due(self) -> float:
        """:meth:`expire` if it has not run for a second; returns the time now."""
        now = self._clock()
        if now - self._swept >= REPORT_EVERY_S:
            self.expire()
        return now

    def sizes(self) -> dict[str, int]:
        """What the table holds (each bounded)."""
        return {"processes": len(self._reports), "streams": len(self._by_stream),
                "publishers": sum(len(r.streams) for r in self._reports.values())}

    def _parse(self, raw: object) -> dict[str, PublisherStats]:
        """A report's streams as far as they make sense: well-formed stream ids and
        protocols, figures within bounds, at most ``max_streams``."""
        if not isinstance(raw, Mapping):
            return {}
        streams: dict[str, PublisherStats] = {}
        for video_id, figures in raw.items():
            if len(streams) >= self._max_streams:
                break
            if not isinstance(figures, Mapping) or figures.get("protocol") not in PROTOCOLS:
                continue
            try:
                streams[check_video_id(str(video_id))] = _stats(figures)
            except InvalidInput:
                continue
        return streams

    def _replace(self, name: str, report: _Report | None) -> None:
        """``name``'s report becomes ``report`` (None: dropped); the index follows."""
        old = self._reports.pop(name, None)
        for video_id in old.streams if old is not None else ():
            names = self._by_stream[video_id]
            names.discard(name)
            if not names:
                del self._by_stream[video_id]
        if report is not None:
            self._reports[name] = report  # the most recently heard, last
            for video_id in report.streams:
                self._by_stream.setdefault(video_id, set()).add(name)


def _number(value: object, high: float) -> float | None:
    """A finite number from outside, clamped to [0, high]; None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        return None
    return min(max(float(value), 0.0), high)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), MAX_CHUNKS)


def _when(value: object) -> str | None:
    """A time from outside if it is a plausible one (normalised), else None."""
    if isinstance(value, str) and len(value) <= 40:
        with contextlib.suppress(InvalidInput):
            return parse_iso(value)
    return None


def _stats(figures: Mapping[str, Any]) -> PublisherStats:
    keyframes = _number(figures.get("keyframe_interval_s"), MAX_KEYFRAME_S)
    warning = figures.get("keyframe_warning")
    return PublisherStats(
        protocol=str(figures["protocol"]),
        bitrate_kbps=round(_number(figures.get("bitrate_kbps"), MAX_KBPS) or 0.0, 1),
        keyframe_interval_s=round(keyframes, 3) if keyframes else None,
        keyframe_warning=warning[:MAX_WARNING] if isinstance(warning, str) and warning
        else None,
        chunks_cut=_count(figures.get("chunks_cut")),
        chunks_skipped=_count(figures.get("chunks_skipped")),
        connected_at=_when(figures.get("connected_at")))


# -- on the bus ---------------------------------------------------------------------------

async def report_publishers(bus: EventBus, reporter: IngestReporter,
                            here: Callable[[], Mapping[str, PublisherStats]]) -> None:
    """Until cancelled (every ingest process): every interval, report the publishers
    ``here`` gives. A report that cannot be published is dropped (the next one replaces
    it); the outage is logged once."""
    outage = OutageLog(log, "ingest report")
    while True:
        report = reporter.report(here())
        if report is not None:
            await outage.attempt(bus.publish(events.INGEST, report))
        await asyncio.sleep(reporter.every_s)


async def leave(bus: EventBus, reporter: IngestReporter) -> None:
    """Tell the API processes this ingest is stopping (its publishers are gone): they drop
    its figures at once rather than after the expiry. Best effort, briefly."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(bus.publish(events.INGEST, reporter.leave()), LEAVE_TIMEOUT_S)


async def follow_publishers(bus: EventBus, stats: IngestStats) -> None:
    """Until cancelled (every API process): take every ingest process's reports into
    ``stats``. A subscription that breaks is made again; reports lost meanwhile are made good
    by the next ones (each is a whole table), and those that stopped coming expire."""
    outage = OutageLog(log, "ingest reports")
    while True:
        try:
            subscription = await bus.subscribe(events.INGEST)
            outage.ok()
            async for event in subscription:
                if isinstance(event, IngestReported):
                    try:
                        stats.heard(event)
                    except Exception:
                        log.exception("could not take the ingest report %s", event)
        except Exception as exc:
            outage.failed(exc)
            await asyncio.sleep(1.0)
