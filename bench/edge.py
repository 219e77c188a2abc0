"""Edge benchmark: segment throughput through the nginx edge that `chunkcast deploy nginx`
writes, against nginx serving the same files straight from disk (same run, same load tool);
then origin requests and offload with simulated viewers of a live stream.

    python bench/edge.py [--runs 3] [--seconds 5] [--viewers 1000] [--segments 20]

The capacity ``chunkcast plan`` reads comes from the edge's runs: requests per second per
core = requests served / CPU seconds of the edge's nginx (master and workers, user +
system), and Gbps per core = that x the segment's size (the top rendition's 2 s segment).

Needs nginx and wrk (apt-get install -y nginx wrk). Writes bench/results/edge-*.json.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.servers.nginx import deploy, run_nginx, write_static_conf  # noqa: E402

from capacity import Measured, write_capacity  # noqa: E402
from chunkcast.domain.plan import EDGE_GBPS, EDGE_REQUESTS  # noqa: E402
from chunkcast.testing import Server, free_port, origin_served, run_server  # noqa: E402
from common import median, source_clip, upload_and_wait, write_result  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children (nginx's master and workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            tail = stat.read_text().rsplit(")", 1)[1]
            fields = tail.split()
            if int(stat.parent.name) == pid or int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {"rps": rps, "p99_ms": float(p99[1]) * scale[p99[2]] if p99 else float("nan")}


def throughput(api: Server, edge_url: str, disk_url: str, args: argparse.Namespace,
               edge_pid: int) -> dict[str, Any]:
    """Requests per second for one cached segment, edge versus disk, alternating runs."""
    _, video = upload_and_wait(api, source_clip(12, "1280x720"))
    top = max(video["renditions"], key=lambda r: r["height"])["name"]
    key = f"media/{video['id']}/{top}/00000002.m4s"
    edge, disk = f"{edge_url}/media/{key}", f"{disk_url}/media/{key}"
    body = httpx.get(edge).content  # warms the edge cache
    assert body == httpx.get(disk).content
    runs: dict[str, list[dict[str, float]]] = {"edge": [], "disk": []}
    per_core: list[float] = []
    for run in range(args.runs):
        for name, url in (("edge", edge), ("disk", disk)):
            cpu = tree_cpu_s(edge_pid)
            runs[name].append(wrk(url, args.seconds, args.connections))
            if name == "edge":
                spent = tree_cpu_s(edge_pid) - cpu
                per_core.append(runs[name][-1]["rps"] * args.seconds / max(spent, 1e-3))
            print(f"  run {run + 1}: {name} {runs[name][-1]['rps']:.0f} req/s", flush=True)
    edge_rps = median([r["rps"] for r in runs["edge"]])
    disk_rps = median([r["rps"] for r in runs["disk"]])
    return {"segment_bytes": len(body), "rendition": top, "edge_rps": edge_rps,
            "disk_rps": disk_rps, "ratio": edge_rps / disk_rps,
            "edge_p99_ms": median([r["p99_ms"] for r in runs["edge"]]),
            "disk_p99_ms": median([r["p99_ms"] for r in runs["disk"]]), "runs": runs,
            "edge_requests_per_core_s": median(per_core)}


async def live_viewers(api: Server, edge_url: str, args: argparse.Namespace, log: Path
                       ) -> dict[str, Any]:
    """Viewers of a live stream as the design has them: told of each new segment over the
    WebSocket, each fetches the init segment once and then every segment through the edge
    (one socket in this process stands for all of them: they would all get the same
    message). Then HLS players polling the live playlist every second. Counts what reached
    the origin."""
    headers = {"Authorization": f"Bearer {api.token}"}
    stream = httpx.post(f"{api.url}/api/v1/streams", json={"title": "edge bench"},
                        headers=headers).json()
    broadcast = subprocess.Popen(
        [sys.executable, "-m", "chunkcast", "broadcast", str(source_clip(20, "640x360")),
         "--loop", "--stream", stream["id"], f"--key={stream['stream_key']}",
         "--server", api.url, "--chunk-seconds", "1"],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), start_new_session=True)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    try:
        rendition = ""
        while not rendition:
            await asyncio.sleep(0.2)
            video = httpx.get(f"{api.url}/api/v1/videos/{stream['id']}").json()
            rendition = max(video["renditions"], key=lambda r: r["height"],
                            default={"name": ""})["name"]
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            async def fetch_all(url: str, times: int) -> int:
                answers = await asyncio.gather(*(client.get(url) for _ in range(times)))
                assert all(a.status_code == 200 for a in answers), url
                return len(answers)

            before = origin_served(api)
            requests = segments = 0
            started = time.monotonic()
            url = edge_url.replace("http", "ws", 1) + f"/ws/{stream['id']}/{rendition}"
            async with websockets.connect(url, ping_interval=None) as ws:
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "init":
                        requests += await fetch_all(message["init_url"], args.viewers)
                    elif message["type"] == "segment":
                        requests += await fetch_all(message["url"], args.viewers)
                        segments += 1
                        if segments == args.segments:
                            break
            elapsed = time.monotonic() - started
            mid = origin_served(api)
            playlist = f"{edge_url}/play/{stream['id']}/{rendition}/index.m3u8"
            polls, poll_started = 0, time.monotonic()
            for _ in range(args.polls):
                tick = time.monotonic()
                polls += await fetch_all(playlist, args.viewers)
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
            poll_elapsed = time.monotonic() - poll_started
        after = origin_served(api)
    finally:
        broadcast.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            broadcast.wait(20)
        if broadcast.poll() is None:
            broadcast.kill()
    objects = sum(mid.get(k, 0.0) - before.get(k, 0.0) for k in ("segment", "init"))
    playlists = after.get("playlist", 0.0) - mid.get("playlist", 0.0)
    return {"viewers": args.viewers, "rendition": rendition, "segments": segments,
            "object_requests": requests, "object_seconds": elapsed,
            "origin_object_fetches": objects,
            "origin_fetches_per_segment": (mid.get("segment", 0.0)
                                           - before.get("segment", 0.0)) / segments,
            "object_offload": 1 - objects / requests,
            "playlist_requests": polls, "playlist_seconds": poll_elapsed,
            "origin_playlist_fetches": playlists,
            "origin_playlist_fetches_per_second": playlists / poll_elapsed,
            "offload": 1 - (objects + playlists) / (requests + polls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=20, help="live segments to follow")
    parser.add_argument("--polls", type=int, default=5, help="seconds of playlist polling")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="chunkcast-edge-") as tmp:
        root = Path(tmp)
        edge_port, disk_port = free_port(), free_port()
        env = {"CHUNKCAST_CDN_URL": f"http://127.0.0.1:{edge_port}",
               "CHUNKCAST_X264_PRESET": "ultrafast"}
        with run_server(root / "api", env=env) as api, contextlib.ExitStack() as stack:
            deploy(root / "nginx", [api.url.removeprefix("http://")], api.url, edge_port,
                   free_port(), {"CHUNKCAST_DATA_DIR": str(api.data_dir)})
            write_static_conf(root / "nginx", "disk", disk_port, "/media/",
                              api.data_dir / "objects")
            edge = stack.enter_context(run_nginx(root / "nginx", "edge", edge_port))
            disk = stack.enter_context(run_nginx(root / "nginx", "disk", disk_port))
            print("segment throughput: edge (cached) vs nginx from disk", flush=True)
            served = throughput(api, edge.url, disk.url, args, edge.pid)
            print(f"live: {args.viewers} simulated viewers through the edge", flush=True)
            live = asyncio.run(live_viewers(api, edge.url, args, root / "broadcast.log"))
    print(f"\nsegment throughput ({served['segment_bytes'] // 1000} KB segment, "
          f"{args.connections} connections, median of {args.runs}):")
    print(f"  edge {served['edge_rps']:.0f} req/s, disk {served['disk_rps']:.0f} req/s, "
          f"ratio {served['ratio']:.2f}")
    print(f"live, {live['viewers']} viewers of {live['rendition']}: {live['segments']} "
          f"segments, {live['object_requests']} object requests in "
          f"{live['object_seconds']:.1f} s:")
    print(f"  origin fetches per segment {live['origin_fetches_per_segment']:.2f}, object "
          f"offload {live['object_offload'] * 100:.3f}%")
    print(f"  playlist polling: {live['playlist_requests']} requests, origin fetches/s "
          f"{live['origin_playlist_fetches_per_second']:.2f}; overall offload "
          f"{live['offload'] * 100:.3f}%")
    path = write_result("edge", {"throughput": served, "live": live,
                                 "parameters": vars(args)})
    print(f"results: {path}")
    per_core = served["edge_requests_per_core_s"]
    how = (f"wrk -c{args.connections}, one cached {served['segment_bytes'] // 1000} KB "
           f"{served['rendition']} segment, requests / nginx CPU s, median of {args.runs}; "
           f"{path.name}")
    written = write_capacity("edge", {
        EDGE_REQUESTS: Measured(per_core, "req/s", how),
        EDGE_GBPS: Measured(per_core * served["segment_bytes"] * 8 / 1e9, "Gbps", how)}, path)
    print(f"capacity: {per_core:.0f} req/s per core -> {written}")


if __name__ == "__main__":
    main()
