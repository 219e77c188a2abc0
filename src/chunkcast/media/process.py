"""Running ffmpeg as a supervised child process."""

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections import deque
from pathlib import Path

from chunkcast.domain.errors import MediaError


class FfmpegFailed(MediaError):
    """ffmpeg exited non-zero; the message is the tail of what it printed."""


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


async def run_ffmpeg(argv: list[str], *, timeout_s: float | None = None,
                     cwd: Path | None = None) -> None:
    """Run ``argv``; raise FfmpegFailed with its last error lines when it fails. The child
    is killed if the caller is cancelled or the timeout passes."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, cwd=cwd, env={**os.environ, "AV_LOG_FORCE_NOCOLOR": "1"},
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
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if code != 0:
        detail = " / ".join(tail) or f"exit code {code}"
        raise FfmpegFailed(f"ffmpeg failed: {detail}")
