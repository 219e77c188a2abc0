"""Running ffmpeg as a supervised child process: the one supervisor for every ffmpeg the
platform starts. A one-shot transcode runs with :func:`run_ffmpeg` (time limit, error tail
logged, killed when its caller is cancelled); a long-running one (the broadcaster's encoder)
is started with :func:`start_ffmpeg` and stopped with :func:`stop_process`. Either way the
child dies with its parent."""

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path

from chunkcast.domain.errors import MediaError

log = logging.getLogger(__name__)


class FfmpegFailed(MediaError):
    """ffmpeg exited non-zero or ran out of time. The message is for people and names no
    path or URL; what ffmpeg printed (which does) goes to the log."""


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for children: on Linux the kernel kills the child with SIGKILL when its
    parent dies, so a broadcaster or worker killed with -9 leaves no ffmpeg behind."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def ffmpeg_path(configured: str = "") -> str:
    """``CHUNKCAST_FFMPEG`` when set, else the binary of the imageio-ffmpeg wheel."""
    if configured:
        return configured
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _env() -> dict[str, str]:
    return {**os.environ, "AV_LOG_FORCE_NOCOLOR": "1"}


def start_ffmpeg(argv: list[str]) -> "subprocess.Popen[str]":
    """A long-running ffmpeg with text pipes for its stdout and stderr, in its own process
    group (Ctrl-C reaches the caller only, which stops it in order)."""
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, errors="replace", env=_env(), process_group=0, preexec_fn=die_with_parent)


def stop_process(proc: "subprocess.Popen[str]", grace_s: float) -> None:
    """SIGTERM (ffmpeg then closes its outputs), and SIGKILL if it is still running after
    ``grace_s``; returns once it is gone."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def run_ffmpeg(argv: list[str], *, timeout_s: float | None = None,
                     cwd: Path | None = None) -> None:
    """Run ``argv``; raise FfmpegFailed when it fails (its last error lines are logged). The
    child is killed if the caller is cancelled or the timeout passes."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, cwd=cwd, env=_env(),
        preexec_fn=die_with_parent,
    )
    tail: deque[str] = deque(maxlen=8)
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(timeout_s):
            async for line in proc.stderr:
                text = line.decode(errors="replace").strip()
                if text:
                    tail.append(text)
            code = await proc.wait()
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(exc, TimeoutError):
            log.warning("ffmpeg killed after %.0f s: %s", timeout_s, " / ".join(tail))
            raise FfmpegFailed(f"ffmpeg failed: transcoding took longer than its limit of "
                               f"{timeout_s:.0f} s") from exc
        raise
    if code != 0:
        log.warning("ffmpeg exited with code %d: %s", code, " / ".join(tail))
        raise FfmpegFailed(f"ffmpeg failed: the media could not be decoded or encoded "
                           f"(exit code {code})")
