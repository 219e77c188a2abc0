"""hls.js in a real Chromium, as a player on another site would run it: a page served from an
origin of its own (a small HTTP server on 127.0.0.1, not the API) loads ``hls.min.js`` from
``tests/browser/hlsjs/node_modules`` (``npm ci`` there, done by ``make test``) and plays a
playlist of the API or the edge cross-origin. The page records, every 200 ms, what a viewer
would notice (the playhead, how far behind capture it is, the buffer), and every ``waiting``
event and hls.js error; the playlist requests are logged from the browser's side."""

import contextlib
import statistics
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from playwright.sync_api import Page, Request

# What the live tests ask of hls.js. Bounds for a loaded 2-core machine: bench/hls_latency.py
# holds the targets (low-latency p50 2.5 s and p95 3.0 s, plain 4.5 s).
PLAY_S = 30  # seconds of live playback watched for stalls
SETTLE_S = 5  # before glass-to-glass is sampled: hls.js settles at its live position
LOW_LATENCY_MEDIAN_S = 3.5
PLAIN_MEDIAN_S = 5.0

HLSJS = Path(__file__).parent / "hlsjs" / "node_modules" / "hls.js" / "dist" / "hls.min.js"

# The player: hls.js with its defaults, but for lowLatencyMode (on unless ?ll=0). What it
# records is read back by SNAPSHOT.
PLAYER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hls.js</title>
<link rel="icon" href="data:,"></head>
<body><video id="video" muted playsinline width="640" height="360"></video>
<script src="/hls.min.js"></script>
<script>
const params = new URLSearchParams(location.search);
const video = document.getElementById("video");
const record = { samples: [], waiting: [], seeking: [], errors: [], playing: null,
                 ended: false, fatal: null };
window.record = record;
const hls = new Hls({ lowLatencyMode: params.get("ll") !== "0" });
window.hls = hls;
const since = () => performance.now();
// A stall: [page time, playhead, page time it played on again (null: still stalled)].
video.addEventListener("waiting", () => record.waiting.push([since(), video.currentTime, null]));
video.addEventListener("timeupdate", () => {
  const last = record.waiting[record.waiting.length - 1];
  if (last && last[2] === null && video.currentTime > last[1]) last[2] = since();
});
video.addEventListener("seeking", () => record.seeking.push([since(), video.currentTime]));
video.addEventListener("playing", () => { record.playing ??= [since(), video.currentTime]; });
video.addEventListener("ended", () => { record.ended = true; });
hls.on(Hls.Events.ERROR, (_, data) => {
  record.errors.push({ at: since(), details: data.details, fatal: data.fatal,
                       time: video.currentTime });
  if (data.fatal) record.fatal = data.details;
});
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
hls.loadSource(params.get("src"));
hls.attachMedia(video);
setInterval(() => {
  const date = hls.playingDate;
  const ranges = [];
  for (let i = 0; i < video.buffered.length; i++) {
    ranges.push([video.buffered.start(i), video.buffered.end(i)]);
  }
  record.samples.push({
    at: since(), time: video.currentTime, paused: video.paused,
    glass: date && !video.paused ? (Date.now() - date.getTime()) / 1000 : null,
    latency: hls.latency, target: hls.targetLatency, buffered: ranges,
  });
}, 200);
</script></body></html>
"""

SNAPSHOT = """() => ({
  record: window.record, now: performance.now(), time: video.currentTime,
  lowLatency: hls.lowLatencyMode, target: hls.targetLatency,
})"""


class _Files(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            body, kind = PLAYER_PAGE.encode(), "text/html; charset=utf-8"
        elif path == "/hls.min.js":
            body, kind = HLSJS.read_bytes(), "text/javascript"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def player_site() -> Iterator[str]:
    """The player page's own origin (``http://127.0.0.1:PORT``) until the block ends."""
    if not HLSJS.exists():
        raise RuntimeError(f"{HLSJS} is missing: run `npm ci` in {HLSJS.parents[3]}")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, name="hlsjs-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@dataclass
class Playback:
    """What one hls.js page did: its records and the playlist requests it sent."""

    page: Page
    playlists: list[str] = field(default_factory=list)  # URLs, in the order asked for

    def snapshot(self) -> dict[str, Any]:
        result: dict[str, Any] = self.page.evaluate(SNAPSHOT)
        return result

    def samples(self, since_ms: float = 0.0) -> list[dict[str, Any]]:
        """The page's samples taken at or after ``since_ms`` (page clock)."""
        return [s for s in self.snapshot()["record"]["samples"] if s["at"] >= since_ms]

    def glass_to_glass(self, since_ms: float = 0.0) -> list[float]:
        """Wall clock minus the capture time of the frame on screen, while playing."""
        return [s["glass"] for s in self.samples(since_ms) if s["glass"] is not None]

    def stalls(self, since_ms: float = 0.0) -> dict[str, list[Any]]:
        """``waiting`` events and hls.js errors after ``since_ms``."""
        record = self.snapshot()["record"]
        return {"waiting": [w for w in record["waiting"] if w[0] >= since_ms],
                "errors": [e for e in record["errors"] if e["at"] >= since_ms]}

    def media_playlist_requests(self) -> list[str]:
        """Media playlist URLs, in the order asked for."""
        return [url for url in self.playlists if "/index.m3u8" in url]


def open_hlsjs(page: Page, site: str, playlist: str, *, low_latency: bool = True,
               timeout_s: float = 60) -> Playback:
    """Open the hls.js page on ``playlist`` and wait until the picture is moving."""
    playback = Playback(page)

    def keep(request: Request) -> None:
        if ".m3u8" in request.url:
            playback.playlists.append(request.url)

    page.on("request", keep)
    query = urlencode({"src": playlist, "ll": "1" if low_latency else "0"})
    response = page.goto(f"{site}/?{query}")
    assert response is not None and response.status == 200
    page.wait_for_function("() => window.record && (window.record.fatal || window.record"
                           ".playing && video.currentTime > window.record.playing[1] + 0.2)",
                           timeout=timeout_s * 1000)
    fatal = playback.snapshot()["record"]["fatal"]
    assert fatal is None, f"hls.js gave up: {fatal} {playback.stalls()['errors']}"
    return playback


def watch_for(playback: Playback, seconds: float) -> float:
    """Let the page play for ``seconds`` (page events are handled meanwhile); returns the
    page clock at the start."""
    started: float = playback.snapshot()["now"]
    playback.page.wait_for_timeout(seconds * 1000)
    return started


def plays_live(page: Page, site: str, master: str, *, low_latency: bool, seconds: float,
               settle_s: float) -> dict[str, Any]:
    """Play the live ``master`` for ``seconds`` once the picture moves: glass-to-glass
    after the first ``settle_s`` (hls.js settles at its target latency meanwhile),
    ``waiting`` events and hls.js errors after the start, how far the playhead went, and
    the media playlist requests."""
    playback = open_hlsjs(page, site, master, low_latency=low_latency)
    started = watch_for(playback, seconds)
    snapshot = playback.snapshot()
    glass = playback.glass_to_glass(started + settle_s * 1000)
    stalls = playback.stalls(started)
    return {"glass": summary(glass), "waiting": stalls["waiting"], "errors": stalls["errors"],
            "low_latency": snapshot["lowLatency"], "target": snapshot["target"],
            "played": snapshot["time"] - playback.samples(started)[0]["time"],
            "requests": playback.media_playlist_requests()}


# hls.js errors a viewer sees as a jump or a freeze.
STALL_ERRORS = frozenset({"bufferSeekOverHole", "bufferStalledError", "bufferNudgeOnStall"})


def stalls_seen(seen: dict[str, Any]) -> list[Any]:
    """``waiting`` events and the hls.js errors that are stalls, from :func:`plays_live`."""
    waiting: list[Any] = seen["waiting"]
    return waiting + [e for e in seen["errors"] if e["details"] in STALL_ERRORS]


def brief(seen: dict[str, Any]) -> dict[str, Any]:
    """:func:`plays_live`'s figures without the request list, for failure messages."""
    return {k: v for k, v in seen.items() if k != "requests"}


def polled_after_blocking(requests: list[str]) -> list[str]:
    """Media playlist requests without ``_HLS_msn`` once the player has started blocking
    reloads (the first load of a playlist has none): polls a blocking player never needs."""
    first = next((i for i, url in enumerate(requests) if "_HLS_msn=" in url), len(requests))
    return [url for url in requests[first:] if "_HLS_msn=" not in url]


def assert_blocking_reloads(seen: dict[str, Any], *, at_least: int) -> None:
    """After the first load of a playlist, every reload of :func:`plays_live` (``at_least``
    of them) was held by the server until the next segment or part existed, and answered
    before hls.js gave up on it (after max(3 part targets, 0.8 target durations)): hls.js
    retries a timed-out reload as a plain poll."""
    requests = seen["requests"]
    assert sum("_HLS_msn=" in url for url in requests) >= at_least, requests[:10]
    assert seen["errors"] == [], brief(seen)
    assert polled_after_blocking(requests) == [], requests


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "p95": percentile(values, 0.95),
            "min": min(values), "max": max(values)}
