"""One broadcast: ffmpeg, the closed chunks it announces, their uploads, the end.
"""

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from queue import Empty, Queue
from types import FrameType
from typing import IO, Any

from rich.console import Console
from rich.live import Live

from chunkcast.broadcaster.status import Status
from chunkcast.broadcaster.timing import (
    CaptureClock,
    ClosedChunk,
    parse_out_time,
    parse_segment_line,
)
from chunkcast.broadcaster.uploads import ChunkUploader, UploadFailed, chunk_report
from chunkcast.domain.errors import ChunkcastError
from chunkcast.media.argv import TIMELINE_OFFSET_S
from chunkcast.media.broadcast_argv import (
    TESTSRC_FPS,
    BroadcastOptions,
    SourceKind,
    broadcast_argv,
    source_kind,
)
from chunkcast.media.process import ffmpeg_path, start_ffmpeg, stop_process

DEFAULT_SERVER = "http://127.0.0.1:8000"
CLOCK_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
UPLOADERS = 4
STOP_GRACE_S = 5.0  # ffmpeg gets this long to close its last chunk before it is killed
DRAIN_S = 20.0  # on stop, closed chunks get this long to finish uploading



class _Stop(Exception):
    """SIGTERM: end the broadcast as cleanly as Ctrl-C does."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _is_progress(line: str) -> bool:
    key, sep, _ = line.partition("=")
    return bool(sep) and key.replace("_", "").isalnum() and key.islower()


class Broadcast:
    """One run of ffmpeg and the uploads of what it produces."""

    def __init__(self, uploader: ChunkUploader, status: Status, out_dir: Path,
                 clock: CaptureClock, console: Console) -> None:
        self._uploader = uploader
        self._status = status
        self._out_dir = out_dir
        self._clock = clock
        self._console = console
        self._chunks: Queue[ClosedChunk | None] = Queue()
        self._tail: deque[str] = deque(maxlen=8)
        self._fatal: str | None = None
        self._next_seq = 0
        self._pending: list[Future[None]] = []
        self._eof = False  # ffmpeg closed its segment list: no chunk will follow

    def _read_list(self, stdout: IO[str]) -> None:
        for line in stdout:
            chunk = parse_segment_line(line)
            if chunk is not None:
                self._chunks.put(chunk)
        self._chunks.put(None)

    def _read_log(self, stderr: IO[str]) -> None:
        for raw in stderr:
            line = raw.strip()
            out_time = parse_out_time(line)
            if out_time is not None:
                self._clock.observe(time.time(), out_time)
            elif line and not _is_progress(line):
                self._tail.append(line)

    def _deliver(self, seq: int, path: Path, report: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            self._uploader.upload(seq, path, report)
        except UploadFailed as exc:
            if exc.fatal:
                self._fatal = exc.message  # reported once, when the broadcast stops
            else:
                self._status.chunk_skipped(seq, exc.message)
        except Exception as exc:  # an upload thread must report, never die silently
            self._status.chunk_skipped(seq, f"{type(exc).__name__}: {exc}")
        else:
            self._status.chunk_sent(seq, round((time.monotonic() - started) * 1000), report)
        finally:
            path.unlink(missing_ok=True)  # the disk stays flat however long the broadcast

    def _submit(self, pool: ThreadPoolExecutor, chunk: ClosedChunk) -> None:
        path = self._out_dir / Path(chunk.name).name
        if chunk.duration <= 0:  # an empty tail written on stop
            path.unlink(missing_ok=True)
            return
        captured = self._clock.captured_at(chunk.start, fallback=time.time() - chunk.duration)
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        self._pending.append(pool.submit(self._deliver, seq, path,
                                         chunk_report(seq, chunk, captured, TIMELINE_OFFSET_S)))
        self._pending = [f for f in self._pending if not f.done()]

    @staticmethod
    def _stop_ffmpeg(proc: subprocess.Popen[str]) -> None:
        """SIGTERM makes ffmpeg close (and announce) its last chunk; kill if it hangs."""
        stop_process(proc, STOP_GRACE_S)

    def _chunks_until_eof(self, deadline: float) -> Iterator[ClosedChunk]:
        while not self._eof and (left := deadline - time.monotonic()) > 0:
            try:
                chunk = self._chunks.get(timeout=min(left, 0.25))
            except Empty:
                if self._fatal:
                    return
                continue
            if chunk is None:
                self._eof = True
                return
            yield chunk

    def run(self, argv: list[str]) -> int:
        """Broadcast until the source ends, Ctrl-C, SIGTERM or a fatal refusal; then upload
        what is closed (bounded), and tell the server the stream ended."""
        proc = start_ffmpeg(argv)  # Ctrl-C reaches us only; if we are killed, so is ffmpeg
        assert proc.stdout is not None and proc.stderr is not None
        readers = [threading.Thread(target=self._read_list, args=(proc.stdout,), daemon=True),
                   threading.Thread(target=self._read_log, args=(proc.stderr,), daemon=True)]
        for reader in readers:
            reader.start()
        pool = ThreadPoolExecutor(UPLOADERS, thread_name_prefix="chunk-upload")
        stopped = False
        try:
            try:
                for chunk in self._chunks_until_eof(float("inf")):
                    self._submit(pool, chunk)
            except (KeyboardInterrupt, _Stop):
                stopped = True
                self._console.print("stopping: uploading the chunks already closed…")
            self._stop_ffmpeg(proc)
            if not self._fatal:
                for chunk in self._chunks_until_eof(time.monotonic() + STOP_GRACE_S):
                    self._submit(pool, chunk)
            wait(self._pending, timeout=DRAIN_S)
        except (KeyboardInterrupt, _Stop):
            self._console.print("[yellow]stopping at once: pending chunks are dropped[/]")
        finally:
            self._uploader.aborted.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self._stop_ffmpeg(proc)
        return self._finish(proc, stopped=stopped)

    def _finish(self, proc: subprocess.Popen[str], *, stopped: bool) -> int:
        failed = not stopped and not self._fatal and proc.returncode not in (0, None)
        if failed:
            detail = " / ".join(self._tail) or f"exit code {proc.returncode}"
            self._console.print(f"[red]ffmpeg failed: {detail}[/]", highlight=False)
        if self._fatal:
            self._console.print(f"[red]the server refused the broadcast: {self._fatal}[/]",
                                highlight=False)
            return 1
        if self._status.sent:
            self._uploader.aborted.clear()  # the "end" call gets its retries back
            try:
                self._uploader.end()
            except UploadFailed as exc:
                self._console.print(f"[red]could not end the stream: {exc.message}[/]")
                return 1
            self._console.print(f"stream ended after {self._status.sent} chunks "
                                f"({self._status.skipped} skipped)")
        elif self._status.skipped:
            self._console.print("[red]no chunk could be delivered[/]")
            return 1
        return 1 if failed else 0


# --- entry points -------------------------------------------------------------------------

def broadcast_options(source: str, *, chunk_seconds: int, loop: bool,
                      input_options: tuple[str, ...] = (), font: Path | None = None
                      ) -> BroadcastOptions:
    """Options for ``source``: a file is probed (frame rate for the GOP, height for the
    bitrate; not a video: MediaError); live inputs are assumed 30 fps of unknown size."""
    kind = source_kind(source)
    fps: float = TESTSRC_FPS
    height = None
    if kind is SourceKind.FILE:
        from chunkcast.media.probe import probe

        if "://" not in source and not Path(source).is_file():
            raise ChunkcastError(f"no such file: {source}")
        # The broadcaster's own input on its own machine: any format or protocol it names.
        info = asyncio.run(probe(source, trusted=True))
        fps, height = info.fps or TESTSRC_FPS, info.height
    if kind is SourceKind.TESTSRC and font is None and CLOCK_FONT.is_file():
        font = CLOCK_FONT
    return BroadcastOptions(chunk_seconds=chunk_seconds, loop=loop and kind is SourceKind.FILE,
                            fps=fps, height=height, font=font, input_options=input_options)


def run_broadcast(server: str, stream_id: str, key: str, source: str, *,
                  chunk_seconds: int = 1, loop: bool = False,
                  input_options: tuple[str, ...] = (), font: Path | None = None,
                  ffmpeg: str | None = None, console: Console | None = None) -> int:
    """Broadcast ``source`` (a file, ``testsrc`` or any ffmpeg input) to stream
    ``stream_id`` until it ends or is stopped (Ctrl-C, SIGTERM); returns the exit code:
    0 done, 1 ffmpeg failed or the server refused, 2 unusable source."""
    console = console or Console(stderr=True, soft_wrap=True)
    if chunk_seconds not in (1, 2):
        console.print("[red]--chunk-seconds must be 1 or 2[/]")
        return 2
    try:
        opts = broadcast_options(source, chunk_seconds=chunk_seconds, loop=loop,
                                 input_options=input_options, font=font)
    except ChunkcastError as exc:
        console.print(f"[red]cannot broadcast {source}: {exc.message}[/]", highlight=False)
        return 2
    if source_kind(source) is SourceKind.TESTSRC and opts.font is None:
        console.print(f"no font at {CLOCK_FONT}: the test pattern shows no clock")
    terminal = console.is_terminal
    status = Status(console, live=terminal)
    uploader = ChunkUploader(server, stream_id, key, on_retry=status.retried)
    clock = CaptureClock(None if source_kind(source) is not SourceKind.LIVE
                         else 3.0 * chunk_seconds)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_stop)
    out_dir = Path(tempfile.mkdtemp(prefix="chunkcast-broadcast-"))
    try:
        argv = broadcast_argv(ffmpeg or ffmpeg_path(os.environ.get("CHUNKCAST_FFMPEG", "")),
                              source, out_dir, opts)
        console.print(f"broadcasting {source} to {server} (stream {stream_id}, "
                      f"{chunk_seconds} s chunks){' in a loop' if opts.loop else ''}; "
                      "Ctrl-C ends the stream", highlight=False)
        broadcast = Broadcast(uploader, status, out_dir, clock, console)
        live = Live(status, console=console, refresh_per_second=4, transient=False)
        with live if terminal else contextlib.nullcontext():
            return broadcast.run(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        uploader.close()
        shutil.rmtree(out_dir, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``chunkcast broadcast`` arguments."""
    parser.add_argument("source", help="a video file, 'testsrc' (test pattern with a clock), "
                        "or any ffmpeg input: rtmp://…, srt://…, /dev/video0 …")
    parser.add_argument("--stream", required=True, help="stream id")
    parser.add_argument("--key", default=os.environ.get("CHUNKCAST_STREAM_KEY"),
                        help="stream key (default: CHUNKCAST_STREAM_KEY)")
    parser.add_argument("--chunk-seconds", type=int, choices=(1, 2), default=1,
                        help="chunk length (default 1)")
    parser.add_argument("--loop", action="store_true", help="loop a file source forever")
    parser.add_argument("--input-options", default="",
                        help="extra ffmpeg input options, e.g. \"-f v4l2 -framerate 30\"")
    parser.add_argument("--server", help="API URL (default: CHUNKCAST_PUBLIC_URL)")


def cmd_broadcast(args: argparse.Namespace) -> int:
    """``chunkcast broadcast``."""
    console = Console(stderr=True, soft_wrap=True)
    if not args.key:
        console.print("[red]--key is required (or set CHUNKCAST_STREAM_KEY)[/]")
        return 2
    server = (getattr(args, "server", None) or os.environ.get("CHUNKCAST_PUBLIC_URL")
              or DEFAULT_SERVER)
    try:
        return run_broadcast(server, args.stream, args.key, args.source,
                             chunk_seconds=args.chunk_seconds, loop=args.loop,
                             input_options=tuple(shlex.split(args.input_options or "")),
                             console=console)
    except KeyboardInterrupt:  # a third Ctrl-C, while the stream was being ended
        return 130


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="chunkcast broadcast")
    add_arguments(_parser)
    sys.exit(cmd_broadcast(_parser.parse_args()))
