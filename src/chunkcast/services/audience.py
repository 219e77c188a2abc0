"""Viewers across the cluster: every API process reports the viewers it serves per video on
the bus (``audience`` topic, :class:`~chunkcast.domain.events.AudienceReported`) and keeps the
latest report of every other process, so a video's viewers are its viewers here plus the sum
over the other processes still heard from.

A report is a process's whole table, not a change: a lost report is made good by the next
one. A process reports every ``every_s`` while it has viewers, once more (empty) when it has
none left, and once with ``leaving`` when it stops cleanly; one not heard from for
:data:`EXPIRE_INTERVALS` of its intervals (killed, cut off from the bus) is dropped with its
viewers.

Bounded: reports of at most ``max_processes`` processes (beyond, the least recently heard is
dropped), each naming at most ``max_videos`` videos (the most watched: a report is cut to
them when made and when read); the totals hold only videos with viewers elsewhere. Reports
come from the bus, so they are parsed as outside input: a malformed name, count or interval
is dropped or clamped, never trusted.
"""

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chunkcast.domain.clock import iso_now
from chunkcast.domain.errors import InvalidInput
from chunkcast.domain.events import AudienceReported
from chunkcast.domain.ids import check_video_id

REPORT_EVERY_S = 1.0  # how often a process with viewers reports them
EXPIRE_INTERVALS = 3  # a process silent for this many of its report intervals is gone
MAX_PROCESSES = 256  # reports kept: API processes in one cluster
MAX_VIDEOS = 4096  # videos named in one report: the most watched ones
MAX_COUNT = 10_000_000  # viewers of one video on one process, at most
MAX_NAME = 200  # characters of a process name
MIN_EVERY_S, MAX_EVERY_S = 0.1, 60.0  # a reported interval is clamped to these


@dataclass
class _Report:
    counts: dict[str, int]
    expires: float  # monotonic time after which the process is taken to be gone


def top(counts: Mapping[str, int], limit: int) -> dict[str, int]:
    """The ``limit`` most watched videos of ``counts`` (all of them when they fit)."""
    if len(counts) <= limit:
        return dict(counts)
    return dict(sorted(counts.items(), key=lambda item: item[1], reverse=True)[:limit])


class Audience:
    """The viewer counts this process knows of the others, and its own reports.
    ``process``: this process's name on the bus, unique in the cluster (host and pid)."""

    def __init__(self, process: str, *, every_s: float = REPORT_EVERY_S,
                 max_processes: int = MAX_PROCESSES, max_videos: int = MAX_VIDEOS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.process = process[:MAX_NAME]
        self.every_s = every_s
        self._max_processes = max_processes
        self._max_videos = max_videos
        self._clock = clock
        # The latest report of every other process with viewers, least recently heard first.
        # Eviction: an empty or leaving report, expiry (EXPIRE_INTERVALS of its intervals
        # without a report), or beyond max_processes the least recently heard.
        self._reports: OrderedDict[str, _Report] = OrderedDict()
        # Viewers per video summed over the reports kept. Eviction: a video whose sum is 0.
        self._totals: dict[str, int] = {}
        self._named_videos = False  # this process's last report named some: one empty follows

    # -- this process ----------------------------------------------------------------------

    def report(self, here: Mapping[str, int]) -> AudienceReported | None:
        """What to publish now, given the viewers per video on this process (None: nothing,
        it had no viewers at its last report either)."""
        counts = top({v: n for v, n in here.items() if n > 0}, self._max_videos)
        if not counts and not self._named_videos:
            return None
        self._named_videos = bool(counts)
        return AudienceReported(self.process, counts, iso_now(), self.every_s)

    def leave(self) -> AudienceReported:
        """The last report of a process that stops: the others drop it at once."""
        self._named_videos = False
        return AudienceReported(self.process, {}, iso_now(), self.every_s, leaving=True)

    # -- the others ------------------------------------------------------------------------

    def others(self, video_id: str) -> int:
        """Viewers of ``video_id`` on the other processes."""
        return self._totals.get(video_id, 0)

    def per_process(self) -> dict[str, int]:
        """Viewers on each other process (all videos)."""
        return {name: sum(r.counts.values()) for name, r in self._reports.items()}

    def heard(self, event: AudienceReported) -> set[str]:
        """Take another process's report; returns the videos whose viewers changed. This
        process's own reports (back from the bus) are ignored."""
        name = event.process if isinstance(event.process, str) else ""
        if not name or len(name) > MAX_NAME or name == self.process:
            return set()
        counts = {} if event.leaving else self._parse(event.counts)
        if not counts:
            return self._replace(name, None)
        every_s = event.every_s if isinstance(event.every_s, int | float) \
            and math.isfinite(event.every_s) else REPORT_EVERY_S
        every_s = min(max(every_s, MIN_EVERY_S), MAX_EVERY_S)
        changed = self._replace(name, _Report(counts, self._clock()
                                              + EXPIRE_INTERVALS * every_s))
        while len(self._reports) > self._max_processes:
            changed |= self._replace(next(iter(self._reports)), None)
        return changed

    def expire(self) -> set[str]:
        """Drop the processes not heard from in time; returns the videos whose viewers
        changed. Visits every report kept (at most ``max_processes``)."""
        now = self._clock()
        changed: set[str] = set()
        for name in [n for n, r in self._reports.items() if r.expires <= now]:
            changed |= self._replace(name, None)
        return changed

    def sizes(self) -> dict[str, int]:
        """What the table holds (each bounded)."""
        return {"processes": len(self._reports), "videos": len(self._totals),
                "counts": sum(len(r.counts) for r in self._reports.values())}

    def _parse(self, raw: object) -> dict[str, int]:
        """A report's counts as far as they make sense: well-formed video ids, positive
        whole numbers (clamped), the most watched ``max_videos``."""
        if not isinstance(raw, Mapping):
            return {}
        counts: dict[str, int] = {}
        for video_id, count in raw.items():
            if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
                continue
            try:
                counts[check_video_id(str(video_id))] = min(count, MAX_COUNT)
            except InvalidInput:
                continue
        return top(counts, self._max_videos)

    def _replace(self, name: str, report: _Report | None) -> set[str]:
        """``name``'s report becomes ``report`` (None: dropped); the totals follow."""
        old = self._reports.pop(name, None)
        before = old.counts if old is not None else {}
        after = report.counts if report is not None else {}
        if report is not None:
            self._reports[name] = report  # the most recently heard, last
        changed = set()
        for video_id in before.keys() | after.keys():
            delta = after.get(video_id, 0) - before.get(video_id, 0)
            if delta:
                total = self._totals.get(video_id, 0) + delta
                if total:
                    self._totals[video_id] = total
                else:
                    del self._totals[video_id]
                changed.add(video_id)
        return changed
