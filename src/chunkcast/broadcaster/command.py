"""``chunkcast broadcast``: options, where the stream resumes, and one :class:`Broadcast`.

A broadcast continues its stream. It asks the server where the stream stands (``resume``)
and numbers its chunks from ``next_seq``, with its first picture at ``next_pts`` on the
media timeline (the segment muxer's output offset), so a broadcaster restarted within the
idle timeout overwrites no chunk and viewers' players see one continuous timeline.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.live import Live

from chunkcast.broadcaster.session import RETRY_S, Broadcast, raise_stop
from chunkcast.broadcaster.status import Status
from chunkcast.broadcaster.timing import CaptureClock
from chunkcast.broadcaster.uploads import ChunkUploader, UploadFailed
from chunkcast.domain.errors import ChunkcastError
from chunkcast.media.broadcast_argv import (
    TESTSRC_FPS,
    BroadcastOptions,
    SourceKind,
    broadcast_argv,
    resumed_timeline_start,
    source_kind,
)
from chunkcast.media.process import ffmpeg_path

DEFAULT_SERVER = "http://127.0.0.1:8000"
CLOCK_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def broadcast_options(source: str, *, chunk_seconds: int, loop: bool,
                      input_options: tuple[str, ...] = (), font: Path | None = None
                      ) -> BroadcastOptions:
    """Options for ``source``: a file is probed (frame rate for the GOP, height for the
    bitrate; not a video: MediaError); live inputs are assumed 30 fps of unknown size."""
    kind = source_kind(source)
    fps: float = TESTSRC_FPS
    height = None
    has_audio = True
    if kind is SourceKind.FILE:
        from chunkcast.media.probe import probe

        if "://" not in source and not Path(source).is_file():
            raise ChunkcastError(f"no such file: {source}")
        # The broadcaster's own input on its own machine: any format or protocol it names.
        info = asyncio.run(probe(source, trusted=True))
        fps, height, has_audio = info.fps or TESTSRC_FPS, info.height, info.has_audio
    if kind is SourceKind.TESTSRC and font is None and CLOCK_FONT.is_file():
        font = CLOCK_FONT
    return BroadcastOptions(chunk_seconds=chunk_seconds, loop=loop and kind is SourceKind.FILE,
                            fps=fps, height=height, font=font, input_options=input_options,
                            has_audio=has_audio)


def run_broadcast(server: str, stream_id: str, key: str, source: str, *,
                  chunk_seconds: int = 1, loop: bool = False,
                  input_options: tuple[str, ...] = (), font: Path | None = None,
                  retry_seconds: float = RETRY_S, ffmpeg: str | None = None,
                  console: Console | None = None) -> int:
    """Broadcast ``source`` (a file, ``testsrc`` or any ffmpeg input) to stream
    ``stream_id``, continuing where it stands, until the source ends or the broadcast is
    stopped (Ctrl-C, SIGTERM); returns the exit code: 0 done, 1 ffmpeg failed or the server
    refused or could not be reached, 2 unusable source or options."""
    console = console or Console(stderr=True, soft_wrap=True)
    if chunk_seconds not in (1, 2):
        console.print("[red]--chunk-seconds must be 1 or 2[/]")
        return 2
    if not retry_seconds > 0:
        console.print("[red]--retry-seconds must be more than 0[/]")
        return 2
    try:
        opts = broadcast_options(source, chunk_seconds=chunk_seconds, loop=loop,
                                 input_options=input_options, font=font)
    except ChunkcastError as exc:
        console.print(f"[red]cannot broadcast {source}: {exc.message}[/]", highlight=False)
        return 2
    if source_kind(source) is SourceKind.TESTSRC and opts.font is None:
        console.print(f"no font at {CLOCK_FONT}: the test pattern shows no clock")
    status = Status(console, live=console.is_terminal)
    uploader = ChunkUploader(server, stream_id, key, on_retry=status.retried)
    try:
        try:
            resume = uploader.resume(deadline=time.monotonic() + retry_seconds)
        except UploadFailed as exc:
            why = "the server refused the broadcast" if exc.fatal else "no answer from the server"
            console.print(f"[red]{why}: {exc.message}[/]", highlight=False)
            return 1
        if resume.next_seq:
            console.print(f"resuming stream {stream_id} at chunk {resume.next_seq} (media time "
                          f"{resume.next_pts:.3f} s)", highlight=False)
        opts = dataclasses.replace(opts, timeline_start_s=resumed_timeline_start(
            resume.next_pts, has_audio=opts.has_audio))
        clock = CaptureClock(None if source_kind(source) is not SourceKind.LIVE
                             else 3.0 * chunk_seconds)
        with _workspace() as out_dir:
            broadcast = Broadcast(uploader, status, out_dir, clock, console,
                                  first_seq=resume.next_seq,
                                  timeline_start=opts.timeline_start_s, retry_s=retry_seconds)
            argv = broadcast_argv(ffmpeg or ffmpeg_path(os.environ.get("CHUNKCAST_FFMPEG", "")),
                                  source, out_dir, opts)
            console.print(f"broadcasting {source} to {server} (stream {stream_id}, "
                          f"{chunk_seconds} s chunks){' in a loop' if opts.loop else ''}; "
                          "Ctrl-C ends the stream", highlight=False)
            live = Live(status, console=console, refresh_per_second=4, transient=False)
            with live if console.is_terminal else contextlib.nullcontext():
                return broadcast.run(argv)
    finally:
        uploader.close()


@contextlib.contextmanager
def _workspace() -> Iterator[Path]:
    """A temporary folder for the chunks; while it exists SIGTERM ends the broadcast as
    cleanly as Ctrl-C does (in the main thread: only there can signals be handled)."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, raise_stop)
    out_dir = Path(tempfile.mkdtemp(prefix="chunkcast-broadcast-"))
    try:
        yield out_dir
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
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
    parser.add_argument("--retry-seconds", type=float, default=RETRY_S,
                        help="how long a chunk is retried through an outage of the server or "
                        f"storage, from when it was cut, before it is skipped (default "
                        f"{RETRY_S:g})")
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
                             retry_seconds=args.retry_seconds, console=console)
    except KeyboardInterrupt:  # a Ctrl-C while asking where the stream stands, or a third
        return 130


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="chunkcast broadcast")
    add_arguments(_parser)
    sys.exit(cmd_broadcast(_parser.parse_args()))
