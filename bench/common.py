"""Shared bits of the benchmarks: medians, result files, generated sources."""

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from chunkcast.client import Client
from chunkcast.testing import Server, make_clip

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MEDIA = HERE / ".media"


def source_clip(seconds: int, size: str, fps: int = 30) -> Path:
    """A generated test-pattern source with audio, cached under bench/.media/."""
    MEDIA.mkdir(exist_ok=True)
    path = MEDIA / f"source-{size}-{fps}fps-{seconds}s.mp4"
    if not path.exists():
        make_clip(path, seconds=seconds, size=size, fps=fps, preset="veryfast")
    return path


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` as JSON to ``bench/results/{name}-{timestamp}.json``."""
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    body = {"benchmark": name, "at": stamp, "machine": platform.node(),
            "python": platform.python_version(), **result}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def upload_and_wait(server: Server, source: Path) -> tuple[float, dict[str, Any]]:
    """Upload ``source`` through the API; wall seconds from "upload complete" to the end of
    processing, and the video. Exits when the platform fails it."""
    with Client(server.url, server.token) as client:
        created = client.create_video("bench", source.stat().st_size)
        parts = client.put_file(created["upload"], source)
        started = time.perf_counter()
        video = client.complete(created["id"], parts)
        while video["status"] not in ("ready", "failed"):
            time.sleep(0.05)
            video = client.video(created["id"])
        elapsed = time.perf_counter() - started
    if video["status"] != "ready":
        raise SystemExit(f"the platform failed the video: {video['error']}")
    return elapsed, video
