"""Helpers for ingest tests: a server with RTMP and SRT ports, and real publishers (Debian's
ffmpeg, built with librtmp-free RTMP and libsrt, as OBS-like clients)."""

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from chunkcast.media.process import die_with_parent
from chunkcast.testing import Server, free_port, run_server

# The publisher: Debian's ffmpeg (the imageio wheel's has neither libsrt nor a listener
# for our purposes); tests that need it are skipped without it.
PUBLISHER = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


@dataclass(frozen=True)
class IngestServer:
    server: Server
    rtmp_port: int
    srt_port: int

    def rtmp_url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{key}"

    def srt_url(self, key: str, *, prefix: str = "") -> str:
        return f"srt://127.0.0.1:{self.srt_port}?streamid={prefix}{key}&latency=120000"


@contextlib.contextmanager
def run_ingest_server(data_dir: Path, env: dict[str, str] | None = None
                      ) -> Iterator[IngestServer]:
    """``chunkcast up`` with the ingest on free ports."""
    rtmp, srt = free_port(), free_port()
    with run_server(data_dir, env={"CHUNKCAST_RTMP_PORT": str(rtmp),
                                   "CHUNKCAST_SRT_PORT": str(srt), **(env or {})}) as server:
        wait_listening(rtmp)
        yield IngestServer(server, rtmp, srt)


def wait_listening(port: int, timeout_s: float = 20.0) -> None:
    """Until something accepts TCP connections on ``port``."""
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


def publisher_argv(url: str, *, seconds: float, gop_s: float = 1.0, size: str = "426x240",
                   container: str = "flv", codec: str = "libx264") -> list[str]:
    """A test pattern with a 1 kHz tone, encoded in real time like OBS does by default
    (x264 with B-frames, a fixed keyframe interval, AAC 48 kHz stereo)."""
    gop = str(round(30 * gop_s))
    return [PUBLISHER, "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
            "-t", str(seconds), "-map", "0:v", "-map", "1:a",
            "-c:v", codec, "-preset", "veryfast", "-g", gop, "-keyint_min", gop,
            "-sc_threshold", "0", "-bf", "2", "-b:v", "800k",
            "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
            "-f", container, url]


def publish(url: str, log: Path, **kwargs: float | str) -> "subprocess.Popen[bytes]":
    """A publisher in the background; its errors go to ``log``."""
    container = "mpegts" if url.startswith("srt:") else "flv"
    with log.open("ab") as out:
        return subprocess.Popen(publisher_argv(url, container=container, **kwargs),  # type: ignore[arg-type]
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                preexec_fn=die_with_parent)


def stop(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def video(server: Server, stream_id: str) -> dict[str, object]:
    body: dict[str, object] = httpx.get(f"{server.url}/api/v1/videos/{stream_id}").json()
    return body


def wait_status(server: Server, stream_id: str, status: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if video(server, stream_id)["status"] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"stream {stream_id} never became {status}: {video(server, stream_id)}")


def stored_chunks(server: Server, stream_id: str) -> list[str]:
    folder = server.data_dir / "objects" / "chunks" / stream_id
    return sorted(p.name for p in folder.glob("*.ts")) if folder.exists() else []
