"""LL-HLS edge benchmark: viewers polling a live stream's playlist with blocking requests
(as hls.js in low-latency mode does), through the nginx edge that `chunkcast deploy nginx`
writes, against the same viewers asking the API directly (the baseline, same run, same
stream). For each new part: how long after it was first served each viewer had it
(p50/p95), how many origin requests it cost, and the errors.

Each viewer loads the playlist, then loops: ask for the part after the last one listed
(``_HLS_msn``/``_HLS_part``), read the answer, repeat. A part is first served when the first
client (a viewer, or a probe asking the API directly in both runs) has it.

    python bench/ll_edge.py [--viewers 1,100,1000] [--seconds 15]

Needs nginx (apt-get install -y nginx). Writes bench/results/ll_edge-*.json.
"""

import argparse
import asyncio
import contextlib
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.servers.nginx import deploy, run_nginx  # noqa: E402

from chunkcast.testing import Server, free_port, origin_served, run_server  # noqa: E402
from common import source_clip, write_result  # noqa: E402

WARMUP_S = 3.0  # viewers join over the first second, then settle
Part = tuple[int, int]  # (Media Sequence Number, part index)


def parts_and_next(playlist: str) -> tuple[list[Part], str]:
    """The parts a media playlist lists (each segment without parts as its part 0), and the
    query of the blocking request for the part after the last one."""
    msn = int(re.findall(r"^#EXT-X-MEDIA-SEQUENCE:(\d+)$", playlist, re.MULTILINE)[0])
    listed: list[Part] = []
    index, has_parts = 0, "#EXT-X-PART-INF" in playlist
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-SKIP:"):
            msn += int(line.split("SKIPPED-SEGMENTS=")[1].split(",")[0])
        elif line.startswith("#EXT-X-PART:"):
            listed.append((msn, index))
            index += 1
        elif line and not line.startswith("#"):  # a segment's URI ends its entry
            if index == 0:
                listed.append((msn, 0))
            msn, index = msn + 1, 0
    query = f"_HLS_msn={msn}&_HLS_part={index}" if has_parts else f"_HLS_msn={msn}"
    return listed, query


@dataclass
class Seen:
    """When clients first had each part, when they were answered, and what went wrong."""

    at: dict[Part, list[float]] = field(default_factory=lambda: defaultdict(list))
    first: dict[Part, float] = field(default_factory=dict)
    answers: list[float] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)

    def had(self, parts: list[Part], newest: Part | None, now: float) -> Part | None:
        """Note the parts newer than ``newest`` (a client's last), had ``now``."""
        fresh = [p for p in parts if newest is None or p > newest]
        for part in fresh:
            self.first[part] = min(self.first.get(part, now), now)
            self.at[part].append(now)
        return max(fresh, default=newest)

    def errors_within(self, start: float, end: float) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for at, kind in self.errors:
            if start <= at < end:
                counts[kind] += 1
        return dict(counts)


async def poll(client: httpx.AsyncClient, url: str, seen: Seen, stop: asyncio.Event) -> None:
    """One player: load the playlist, then ask for the next part, until ``stop``. After an
    error it waits as asked (Retry-After), or a second, and asks again."""
    query: str = ""
    newest: Part | None = None
    while not stop.is_set():
        try:
            answer = await client.get(f"{url}?{query}" if query else url)
        except httpx.HTTPError as exc:
            seen.errors.append((time.monotonic(), type(exc).__name__))
            await asyncio.sleep(1.0)
            continue
        now = time.monotonic()
        if answer.status_code != 200:
            seen.errors.append((now, str(answer.status_code)))
            await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
            continue
        seen.answers.append(now)
        parts, query = parts_and_next(answer.text)
        newest = seen.had(parts, newest, now)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(api: Server, url: str, direct: str, viewers: int, seconds: float
              ) -> dict[str, Any]:
    """``viewers`` players of ``url``, and a probe asking ``direct`` (the API) the same way,
    for WARMUP_S (they join over its first second) then ``seconds`` measured."""
    seen, probe, stop = Seen(), Seen(), asyncio.Event()
    # A client (one connection) per player, as players have: one pool shared by hundreds of
    # connections costs httpx ~10 ms of CPU a request, a client of its own ~1 ms.
    tls = ssl.create_default_context()  # made once: never used over plain HTTP

    async def player(delay: float, target: str, into: Seen) -> None:
        await asyncio.sleep(delay)
        async with httpx.AsyncClient(timeout=45, verify=tls) as client:
            await poll(client, target, into, stop)

    clients = [asyncio.create_task(player(i / viewers, url, seen)) for i in range(viewers)]
    clients.append(asyncio.create_task(player(0.0, direct, probe)))
    await asyncio.sleep(WARMUP_S)
    before, started = origin_served(api).get("playlist", 0.0), time.monotonic()
    await asyncio.sleep(seconds)
    ended = time.monotonic()
    origin = origin_served(api).get("playlist", 0.0) - before
    stop.set()
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    first = {p: min(probe.first.get(p, float("inf")), seen.first.get(p, float("inf")))
             for p in {*probe.first, *seen.first}}
    parts = [p for p, at in first.items() if started <= at < ended]
    delays = [at - first[p] for p in parts for at in seen.at.get(p, [])]
    # The probe's answers came from the origin too, in both runs: not the viewers' cost.
    origin -= sum(started <= at < ended for at in probe.answers)
    return {"viewers": viewers, "parts": len(parts),
            "segments": len({msn for msn, _ in parts}),
            "deliveries": len(delays), "expected_deliveries": len(parts) * viewers,
            "delay_p50_s": statistics.median(delays) if delays else float("nan"),
            "delay_p95_s": percentile(delays, 0.95) if delays else float("nan"),
            "delay_max_s": max(delays, default=float("nan")),
            "viewer_answers": sum(started <= at < ended for at in seen.answers),
            "origin_requests": origin, "origin_requests_per_part": origin / max(len(parts), 1),
            "errors": seen.errors_within(started, ended), "seconds": ended - started}


def start_stream(api: Server, log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """A live stream of a looped 320x240 clip in 1 s chunks; its media playlist path once
    it has a segment."""
    headers = {"Authorization": f"Bearer {api.token}"}
    stream = httpx.post(f"{api.url}/api/v1/streams", json={"title": "ll edge bench"},
                        headers=headers).json()
    broadcast = subprocess.Popen(
        [sys.executable, "-m", "chunkcast", "broadcast", str(source_clip(20, "320x240")),
         "--loop", "--stream", stream["id"], f"--key={stream['stream_key']}",
         "--server", api.url, "--chunk-seconds", "1"],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        video = httpx.get(f"{api.url}/api/v1/videos/{stream['id']}").json()
        if video["renditions"]:
            path = f"/play/{stream['id']}/{video['renditions'][0]['name']}/index.m3u8"
            if httpx.get(api.url + path).status_code == 200:
                return path, broadcast
        if time.monotonic() > deadline or broadcast.poll() is not None:
            broadcast.kill()
            raise SystemExit(f"no live segment after 60 s; see {log}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", default="1,100,1000", help="comma-separated counts")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured, per run")
    args = parser.parse_args()
    counts = [int(n) for n in args.viewers.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="chunkcast-ll-edge-") as tmp:
        root = Path(tmp)
        edge_port = free_port()
        env = {"CHUNKCAST_CDN_URL": f"http://127.0.0.1:{edge_port}",
               "CHUNKCAST_X264_PRESET": "ultrafast"}
        with run_server(root / "api", env=env) as api:
            deploy(root / "nginx", [api.url.removeprefix("http://")], api.url, edge_port,
                   free_port(), {"CHUNKCAST_DATA_DIR": str(api.data_dir)})
            with run_nginx(root / "nginx", "edge", edge_port) as edge:
                path, broadcast = start_stream(api, root / "broadcast.log")
                try:
                    for viewers in counts:
                        row = {}
                        for name, base in (("edge", edge.url), ("direct", api.url)):
                            print(f"{viewers} viewers, {name}...", flush=True)
                            row[name] = asyncio.run(run(api, base + path, api.url + path,
                                                        viewers, args.seconds))
                        results.append(row)
                finally:
                    broadcast.send_signal(signal.SIGINT)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        broadcast.wait(20)
                    if broadcast.poll() is None:
                        broadcast.kill()
    print(f"\nnew parts of a live stream (1 s segments), {args.seconds:.0f} s per run; delay "
          "after the part was first served; edge vs direct to the API (ratio):")
    for row in results:
        edge_run, direct = row["edge"], row["direct"]
        print(f"  {edge_run['viewers']:>5} viewers: delay p50 {edge_run['delay_p50_s']:.3f} s "
              f"vs {direct['delay_p50_s']:.3f} s "
              f"({edge_run['delay_p50_s'] / max(direct['delay_p50_s'], 1e-3):.2f}x), p95 "
              f"{edge_run['delay_p95_s']:.3f} s vs {direct['delay_p95_s']:.3f} s "
              f"({edge_run['delay_p95_s'] / max(direct['delay_p95_s'], 1e-3):.2f}x); origin "
              f"requests per part {edge_run['origin_requests_per_part']:.2f} vs "
              f"{direct['origin_requests_per_part']:.2f} "
              f"({edge_run['origin_requests'] / max(direct['origin_requests'], 1):.3f}x); "
              f"delivered {edge_run['deliveries']}/{edge_run['expected_deliveries']} vs "
              f"{direct['deliveries']}/{direct['expected_deliveries']}; errors "
              f"{edge_run['errors'] or 0} vs {direct['errors'] or 0}")
        if any(r["deliveries"] < 0.95 * r["expected_deliveries"] for r in (edge_run, direct)):
            print("        (viewers fell behind: the pollers or the machine are saturated, so "
                  "these delays are the load generator's, not only the edge's or the API's)")
    out = write_result("ll_edge", {"runs": results, "parameters": vars(args)})
    print(f"results: {out}")


if __name__ == "__main__":
    main()
