"""Helpers for tests and benchmarks: generated clips and a real server on a free port."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from chunkcast.media.process import die_with_parent, ffmpeg_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_clip(
    path: Path, *, seconds: float = 3.0, size: str = "320x240", fps: int = 30,
    audio: bool = True, rotation: int | None = None, channels: int = 2,
    preset: str = "ultrafast",
) -> Path:
    """Generate a test-pattern clip (H.264, AAC when ``audio``) with the bundled ffmpeg."""
    argv = [ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
        argv += ["-f", "lavfi", "-i",
                 f"sine=frequency=440:sample_rate=48000:duration={seconds},"
                 f"aformat=channel_layouts={layout}"]
    argv += ["-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p"]
    if audio:
        argv += ["-c:a", "aac", "-b:a", "128k"]
    argv += [str(path)]
    subprocess.run(argv, check=True)
    if rotation is not None:
        rotated = path.with_suffix(".rot.mp4")
        subprocess.run([ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
                        "-display_rotation", str(rotation), "-i", str(path), "-c", "copy",
                        str(rotated)], check=True)
        rotated.replace(path)
    return path


@dataclass(frozen=True)
class Server:
    url: str
    data_dir: Path
    token: str
    pid: int
    log: Path


@contextlib.contextmanager
def run_chunkcast(args: list[str], data_dir: Path, *, env: dict[str, str] | None = None,
                  health_url: str | None = None, timeout_s: float = 30.0,
                  log_name: str = "server.log") -> Iterator[subprocess.Popen[bytes]]:
    """``python -m chunkcast ARGS`` in a child process (its own session, output in
    ``data_dir/log_name``); waits for ``health_url`` when given; stopped by PID on exit
    (SIGTERM, then SIGKILL after 15 s)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / log_name
    child_env = {**os.environ, "CHUNKCAST_DATA_DIR": str(data_dir), **(env or {})}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "chunkcast", *args], env=child_env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=die_with_parent)  # even if we are killed
    try:
        deadline = time.monotonic() + timeout_s
        while health_url is not None:
            if proc.poll() is not None:
                raise RuntimeError(f"chunkcast {args[0]} exited early:\n"
                                   f"{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"chunkcast {args[0]} did not start:\n"
                                   f"{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def run_server(data_dir: Path, *, env: dict[str, str] | None = None,
               timeout_s: float = 30.0) -> Iterator[Server]:
    """``chunkcast up`` in a child process on a free port; stopped (by PID) on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"CHUNKCAST_PUBLIC_URL": url, **(env or {})}
    with run_chunkcast(["up", "--port", str(port)], data_dir, env=env,
                       health_url=f"{url}/healthz", timeout_s=timeout_s) as proc:
        token = (data_dir / "admin-token").read_text().strip()
        yield Server(url, data_dir, token, proc.pid, data_dir / "server.log")


def origin_served(server: Server) -> dict[str, float]:
    """What an API process has served as an origin so far, by kind (its
    ``chunkcast_origin_requests_total`` metric): playlist, segment, init."""
    text = httpx.get(f"{server.url}/metrics").text
    return {kind: float(value) for kind, value in
            re.findall(r'^chunkcast_origin_requests_total\{kind="(\w+)"\} (\S+)$', text,
                       re.MULTILINE)}
