"""When a chunk was captured: the segment list, ffmpeg's progress reports, the clock.
"""

import csv
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class ClosedChunk:
    """One line of the CSV segment list: a chunk file the muxer has closed, and the stream
    times (seconds, counted from the first packet) it covers."""

    name: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def parse_segment_line(line: str) -> ClosedChunk | None:
    """``name,start,end`` (CSV, the name quoted when it needs to be) or None when the line
    is not one."""
    rows = list(csv.reader([line.strip()]))
    if len(rows) != 1 or len(rows[0]) != 3:
        return None
    name, start, end = rows[0]
    try:
        return ClosedChunk(name, float(start), float(end))
    except ValueError:
        return None


def parse_out_time(line: str) -> float | None:
    """Seconds from a ``-progress`` ``out_time_us=…`` line (None for other lines and N/A)."""
    key, sep, value = line.strip().partition("=")
    if not sep or key != "out_time_us":
        return None
    try:
        return int(value) / 1_000_000
    except ValueError:
        return None




class CaptureClock:
    """Maps stream time to the wall-clock time of capture from ``(wall, out_time)``
    observations (see the module docstring). ``window_s`` None keeps the minimum over every
    observation (paced sources); a number keeps only the observations that recent."""

    def __init__(self, window_s: float | None = None) -> None:
        self._window = window_s
        self._best: float | None = None
        self._recent: deque[tuple[float, float]] = deque()

    def observe(self, wall: float, out_time: float) -> None:
        offset = wall - out_time
        if self._window is None:
            self._best = offset if self._best is None else min(self._best, offset)
            return
        self._recent.append((wall, offset))
        while self._recent and self._recent[0][0] < wall - self._window:
            self._recent.popleft()

    @property
    def anchor(self) -> float | None:
        """The wall-clock time of stream time 0, once something was observed."""
        if self._window is None:
            return self._best
        return min((o for _, o in self._recent), default=None)

    def captured_at(self, stream_time: float, *, fallback: float) -> float:
        """When the frame at ``stream_time`` was captured; ``fallback`` before any report."""
        anchor = self.anchor
        return fallback if anchor is None else anchor + stream_time
