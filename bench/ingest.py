"""Glass-to-glass delay from an RTMP publisher, by stage, against the broadcaster path.

A publisher like OBS (Debian's ffmpeg: 1280x720 30 fps test pattern with the wall clock
burnt in, x264 with a 1 s keyframe interval, AAC) goes live on an embedded `chunkcast up`
over RTMP; a viewer on the top rung of the default ladder follows the WebSocket and downloads
every segment. Glass-to-glass for a segment = downloaded minus when the publisher's encoder
emitted its first frame (the publisher's `-progress` reports: wall clock minus output time,
the smallest seen; `-tune zerolatency`, so that is within a frame of capture). Then the
broadcaster path (bench/latency.py's measurement) runs in the same invocation.

Stages (medians): ingest (frame out of the publisher's encoder -> chunk reported: the chunk's
own length, the cut at the next keyframe, storing it), queue wait, transcode, publish,
notify, fetch. CPU per publisher: the cutter ffmpeg and the server process, in % of a core.

    python bench/ingest.py [--segments 40] [--no-broadcaster]
"""

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from chunkcast.media.broadcast_argv import clock_filter
from chunkcast.testing import free_port, run_server
from common import write_result
from latency import WARMUP, chunk_timings, follow, measure, pct, ts, wait_for_ladder

TARGETS = {"p50": 2.0, "p95": 2.5, "added_over_broadcaster": 0.3}
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
TICKS = os.sysconf("SC_CLK_TCK")


def publisher_argv(url: str, seconds: float) -> list[str]:
    ffmpeg = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
    video = "testsrc2=size=1280x720:rate=30"
    if FONT.exists():
        video += f",{clock_filter(FONT)}"
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", video,
            "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
            "-t", str(seconds), "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30",
            "-keyint_min", "30", "-sc_threshold", "0", "-b:v", "4500k", "-maxrate", "4500k",
            "-bufsize", "4500k", "-c:a", "aac", "-b:a", "160k", "-ar", "48000", "-ac", "2",
            "-progress", "pipe:1", "-stats_period", "0.1", "-f", "flv", url]


class EncoderClock:
    """The publisher's ``-progress`` reports: when its stream time 0 left the encoder."""

    def __init__(self, proc: "subprocess.Popen[str]") -> None:
        self.anchor: float | None = None
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: "subprocess.Popen[str]") -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            key, _, value = line.strip().partition("=")
            if key == "out_time_us" and value.lstrip("-").isdigit():
                offset = time.time() - int(value) / 1e6
                self.anchor = offset if self.anchor is None else min(self.anchor, offset)


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def cutter_pids(server_pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if f"PPid:\t{server_pid}\n" in status and b"pipe:0" in cmdline:
                found.append(int(entry.name))
    return found


def measure_ingest(segments: int, env: dict[str, str]) -> dict[str, Any]:
    rtmp = free_port()
    env = {**env, "CHUNKCAST_RTMP_PORT": str(rtmp), "CHUNKCAST_SRT_PORT": "0"}
    with tempfile.TemporaryDirectory() as tmp, run_server(Path(tmp) / "data", env=env) as server:
        stream = httpx.post(f"{server.url}/api/v1/streams", json={"title": "ingest"},
                            headers={"Authorization": f"Bearer {server.token}"}).json()
        seconds = (segments + WARMUP) * 2 + 30
        publisher = subprocess.Popen(
            publisher_argv(f"rtmp://127.0.0.1:{rtmp}/live/{stream['stream_key']}", seconds),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        clock = EncoderClock(publisher)
        try:
            ladder = wait_for_ladder(server, stream["id"])
            cutters = cutter_pids(server.pid)
            cpu0 = {pid: cpu_seconds(pid) for pid in [server.pid, *cutters]}
            wall0 = time.monotonic()
            seen = asyncio.run(follow(server, stream["id"], ladder[-1], segments + WARMUP,
                                      timeout_s=segments * 3 + 60))
            wall = time.monotonic() - wall0
            cpu = {pid: (cpu_seconds(pid) - start) / wall * 100 for pid, start in cpu0.items()}
        finally:
            publisher.kill()
            publisher.wait()
        timings = chunk_timings(server.data_dir / "chunkcast.log", stream["id"])
    assert clock.anchor is not None, "the publisher reported no progress"
    rows = []
    for m in seen[WARMUP:]:
        t = timings.get(m["seq"])
        if not t or not t.get("reported_at"):
            continue
        glass = clock.anchor + m["pts_start"] - 1.0  # files start at the timeline offset
        reported, started = ts(t["reported_at"]), ts(t["started_at"])
        rows.append({
            "seq": m["seq"], "total": m["downloaded"] - glass,
            "ingest": reported - glass, "captured_at_error": ts(m["captured_at"]) - glass,
            "queue_wait": started - reported, "transcode": t["transcode_s"],
            "publish": ts(m["ready_at"]) - started - t["transcode_s"],
            "notify": m["received"] - ts(m["ready_at"]), "fetch": m["downloaded"] - m["received"],
        })
    totals = [r["total"] for r in rows]
    stages = {k: statistics.median(r[k] for r in rows)
              for k in ("ingest", "captured_at_error", "queue_wait", "transcode", "publish",
                        "notify", "fetch")}
    return {"rendition": ladder[-1], "ladder": ladder, "segments": len(rows),
            "p50": statistics.median(totals), "p95": pct(totals, 0.95), "max": max(totals),
            "stages_median": stages,
            "cpu_percent": {"server_process": round(cpu.pop(server.pid), 1),
                            "cutter_ffmpeg": round(sum(cpu.values()), 1)},
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=40)
    parser.add_argument("--preset", default="veryfast", help="CHUNKCAST_X264_PRESET")
    parser.add_argument("--no-broadcaster", action="store_true",
                        help="skip the broadcaster path's run")
    args = parser.parse_args()
    env = {"CHUNKCAST_X264_PRESET": args.preset}
    ingest = measure_ingest(args.segments, env)
    stages = ", ".join(f"{k} {v * 1000:.0f}" for k, v in ingest["stages_median"].items())
    print(f"RTMP ingest, {ingest['segments']} segments of {ingest['rendition']}: "
          f"p50 {ingest['p50']:.2f} s, p95 {ingest['p95']:.2f} s, max {ingest['max']:.2f} s; "
          f"targets {TARGETS}", flush=True)
    print(f"  stage medians (ms): {stages}", flush=True)
    print(f"  CPU (% of a core): {ingest['cpu_percent']}", flush=True)
    result: dict[str, Any] = {"settings": env, "targets": TARGETS, "ingest": ingest}
    if not args.no_broadcaster:
        broadcast = measure(1, args.segments, {**env, "CHUNKCAST_RTMP_PORT": "0",
                                               "CHUNKCAST_SRT_PORT": "0"})
        added = ingest["p50"] - broadcast["p50"]
        print(f"broadcaster, 1 s chunks: p50 {broadcast['p50']:.2f} s, p95 "
              f"{broadcast['p95']:.2f} s; ingest adds {added * 1000:.0f} ms at p50", flush=True)
        result["broadcaster"] = broadcast
        result["added_p50"] = added
    print(f"wrote {write_result('ingest', result)}")


if __name__ == "__main__":
    main()
