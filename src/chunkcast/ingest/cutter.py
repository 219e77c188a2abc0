"""The chunk cutter: one ffmpeg per publisher that remuxes its stream (FLV or MPEG-TS on
stdin) without re-encoding into MPEG-TS chunks cut at keyframes, like the broadcaster's.

The argv is a pure function (the segment muxer options are the broadcaster's own). Each
closed chunk is announced on stdout (CSV: name, start, end), and ``-progress`` reports on
stderr tell, ten times a second, how far the remux has got: the wall clock minus that is
when a chunk's first frame arrived, which is as close to its capture as the ingest can know
(the encoder's own buffering before it sent the frame is not visible here).
"""

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from chunkcast.broadcaster.timing import CaptureClock, parse_out_time, parse_segment_line
from chunkcast.media.broadcast_argv import segment_args
from chunkcast.media.process import die_with_parent

log = logging.getLogger(__name__)

# Containers a front-end may hand over, and the only demuxers the cutter opens them with.
CONTAINERS = ("flv", "mpegts")
# Enough to find a stream's codecs from its first packets, without waiting seconds for it.
PROBE_BYTES, ANALYZE_US = 1_000_000, 1_000_000
# Capture times follow the recent arrivals only (a publisher's clock drifts from ours).
CLOCK_WINDOW_S = 10.0


def cutter_argv(ffmpeg: str, container: str, out_dir: Path, *, chunk_seconds: int,
                timeline_start: float, loglevel: str = "error") -> list[str]:
    """Read ``container`` from stdin (no other protocol), copy its first video and audio
    streams, and cut ``out_dir/%08d.ts`` at the first keyframe after each
    ``chunk_seconds``, with file timestamps from ``timeline_start``."""
    if container not in CONTAINERS:
        raise ValueError(f"unsupported container {container!r}")
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", loglevel, "-y",
        "-probesize", str(PROBE_BYTES), "-analyzeduration", str(ANALYZE_US),
        "-protocol_whitelist", "pipe", "-f", container, "-i", "pipe:0",
        "-map", "0:v:0", "-map", "0:a:0?", "-c", "copy",
        "-progress", "pipe:2", "-stats_period", "0.1",
        *segment_args(out_dir, chunk_seconds, "pipe:1", timeline_start=timeline_start),
    ]


@dataclass(frozen=True)
class CutChunk:
    """A closed chunk file: its stream time (from the first packet), length, and when its
    first frame arrived (epoch seconds)."""

    path: Path
    start: float
    duration: float
    captured_at: float
    cut_at: float  # time.monotonic() when it was announced


class CutterFailed(Exception):
    """The cutter cannot take more media (it exited, or its stdin closed)."""


class ChunkCutter:
    """One running cutter. :meth:`write` feeds it (waiting while ffmpeg is behind),
    :meth:`chunks` yields what it closes until it exits, :meth:`finish` ends the input so
    that it closes its last chunk."""

    def __init__(self, argv: list[str], out_dir: Path) -> None:
        self._argv = argv
        self._out_dir = out_dir
        self._clock = CaptureClock(CLOCK_WINDOW_S)
        self._proc: asyncio.subprocess.Process | None = None
        self._log_task: asyncio.Task[None] | None = None
        self.tail: deque[str] = deque(maxlen=8)  # ffmpeg's last error lines

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "AV_LOG_FORCE_NOCOLOR": "1"},
            preexec_fn=die_with_parent)
        self._log_task = asyncio.create_task(self._read_log(), name="cutter-log")

    @property
    def _running(self) -> asyncio.subprocess.Process:
        assert self._proc is not None, "start() first"
        return self._proc

    async def _read_log(self) -> None:
        stderr = self._running.stderr
        assert stderr is not None
        async for raw in stderr:
            line = raw.decode(errors="replace").strip()
            out_time = parse_out_time(line)
            if out_time is not None:
                self._clock.observe(time.time(), out_time)
            elif line and "=" not in line:
                self.tail.append(line)

    async def write(self, data: bytes) -> None:
        stdin = self._running.stdin
        assert stdin is not None
        if stdin.is_closing() or self._running.returncode is not None:
            raise CutterFailed("the chunk cutter stopped")
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise CutterFailed("the chunk cutter stopped") from exc

    async def chunks(self) -> AsyncIterator[CutChunk]:
        """Closed chunks as ffmpeg announces them, until it exits."""
        stdout = self._running.stdout
        assert stdout is not None
        async for raw in stdout:
            closed = parse_segment_line(raw.decode(errors="replace"))
            if closed is None:
                continue
            path = self._out_dir / Path(closed.name).name
            if closed.duration <= 0:  # an empty tail
                path.unlink(missing_ok=True)
                continue
            captured = self._clock.captured_at(closed.start,
                                               fallback=time.time() - closed.duration)
            yield CutChunk(path, closed.start, closed.duration, captured, time.monotonic())

    async def finish(self, grace_s: float) -> int:
        """End the input (ffmpeg then closes its last chunk and exits); killed if it is
        still running after ``grace_s``. Returns its exit code."""
        proc = self._running
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            async with asyncio.timeout(grace_s):
                code = await proc.wait()
        except TimeoutError:
            self.kill()
            code = await proc.wait()
        if self._log_task is not None:
            with contextlib.suppress(Exception):
                await self._log_task
        return code

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
