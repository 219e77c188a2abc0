"""Glass-to-glass latency of a live stream, with a breakdown by stage.

`chunkcast broadcast testsrc` (1280x720 30 fps, so the default 4-rung ladder) sends chunks
of 1 s and of 2 s to an embedded `chunkcast up`; a viewer on the top rung follows the
WebSocket and downloads every segment it is told about. Glass-to-glass for a segment = the
moment the viewer has downloaded it minus the `captured_at` of its first frame.

Stages (medians): chunk close (the chunk's own length: its last frame has to be captured),
upload (close -> reported complete), queue wait (reported -> transcode starts), transcode,
publish (transcode done -> segment event), notify (event -> viewer has the message), fetch
(message -> segment downloaded). Server-side instants come from the server's per-chunk
timing log lines; all clocks are this machine's.

    python bench/latency.py [--segments 60] [--chunk-seconds 1,2]
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).parent))
from chunkcast.testing import Server, run_server
from common import write_result

TARGETS = {1: {"p50": 2.0, "p95": 2.5}, 2: {"p95": 4.5}}
WARMUP = 3  # first segments: encoder and worker start-up, not steady state


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def follow(server: Server, stream_id: str, rendition: str, count: int,
                 timeout_s: float) -> list[dict[str, Any]]:
    """Viewer: every segment message, with receive and download times."""
    url = server.url.replace("http", "ws", 1) + f"/ws/{stream_id}/{rendition}"
    seen: list[dict[str, Any]] = []
    async with httpx.AsyncClient() as http, asyncio.timeout(timeout_s), \
            websockets.connect(url, compression=None) as ws:
        async for raw in ws:
            received = time.time()
            message = json.loads(raw)
            if message["type"] != "segment" or not message.get("ready_at"):
                continue  # the replay of older segments has no ready_at
            response = await http.get(message["url"])
            response.raise_for_status()
            seen.append({**message, "received": received, "downloaded": time.time()})
            if len(seen) >= count:
                return seen
    return seen


def chunk_timings(log: Path, stream_id: str) -> dict[int, dict[str, Any]]:
    out = {}
    for line in log.read_text(errors="replace").splitlines():
        if "chunk timing " in line:
            record = json.loads(line.split("chunk timing ", 1)[1])
            if record["video_id"] == stream_id:
                out[record["seq"]] = record
    return out


def wait_for_ladder(server: Server, stream_id: str) -> list[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        video = httpx.get(f"{server.url}/api/v1/videos/{stream_id}").json()
        if video["renditions"]:
            return [r["name"] for r in video["renditions"]]
        time.sleep(0.2)
    raise SystemExit("no segment after 60 s: is the broadcaster running?")


def measure(chunk_seconds: int, segments: int, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, run_server(Path(tmp) / "data", env=env) as server:
        stream = httpx.post(f"{server.url}/api/v1/streams", json={"title": "latency"},
                            headers={"Authorization": f"Bearer {server.token}"}).json()
        broadcaster = subprocess.Popen(
            [sys.executable, "-m", "chunkcast", "broadcast", "testsrc", "--stream", stream["id"],
             f"--key={stream['stream_key']}", "--chunk-seconds", str(chunk_seconds),
             "--server", server.url],
            stdout=subprocess.DEVNULL, stderr=(Path(tmp) / "broadcast.log").open("wb"),
            start_new_session=True)
        try:
            ladder = wait_for_ladder(server, stream["id"])
            top = ladder[-1]
            seen = asyncio.run(follow(server, stream["id"], top, segments + WARMUP,
                                      timeout_s=segments * chunk_seconds * 3 + 60))
        finally:
            os.killpg(broadcaster.pid, signal.SIGINT)
            try:
                broadcaster.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(broadcaster.pid, signal.SIGKILL)
        timings = chunk_timings(server.data_dir / "chunkcast.log", stream["id"])
    rows = []
    for m in seen[WARMUP:]:
        t = timings.get(m["seq"])
        if not t or not m.get("captured_at") or not t.get("reported_at"):
            continue
        captured, reported = ts(m["captured_at"]), ts(t["reported_at"])
        started = ts(t["started_at"])
        rows.append({
            "seq": m["seq"], "total": m["downloaded"] - captured,
            "chunk_close": m["duration"], "upload": reported - captured - m["duration"],
            "queue_wait": started - reported, "transcode": t["transcode_s"],
            "publish": ts(m["ready_at"]) - started - t["transcode_s"],
            "notify": m["received"] - ts(m["ready_at"]), "fetch": m["downloaded"] - m["received"],
        })
    totals = [r["total"] for r in rows]
    stages = {k: statistics.median(r[k] for r in rows)
              for k in ("chunk_close", "upload", "queue_wait", "transcode", "publish", "notify",
                        "fetch")}
    return {"chunk_seconds": chunk_seconds, "rendition": top, "ladder": ladder,
            "segments": len(rows), "p50": statistics.median(totals), "p95": pct(totals, 0.95),
            "max": max(totals), "stages_median": stages, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=60)
    parser.add_argument("--chunk-seconds", default="1,2")
    parser.add_argument("--preset", default="veryfast", help="CHUNKCAST_X264_PRESET")
    args = parser.parse_args()
    env = {"CHUNKCAST_X264_PRESET": args.preset}
    results = []
    for chunk_seconds in (int(c) for c in args.chunk_seconds.split(",")):
        r = measure(chunk_seconds, args.segments, env)
        results.append({k: v for k, v in r.items() if k != "rows"} | {"rows": r["rows"]})
        stages = ", ".join(f"{k} {v * 1000:.0f}" for k, v in r["stages_median"].items())
        print(f"{chunk_seconds} s chunks, {r['segments']} segments of {r['rendition']}: "
              f"p50 {r['p50']:.2f} s, p95 {r['p95']:.2f} s, max {r['max']:.2f} s "
              f"({r['p50'] / chunk_seconds:.2f}x the chunk length); targets "
              f"{TARGETS.get(chunk_seconds)}", flush=True)
        print(f"  stage medians (ms): {stages}", flush=True)
    path = write_result("latency", {"settings": env, "targets": TARGETS, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
