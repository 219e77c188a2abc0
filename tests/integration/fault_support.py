"""What viewers of a stream under a fault saw: :class:`Recorder` (a viewer), what the
broadcaster says it sent (:class:`Broadcaster`), and the measurements (:func:`measure`), per
fault (:class:`Outcome`):

- stall: the longest time a viewer went without a new segment, from the fault's start to
  the end of the run;
- late: segments that reached a viewer more than :data:`LATE_AFTER_S` after their capture;
- gaps: seqs viewers were told are missing;
- lost: chunks the broadcaster reported sent that a viewer got neither as a segment nor as
  a gap and that the replay playlist does not list either;
- and the targets: no loss, every chunk captured after the fault delivered as itself, the
  stream live throughout, the upload ready, stall at most the outage plus
  :data:`STALL_ALLOWANCE_S`.
"""

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import websockets

from chunkcast.media.process import die_with_parent
from chunkcast.testing import Server

LATE_AFTER_S = 5.0  # a segment reaching a viewer later than this after its capture is late
STALL_ALLOWANCE_S = 3.0  # target: a stall no longer than the outage plus this
STOP_WAIT_S = 40.0  # for a broadcaster to upload what it has and end the stream
BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # the web player's reconnection delays (feed.js)
FINAL = frozenset({"ended", "ready", "failed"})  # statuses after which nothing more comes


def outage_seconds(default: float = 4.0) -> float:
    """How long a stop-and-start fault keeps its server down: ``CHUNKCAST_FAULT_OUTAGE_S``."""
    return float(os.environ.get("CHUNKCAST_FAULT_OUTAGE_S", default))


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# --- the viewer --------------------------------------------------------------------------

@dataclass(frozen=True)
class Arrival:
    at: float
    """Wall-clock time (epoch seconds) the message arrived."""
    seq: int
    kind: str  # "segment" or "gap"
    captured_at: float | None = None


class Recorder:
    """A WebSocket viewer of one rendition, as the web player behaves: it records every
    segment and gap with its arrival time and, when its connection drops, connects again
    (after the player's backoff) with ``since=<last seq received>``. Runs in a thread of its
    own until the status says nothing more will come, or :meth:`close`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.arrivals: list[Arrival] = []
        self.statuses: list[tuple[float, str]] = []
        self.duplicates: list[int] = []  # seqs sent again after a later one
        self.connections = 0
        self.drops: list[str] = []  # why connections ended
        self.ended = False
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name="viewer", daemon=True)
        self._thread.start()

    def segments(self) -> list[Arrival]:
        with self._changed:
            return [a for a in self.arrivals if a.kind == "segment"]

    def wait(self, predicate: Callable[["Recorder"], bool], timeout_s: float) -> bool:
        """Until ``predicate(self)`` holds (checked on every message) or the time is up."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout_s)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop is closed: it ended by itself
            if self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    def _main(self) -> None:
        self._task = self._loop.create_task(self._view())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Around every change: waiters look again once it is made."""
        with self._changed:
            yield
            self._changed.notify_all()

    async def _view(self) -> None:
        last, failures = -1, 0
        while not self.ended:
            try:
                async with websockets.connect(f"{self.url}?since={last}", open_timeout=5,
                                              close_timeout=1) as ws:
                    with self._changing():
                        self.connections += 1
                    async for raw in ws:
                        failures = 0
                        last = self._take(json.loads(raw), last)
                        if self.ended:
                            return
                    reason = f"closed {ws.close_code} {ws.close_reason}"
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            with self._changing():
                self.drops.append(reason)
            await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
            failures += 1

    def _take(self, message: dict[str, Any], last: int) -> int:
        now = time.time()
        kind = message.get("type")
        if kind in ("segment", "gap"):
            seq = int(message["seq"])
            captured = message.get("captured_at")
            with self._changing():
                if seq <= last:
                    self.duplicates.append(seq)
                    return last
                self.arrivals.append(
                    Arrival(now, seq, str(kind), epoch(captured) if captured else None))
            return seq
        if kind == "status":
            with self._changing():
                self.statuses.append((now, str(message["status"])))
                self.ended = message["status"] in FINAL
        return last


# --- the broadcaster ---------------------------------------------------------------------

SENT = re.compile(r"chunk (\d+) sent in \d+ ms \(.*captured (\S+?)\)")
SKIPPED = re.compile(r"chunk (\d+) skipped: (.*)")


@dataclass(frozen=True)
class SentChunk:
    """A chunk the broadcaster reported sent, or ``skipped`` (why it gave up on it)."""

    seq: int
    captured_at: float
    """For a skipped chunk: estimated from the chunks its process sent (1 s each)."""
    skipped: str | None = None


class Broadcaster:
    """``chunkcast broadcast`` of a looped clip in 1 s chunks to ``client``; each process's
    output (one line per chunk sent or skipped) goes to a log of its own in ``folder``."""

    def __init__(self, client: Server, stream: dict[str, Any], clip: Path, folder: Path
                 ) -> None:
        self._argv = [sys.executable, "-m", "chunkcast", "broadcast", str(clip), "--stream",
                      stream["id"], f"--key={stream['stream_key']}", "--server", client.url,
                      "--chunk-seconds", "1", "--loop"]
        self._folder = folder
        self.logs: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        log = self._folder / f"broadcast-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=out,
                                         start_new_session=True, preexec_fn=die_with_parent)

    def kill(self) -> None:
        """``kill -9`` (its ffmpeg dies with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout_s: float = STOP_WAIT_S) -> int | None:
        """Ctrl-C: it uploads what is closed and ends the stream. Its exit code (None: it
        had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def chunks(self) -> list[SentChunk]:
        """Every chunk reported sent or skipped, process by process (a seq sent again by a
        restarted broadcaster appears twice, the later one last)."""
        found: list[SentChunk] = []
        for log in self.logs:
            lines = log.read_text(errors="replace").splitlines()
            sent = [SentChunk(int(m[1]), epoch(m[2])) for line in lines
                    if (m := SENT.search(line))]
            for line in lines:
                if skipped := SKIPPED.search(line):
                    seq = int(skipped[1])
                    near = min(sent, key=lambda c: abs(c.seq - seq), default=None)
                    # Unknown (nothing sent by that process): counted as after the fault.
                    captured = float("inf") if near is None else near.captured_at + seq - near.seq
                    found.append(SentChunk(seq, captured, skipped[2]))
            found += sent
        return found


# --- what was delivered ---------------------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    started: float
    ended: float
    """Epoch seconds: chunks captured from then on must all be delivered."""
    outage_s: float | None = None
    """How long the fault made its component unavailable (default: ended - started)."""

    @property
    def outage(self) -> float:
        return self.ended - self.started if self.outage_s is None else self.outage_s


def replay_entries(client: Server, stream_id: str, rendition: str) -> tuple[set[int], set[int]]:
    """The seqs of the ended stream's playlist: segments, and gap entries."""
    segments: set[int] = set()
    gaps: set[int] = set()
    url = f"{client.url}/play/{stream_id}/{rendition}/index.m3u8"
    with contextlib.suppress(httpx.HTTPError):
        text = httpx.get(url, timeout=30, follow_redirects=True).text
        is_gap = False
        for line in text.splitlines():
            if line == "#EXT-X-GAP":
                is_gap = True
            elif line and not line.startswith("#"):
                if found := re.search(r"(\d{8})\.m4s", line):
                    (gaps if is_gap else segments).add(int(found[1]))
                is_gap = False
    return segments, gaps


ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|WARNING)\b|^\w+(\.\w+)*(Error|Exception)\b")


def errors_since(marks: dict[Path, int], limit: int = 6) -> dict[str, list[str]]:
    """Error lines each log got since ``marks`` (its size then): the first few different."""
    found: dict[str, list[str]] = {}
    for path, offset in marks.items():
        if not path.exists():
            continue
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        lines: list[str] = []
        for line in text.splitlines():
            if ERROR_LINE.search(line.strip()):
                short = re.sub(r"^\S+ \S+ ", "", line.strip())[:300]  # without the time
                if short not in lines:
                    lines.append(short)
            if len(lines) >= limit:
                break
        if lines:
            found[f"{path.parent.name}/{path.name}"] = lines
    return found


def log_marks(paths: list[Path]) -> dict[Path, int]:
    """Where each log ends now: what :func:`errors_since` reads from."""
    return {p: p.stat().st_size if p.exists() else 0 for p in paths}


# --- what viewers saw ------------------------------------------------------------------------

@dataclass
class Outcome:
    scenario: str
    outage_s: float
    stall_s: float
    late: list[int]
    gaps: list[int]
    lost: list[int]
    unannounced: list[int]
    """Sent or skipped, and some viewer got neither a segment nor a gap for it (the replay
    may have it)."""
    missed_after: list[int]
    """Captured after the fault, and some viewer did not get it as a segment of that chunk."""
    statuses: list[str]
    """What viewers were told of the stream's status before it was ended."""
    stream_status: str
    upload_before: str
    upload_status: str
    sent: int
    skipped: list[str]
    broadcaster_exit: int | None
    reconnects: int
    duplicates: list[int]
    latency_p50_s: float
    timeline: str
    """One viewer's messages: ``seq:arrived/captured`` in seconds from the fault's start
    (``gap`` for gaps)."""
    notes: list[str]
    errors: dict[str, list[str]]

    @property
    def budget_s(self) -> float:
        return self.outage_s + STALL_ALLOWANCE_S

    def problems(self) -> list[str]:
        """The targets this run missed, in words."""
        found = []
        if self.stall_s > self.budget_s:
            found.append(f"viewers saw no new segment for {self.stall_s:.1f} s (outage "
                         f"{self.outage_s:.1f} s + {STALL_ALLOWANCE_S:.0f} s allowed)")
        if self.lost:
            found.append(f"lost (no segment, no gap, not in the replay): {self.lost}")
        if self.unannounced:
            found.append(f"missing at a viewer without a gap: {self.unannounced}")
        if self.missed_after:
            found.append(f"captured after the fault, not delivered: {self.missed_after}")
        if set(self.statuses) - {"live"} or self.stream_status != "live":
            found.append(f"the stream did not stay live: viewers were told {self.statuses}, "
                         f"the API said {self.stream_status!r} before the end")
        if self.upload_before in FINAL:
            found.append(f"the upload was no longer in progress at the fault "
                         f"({self.upload_before})")
        if self.upload_status != "ready":
            found.append(f"the upload ended {self.upload_status!r}")
        if self.duplicates:
            found.append(f"seqs sent twice to a viewer: {self.duplicates}")
        if self.broadcaster_exit != 0:
            found.append(f"the broadcaster exited with {self.broadcaster_exit}")
        return found

    def summary(self) -> str:
        return (f"{self.scenario}: stall {self.stall_s:.1f} s (outage {self.outage_s:.1f} s), "
                f"late {len(self.late)}, gaps {len(self.gaps)}, lost {len(self.lost)}, "
                f"sent {self.sent}, reconnects {self.reconnects}, "
                f"latency p50 {self.latency_p50_s:.2f} s")

    def report(self) -> str:
        """Everything a failure message needs: the summary, what was missed, why."""
        lines = [self.summary(), *(f"  MISSED: {p}" for p in self.problems()),
                 *(f"  note: {n}" for n in self.notes),
                 *(f"  skipped by the broadcaster: {s}" for s in self.skipped[:5])]
        for log, errors in self.errors.items():
            lines += [f"  {log}:", *(f"    {e}" for e in errors)]
        lines.append(f"  timeline (s from the fault, seq:arrived/captured): {self.timeline}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "outage_s": round(self.outage_s, 2),
                "stall_s": round(self.stall_s, 2), "budget_s": round(self.budget_s, 2),
                "late": len(self.late), "gaps": len(self.gaps), "lost": len(self.lost),
                "lost_seqs": self.lost, "unannounced": self.unannounced,
                "missed_after_fault": self.missed_after, "sent": self.sent,
                "skipped": len(self.skipped), "reconnects": self.reconnects,
                "latency_p50_s": round(self.latency_p50_s, 3),
                "upload": self.upload_status, "stream": self.stream_status,
                "problems": self.problems(), "notes": self.notes,
                "skipped_chunks": self.skipped, "errors": self.errors,
                "timeline": self.timeline}


def stall_of(arrivals: list[Arrival], started: float, stopped: float) -> float:
    """The longest time without a new segment from ``started`` until the last segment
    (or ``stopped``, the end of the broadcast, if it came later)."""
    points = sorted([started, stopped,
                     *(a.at for a in arrivals if a.kind == "segment" and a.at > started)])
    return max(b - a for a, b in itertools.pairwise(points))


def measure(name: str, fault: Fault, recorders: list[Recorder], broadcaster: Broadcaster,
            replay: tuple[set[int], set[int]], *, stopped_at: float, **facts: Any) -> Outcome:
    chunks = broadcaster.chunks()
    latest = {c.seq: c for c in chunks}  # a seq sent again: its last chunk
    replay_segments, replay_gaps = replay
    late: set[int] = set()
    gaps: set[int] = set()
    unannounced: set[int] = set()
    missed_after: set[int] = set()
    latencies: list[float] = []
    for r in recorders:
        got = {a.seq: a for a in r.arrivals}
        gaps |= {a.seq for a in r.arrivals if a.kind == "gap"}
        for a in r.arrivals:
            if a.kind == "segment" and a.captured_at is not None:
                latencies.append(a.at - a.captured_at)
                if a.at - a.captured_at > LATE_AFTER_S:
                    late.add(a.seq)
        unannounced |= {seq for seq in latest if seq not in got}
        for seq, chunk in latest.items():
            arrival = got.get(seq)
            delivered = (arrival is not None and arrival.kind == "segment"
                         and arrival.captured_at is not None
                         and abs(arrival.captured_at - chunk.captured_at) < 0.01)
            if chunk.captured_at >= fault.ended and not delivered:
                missed_after.add(seq)
    lost = {seq for seq in unannounced if latest[seq].skipped is None
            and seq not in replay_segments | replay_gaps}
    return Outcome(
        scenario=name, outage_s=fault.outage,
        stall_s=max(stall_of(r.arrivals, fault.started, stopped_at) for r in recorders),
        late=sorted(late), gaps=sorted(gaps), lost=sorted(lost),
        unannounced=sorted(unannounced), missed_after=sorted(missed_after),
        statuses=[s for r in recorders for at, s in r.statuses if at < stopped_at],
        sent=sum(1 for c in chunks if c.skipped is None),
        skipped=[f"{c.seq}: {c.skipped}" for c in chunks if c.skipped is not None],
        reconnects=sum(max(0, r.connections - 1) for r in recorders),
        duplicates=sorted({d for r in recorders for d in r.duplicates}),
        latency_p50_s=statistics.median(latencies) if latencies else float("nan"),
        timeline=_timeline(recorders[0].arrivals, fault.started), **facts)


def _timeline(arrivals: list[Arrival], started: float) -> str:
    return " ".join(
        f"{a.seq}:{a.at - started:+.1f}/" + ("gap" if a.captured_at is None
                                              else f"{a.captured_at - started:+.1f}")
        for a in arrivals)
