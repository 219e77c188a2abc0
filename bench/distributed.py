"""Distributed mode on real engines (Redis + PostgreSQL + SeaweedFS, separate processes).

1. VOD: a 60 s 720p source transcoded with 1 and with 2 worker processes (each taking one
   chunk at a time): wall time from "upload complete" to "ready", and the speed-up.
2. Live: segment ready (published by a worker) -> viewer notified (WebSocket message received
   from an API process through Redis), p50/p99, against the same measurement on the embedded
   platform (in-process bus) in the same run.

    python bench/distributed.py [--vod-seconds 60] [--live-segments 30]
"""

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.servers.postgres import create_database, run_postgres  # noqa: E402
from tests.servers.redis import run_redis  # noqa: E402
from tests.servers.seaweedfs import run_seaweedfs  # noqa: E402

from chunkcast.testing import Server, free_port, make_clip, run_chunkcast, run_server  # noqa: E402
from common import source_clip, upload_and_wait, write_result  # noqa: E402

LIVE_EDGE_REPLAY = 3  # CHUNKCAST_LIVE_START_SEGMENTS


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@contextlib.contextmanager
def engines(root: Path) -> Iterator[dict[str, str]]:
    pg_dir = Path(tempfile.mkdtemp(prefix="chunkcast-pg-"))
    with run_redis(root / "redis") as redis, run_postgres(pg_dir) as pg, \
            run_seaweedfs(root / "s3") as s3:
        env = {**s3.env(), "CHUNKCAST_DATABASE_URL": asyncio.run(create_database(pg)),
               "CHUNKCAST_STORAGE_URL": s3.storage_url("bench"), "CHUNKCAST_BUS_URL": redis.url,
               "CHUNKCAST_SECRET_KEY": secrets.token_urlsafe(32),
               "CHUNKCAST_ADMIN_TOKEN": secrets.token_urlsafe(16),
               "CHUNKCAST_WORKER_CONCURRENCY": "1"}
        subprocess.run([sys.executable, "-m", "chunkcast", "db", "upgrade"], check=True,
                       env={**os.environ, **env, "CHUNKCAST_DATA_DIR": str(root)},
                       capture_output=True)
        yield env


@contextlib.contextmanager
def api(root: Path, env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with run_chunkcast(["api", "--port", str(port)], root / f"api-{port}",
                       env={**env, "CHUNKCAST_PUBLIC_URL": url},
                       health_url=f"{url}/healthz") as proc:
        yield Server(url, root, env["CHUNKCAST_ADMIN_TOKEN"], proc.pid, root / "api.log")


def vod_seconds(server: Server, source: Path) -> float:
    return upload_and_wait(server, source)[0]


async def notify_delays(server: Server, count: int, clip: Path) -> list[float]:
    """Broadcast ``clip`` and measure ready_at -> WebSocket message for ``count`` segments."""
    stream = httpx.post(f"{server.url}/api/v1/streams", json={"title": "notify"},
                        headers={"Authorization": f"Bearer {server.token}"}).json()
    broadcaster = subprocess.Popen(
        [sys.executable, "-m", "chunkcast", "broadcast", str(clip), "--loop", "--stream",
         stream["id"], f"--key={stream['stream_key']}", "--server", server.url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not httpx.get(f"{server.url}/api/v1/videos/{stream['id']}").json()["renditions"]:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # the first segment exists: the rendition can be watched
        url = server.url.replace("http", "ws", 1) + f"/ws/{stream['id']}/240p"
        delays: list[float] = []
        replayed = LIVE_EDGE_REPLAY  # a new viewer first gets the latest segments again
        async with websockets.connect(url, compression=None) as ws:
            async for raw in ws:
                received = time.time()
                message = json.loads(raw)
                if message["type"] == "segment" and replayed:
                    replayed -= 1
                elif message["type"] == "segment" and message.get("ready_at"):
                    delays.append(received - ts(message["ready_at"]))
                    if len(delays) >= count:
                        break
        return delays
    finally:
        broadcaster.send_signal(2)
        broadcaster.wait(timeout=30)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": statistics.median(ordered),
            "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
            "max": ordered[-1], "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vod-seconds", type=int, default=60)
    parser.add_argument("--live-segments", type=int, default=30)
    args = parser.parse_args()
    source = source_clip(args.vod_seconds, "1280x720")
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = make_clip(root / "live.mp4", seconds=10, size="640x360")
        with engines(root) as env, api(root, env) as server:
            walls = {}
            for workers in (1, 2):
                with contextlib.ExitStack() as stack:
                    for i in range(workers):
                        stack.enter_context(run_chunkcast(["worker"], root / f"w{workers}-{i}",
                                                          env=env))
                    time.sleep(2)
                    walls[workers] = vod_seconds(server, source)
                    print(f"VOD {args.vod_seconds} s of 720p, {workers} worker(s): "
                          f"{walls[workers]:.1f} s ({args.vod_seconds / walls[workers]:.2f}x "
                          "realtime)", flush=True)
            result["vod"] = {"seconds": walls, "speed_up": walls[1] / walls[2]}
            print(f"speed-up with 2 workers: {walls[1] / walls[2]:.2f} (2 cores on this "
                  "machine: the bound is the CPU, not the processes)", flush=True)
            with run_chunkcast(["worker"], root / "w-live", env=env):
                distributed = asyncio.run(notify_delays(server, args.live_segments, clip))
        with run_server(root / "embedded") as embedded:
            local = asyncio.run(notify_delays(embedded, args.live_segments, clip))
    d, e = summary(distributed), summary(local)
    result["notify"] = {"distributed_redis": d, "embedded_memory": e}
    print(f"segment ready -> viewer notified, distributed via Redis: p50 "
          f"{d['p50'] * 1000:.1f} ms, p99 {d['p99'] * 1000:.1f} ms; embedded: p50 "
          f"{e['p50'] * 1000:.1f} ms, p99 {e['p99'] * 1000:.1f} ms "
          f"(ratio p50 {d['p50'] / max(e['p50'], 1e-6):.2f})")
    print(f"wrote {write_result('distributed', result)}")


if __name__ == "__main__":
    main()
