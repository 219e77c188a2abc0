"""One broadcast: ffmpeg, the closed chunks it announces, their uploads, the end.

Closed chunks wait in a bounded backlog for one of a few upload threads. Each chunk is
retried through outages (no answer, 5xx, 429) from the moment it was cut until it is
``retry_s`` old, then skipped: the server turns a missing seq into an explicit gap.
"""

import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue
from types import FrameType
from typing import IO

from rich.console import Console

from chunkcast.broadcaster.backlog import Backlog, Delivery
from chunkcast.broadcaster.status import Status
from chunkcast.broadcaster.timing import (
    CaptureClock,
    ClosedChunk,
    parse_out_time,
    parse_segment_line,
)
from chunkcast.broadcaster.uploads import ChunkUploader, UploadFailed, chunk_report
from chunkcast.media.argv import TIMELINE_OFFSET_S
from chunkcast.media.process import start_ffmpeg, stop_process

UPLOADERS = 4  # upload threads: chunks delivered at once
# Closed chunks waiting for an upload thread (files on disk): about 2 min of 1 s chunks, some
# 70 MB at the top contribution bitrate. Beyond it the oldest waiting chunk is skipped.
MAX_WAITING_CHUNKS = 120
RETRY_S = 30.0  # default --retry-seconds: how long a chunk is worth retrying once cut
STOP_GRACE_S = 5.0  # ffmpeg gets this long to close its last chunk before it is killed
DRAIN_S = 20.0  # on stop, closed chunks get this long to finish uploading


class Stop(Exception):
    """SIGTERM: end the broadcast as cleanly as Ctrl-C does."""


def raise_stop(signum: int, frame: FrameType | None) -> None:
    """The broadcaster's SIGTERM handler."""
    raise Stop


def _is_progress(line: str) -> bool:
    key, sep, _ = line.partition("=")
    return bool(sep) and key.replace("_", "").isalnum() and key.islower()


class Broadcast:
    """One run of ffmpeg and the uploads of what it produces."""

    def __init__(self, uploader: ChunkUploader, status: Status, out_dir: Path,
                 clock: CaptureClock, console: Console, *, first_seq: int = 0,
                 timeline_start: float = TIMELINE_OFFSET_S, retry_s: float = RETRY_S) -> None:
        self._uploader = uploader
        self._status = status
        self._out_dir = out_dir
        self._clock = clock
        self._console = console
        self._chunks: Queue[ClosedChunk | None] = Queue()
        self._tail: deque[str] = deque(maxlen=8)
        self._fatal: str | None = None
        self._next_seq = first_seq
        self._timeline_start = timeline_start  # media time of stream time 0 in the files
        self._retry_s = retry_s
        self._backlog = Backlog(MAX_WAITING_CHUNKS)
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

    def _upload_chunks(self) -> None:
        """One upload thread: the oldest waiting chunk, until the backlog is closed."""
        while (delivery := self._backlog.take()) is not None:
            self._deliver(delivery)

    def _deliver(self, chunk: Delivery) -> None:
        started = time.monotonic()
        try:
            if self._fatal:
                return  # the refusal is reported once, when the broadcast stops
            if started >= chunk.deadline:
                self._status.chunk_skipped(chunk.seq, "no upload thread was free within "
                                           f"{self._retry_s:g} s")
                return
            self._uploader.upload(chunk.seq, chunk.path, chunk.report, deadline=chunk.deadline)
        except UploadFailed as exc:
            if exc.fatal:
                self._fatal = exc.message
                self._uploader.aborted.set()  # the other uploads stop retrying
            else:
                self._status.chunk_skipped(chunk.seq, exc.message)
        except Exception as exc:  # an upload thread must report, never die silently
            self._status.chunk_skipped(chunk.seq, f"{type(exc).__name__}: {exc}")
        else:
            self._status.chunk_sent(chunk.seq, round((time.monotonic() - started) * 1000),
                                    chunk.report)
        finally:
            chunk.path.unlink(missing_ok=True)  # the disk stays flat however long the broadcast

    def _submit(self, chunk: ClosedChunk) -> None:
        path = self._out_dir / Path(chunk.name).name
        if chunk.duration <= 0:  # an empty tail written on stop
            path.unlink(missing_ok=True)
            return
        captured = self._clock.captured_at(chunk.start, fallback=time.time() - chunk.duration)
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        report = chunk_report(seq, chunk, captured, self._timeline_start)
        pushed_out = self._backlog.put(Delivery(seq, path, report,
                                                time.monotonic() + self._retry_s))
        if pushed_out is not None:
            pushed_out.path.unlink(missing_ok=True)
            self._status.chunk_skipped(pushed_out.seq, f"more than {MAX_WAITING_CHUNKS} "
                                       "chunks were waiting to be uploaded")

    def _drain(self, uploaders: list[threading.Thread], deadline: float) -> None:
        """Let the upload threads deliver what is closed, until ``deadline``."""
        self._backlog.close()
        for thread in uploaders:
            thread.join(max(0.0, deadline - time.monotonic()))

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
        uploaders = [threading.Thread(target=self._upload_chunks, name=f"chunk-upload-{i}",
                                      daemon=True) for i in range(UPLOADERS)]
        for thread in uploaders:
            thread.start()
        stopped = False
        try:
            try:
                for chunk in self._chunks_until_eof(float("inf")):
                    self._submit(chunk)
            except (KeyboardInterrupt, Stop):
                stopped = True
                self._console.print("stopping: uploading the chunks already closed…")
            self._stop_ffmpeg(proc)
            if not self._fatal:
                for chunk in self._chunks_until_eof(time.monotonic() + STOP_GRACE_S):
                    self._submit(chunk)
            self._drain(uploaders, time.monotonic() + DRAIN_S)
        except (KeyboardInterrupt, Stop):
            self._console.print("[yellow]stopping at once: pending chunks are dropped[/]")
        finally:
            self._backlog.close()
            self._uploader.aborted.set()  # an attempt in flight is the last one
            dropped = self._backlog.clear()
            for waiting in dropped:
                waiting.path.unlink(missing_ok=True)
            for thread in uploaders:
                thread.join()
            self._stop_ffmpeg(proc)
        if dropped:
            self._console.print(f"[yellow]{len(dropped)} chunks were not uploaded in time[/]")
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
