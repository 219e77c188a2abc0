"""Glass-to-glass latency of HLS players against the platform's own web player.

`chunkcast broadcast --loop` of a generated 640x360 clip (ladder 240p and 360p, as in the
browser tests; `--size 1280x720` for four rungs) sends 1 s chunks to an embedded
`chunkcast up`; in one Chromium (Debian's, driven by Playwright), one after
the other, three players watch it: the watch page's WebSocket + MSE player (the baseline),
hls.js 1.7 in low-latency mode, and hls.js without it (both on a page of another origin, as
an embedding site would run them). Then the same behind the nginx edge that
`chunkcast deploy nginx` writes (playlists and segments from the edge).

Glass-to-glass = the wall clock minus the capture time of the frame on screen, sampled every
200 ms while playing once a player has settled: for hls.js `Date.now() - hls.playingDate`
(segments' EXT-X-PROGRAM-DATE-TIME is their capture time), for the web player its own
`delay` (the same difference, from the segments' `captured_at`). Each run gives a p50 and a
p95 per player; the figures are the medians over the runs, and the ratios are against the
web player of the same run and path.

    python bench/hls_latency.py [--runs 3] [--seconds 20] [--settle 6] [--size 640x360]

Needs Chromium, nginx and hls.js (`npm ci` in tests/browser/hlsjs). Writes
bench/results/hls_latency-*.json.
"""

import argparse
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.hlsjs_support import open_hlsjs, player_site, summary  # noqa: E402
from tests.browser.player_support import open_watch  # noqa: E402
from tests.integration.live_support import create_stream, wait_for_renditions  # noqa: E402
from tests.servers.nginx import deploy, run_nginx  # noqa: E402

from chunkcast.testing import Server, free_port, run_server  # noqa: E402
from common import median, source_clip, write_result  # noqa: E402

PLAYERS = ("web", "hlsjs_ll", "hlsjs")
TARGETS = {"hlsjs_ll": {"p50": 2.5, "p95": 3.0}, "hlsjs": {"p50": 4.5}}

# The web player's delay behind capture, sampled like the hls.js page samples its own.
WEB_SAMPLER = """
window.__glass = [];
setInterval(() => {
  const p = window.chunkcastPlayer, v = document.getElementById("video");
  if (p && v && !v.paused && p.delay !== null && p.delay !== undefined) {
    window.__glass.push([performance.now(), p.delay]);
  }
}, 200);
"""


@contextlib.contextmanager
def broadcast(server: Server, source: Path, log: Path) -> Iterator[str]:
    """A live stream of ``source`` looped, in 1 s chunks; yields its id once it plays."""
    stream = create_stream(server)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chunkcast", "broadcast", str(source), "--loop",
             "--stream", stream["id"], f"--key={stream['stream_key']}", "--chunk-seconds",
             "1", "--server", server.url],
            stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
    try:
        wait_for_renditions(server, stream["id"], timeout_s=60)
        yield str(stream["id"])
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def watch_web(page: Page, server: Server, base: str, stream_id: str,
              args: argparse.Namespace) -> dict[str, Any]:
    page.add_init_script(WEB_SAMPLER)
    # open_watch only reads the server's URL: the watch page of the edge when ``base`` is it.
    open_watch(page, Server(base, server.data_dir, server.token, server.pid, server.log),
               stream_id)
    started: float = page.evaluate("() => performance.now()")
    waited: int = page.evaluate("() => window.__watch.waiting")  # before the picture moved
    page.wait_for_timeout((args.settle + args.seconds) * 1000)
    samples: list[list[float]] = page.evaluate("() => window.__glass")
    glass = [d for at, d in samples if at >= started + args.settle * 1000]
    stalls: int = page.evaluate("() => window.__watch.waiting") - waited
    return {"glass": glass, "stalls": stalls, "errors": []}


def watch_hlsjs(page: Page, site: str, base: str, stream_id: str, low_latency: bool,
                args: argparse.Namespace) -> dict[str, Any]:
    playback = open_hlsjs(page, site, f"{base}/play/{stream_id}/master.m3u8",
                          low_latency=low_latency)
    started: float = playback.snapshot()["now"]
    page.wait_for_timeout((args.settle + args.seconds) * 1000)
    stalls = playback.stalls(started)
    requests = playback.media_playlist_requests()
    # Where the time goes: hls.js's own latency is how far it plays behind the live edge it
    # estimates (the target is PART-HOLD-BACK or HOLD-BACK); glass-to-glass less that is how
    # far that edge is behind capture (cutting, uploading and transcoding a chunk).
    settled = [x for x in playback.samples(started + args.settle * 1000)
               if x["glass"] is not None]
    behind_edge = median([x["latency"] for x in settled]) if settled else math.nan
    return {"glass": playback.glass_to_glass(started + args.settle * 1000),
            "behind_edge": behind_edge,
            "edge_behind_capture": (median([x["glass"] for x in settled]) - behind_edge
                                    if settled else math.nan),
            "target": median([x["target"] or 0.0 for x in settled]) if settled else math.nan,
            "stalls": len(stalls["waiting"]), "errors": [e["details"] for e in stalls["errors"]],
            "blocking_reloads": sum("_HLS_msn=" in url for url in requests),
            "playlist_requests": len(requests)}


def measure(browser: Browser, site: str, server: Server, base: str, stream_id: str,
            args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every player ``args.runs`` times, one at a time, the order rotating each run."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in PLAYERS}
    for run in range(args.runs):
        for name in PLAYERS[run % 3:] + PLAYERS[:run % 3]:
            context = browser.new_context(viewport={"width": 1280, "height": 800},
                                          bypass_csp=True)
            page = context.new_page()
            try:
                if name == "web":
                    seen = watch_web(page, server, base, stream_id, args)
                else:
                    seen = watch_hlsjs(page, site, base, stream_id, name == "hlsjs_ll", args)
            finally:
                context.close()
            figures = summary(seen["glass"])
            runs[name].append({**{k: v for k, v in seen.items() if k != "glass"}, **figures,
                               "samples": len(seen["glass"])})
            errors = Counter(seen["errors"])
            where = (f"  (edge {seen['edge_behind_capture']:.2f} s behind capture, player "
                     f"{seen['behind_edge']:.2f} s behind it, target {seen['target']:.2f} s)"
                     if "behind_edge" in seen else "")
            print(f"  run {run + 1} {name:9} p50 {figures['p50']:.2f} s  p95 "
                  f"{figures['p95']:.2f} s  stalls {seen['stalls']}{where}"
                  + "".join(f"  {detail} x{n}" for detail, n in errors.items()), flush=True)
    return runs


def figures(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    out = {name: {"p50": median([r["p50"] for r in rs]), "p95": median([r["p95"] for r in rs]),
                  "stalls": sum(r["stalls"] for r in rs)} for name, rs in runs.items()}
    for name in PLAYERS:
        out[name]["p50_ratio"] = out[name]["p50"] / out["web"]["p50"]
        out[name]["p95_ratio"] = out[name]["p95"] / out["web"]["p95"]
    return out


def phase(browser: Browser, site: str, root: Path, via_edge: bool, args: argparse.Namespace
          ) -> dict[str, Any]:
    """One server (behind a fresh edge when ``via_edge``), one broadcast, every player."""
    env = {"CHUNKCAST_X264_PRESET": args.preset}
    with contextlib.ExitStack() as stack:
        if via_edge:
            edge_port = free_port()
            env["CHUNKCAST_CDN_URL"] = f"http://127.0.0.1:{edge_port}"
            server = stack.enter_context(run_server(root / "api", env=env))
            deploy(root / "nginx", [server.url.removeprefix("http://")], server.url,
                   edge_port, free_port(), {"CHUNKCAST_DATA_DIR": str(server.data_dir)})
            base = stack.enter_context(run_nginx(root / "nginx", "edge", edge_port)).url
        else:
            server = stack.enter_context(run_server(root / "api", env=env))
            base = server.url
        source = source_clip(30, args.size)
        stream_id = stack.enter_context(broadcast(server, source, root / "broadcast.log"))
        runs = measure(browser, site, server, base, stream_id, args)
    return {"runs": runs, "figures": figures(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="of each player on each path")
    parser.add_argument("--seconds", type=float, default=20, help="sampled per run")
    parser.add_argument("--settle", type=float, default=6,
                        help="seconds of playback before sampling (hls.js eases towards its "
                             "target latency)")
    parser.add_argument("--preset", default="veryfast", help="CHUNKCAST_X264_PRESET")
    parser.add_argument("--size", default="640x360", help="of the looped source clip")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="chunkcast-hls-") as tmp, sync_playwright() as pw, \
            player_site() as site:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            for path in ("direct", "edge"):
                print(f"{path}: 1 s chunks, {args.runs} runs of each player", flush=True)
                results[path] = phase(browser, site, Path(tmp) / path, path == "edge", args)
        finally:
            browser.close()
    print(f"\nglass-to-glass, median over {args.runs} runs (ratio to the web player):")
    for path, result in results.items():
        for name, f in result["figures"].items():
            target = TARGETS.get(name, {})
            wanted = ", ".join(f"{k} <= {v}" for k, v in target.items())
            print(f"  {path:6} {name:9} p50 {f['p50']:.2f} s ({f['p50_ratio']:.2f}x)  "
                  f"p95 {f['p95']:.2f} s ({f['p95_ratio']:.2f}x)  stalls {f['stalls']:.0f}"
                  + (f"  target {wanted}" if wanted else "  baseline"))
    written = write_result("hls_latency", {"targets": TARGETS, "parameters": vars(args),
                                           "results": results})
    print(f"results: {written}")


if __name__ == "__main__":
    main()
