"""Helpers for the player tests: a running broadcast, the watch page, and what a viewer
would notice on it (is the picture moving, how far behind live, which quality)."""

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import CDPSession, Page

from chunkcast.testing import Server
from tests.integration.live_support import create_stream, start_broadcast, wait_for_renditions

# Installed before the page's own scripts: the playhead sampled every 100 ms and the
# `waiting` events, as a viewer would see them (independent of the player's own counters).
WATCHER = """
window.__watch = { samples: [], waiting: 0 };
addEventListener("DOMContentLoaded", () => {
  const video = document.getElementById("video");
  if (!video) return;
  video.addEventListener("waiting", () => { window.__watch.waiting += 1; });
  setInterval(() => window.__watch.samples.push([performance.now(), video.currentTime]), 100);
});
"""

STATE = """() => {
  const p = window.chunkcastPlayer;
  const v = document.getElementById("video");
  return {
    time: v.currentTime, paused: v.paused, rendition: p?.rendition ?? null,
    target: p?.target ?? null, auto: p?.auto ?? null, delay: p?.delay ?? null,
    stalls: p?.stalls ?? null, range: p?.range() ?? null, live: p?.live ?? null,
    now: performance.now(),
  };
}"""


@contextmanager
def broadcasting(server: Server, source: Path, log_dir: Path) -> Iterator[dict[str, Any]]:
    """A live stream fed by ``chunkcast broadcast SOURCE --loop`` (1 s chunks) until the
    block ends; yields the stream once its first segments are out."""
    stream = create_stream(server)
    proc = start_broadcast(server, stream, source, log_dir / f"broadcast-{stream['id']}.log",
                           "--loop")
    try:
        wait_for_renditions(server, stream["id"], timeout_s=60)
        wait_until(lambda: httpx.get(
            f"{server.url}/play/{stream['id']}/240p/index.m3u8").status_code == 200, 60)
        yield stream
    finally:
        stop(proc)


def stop(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def wait_until(check: Callable[[], bool], timeout_s: float, step_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(step_s)


def open_watch(page: Page, server: Server, video_id: str, query: str = "") -> None:
    """Open the watch page and wait until the picture is moving."""
    page.add_init_script(WATCHER)
    response = page.goto(f"{server.url}/watch/{video_id}{query}")
    assert response is not None and response.status == 200
    page.wait_for_function(
        "() => window.chunkcastPlayer && window.chunkcastPlayer.positioned"
        " && !document.getElementById('video').paused", timeout=60_000)
    start = state(page)["time"]
    page.wait_for_function(f"() => document.getElementById('video').currentTime > {start}",
                           timeout=30_000)


def state(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(STATE)
    return result


def wait_for_state(page: Page, check: Callable[[dict[str, Any]], bool], timeout_s: float
                   ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        current = state(page)
        if check(current):
            return current
        assert time.monotonic() < deadline, f"player never got there: {current}"
        page.wait_for_timeout(250)  # (not time.sleep: page events are handled meanwhile)


def longest_freeze_s(page: Page, since_ms: float) -> float:
    """The longest time, after ``since_ms`` (page clock), that the playhead did not move."""
    samples: list[list[float]] = page.evaluate("() => window.__watch.samples")
    longest = 0.0
    moved_at: float | None = None
    previous: float | None = None
    for now, position in samples:
        if now < since_ms:
            continue
        if moved_at is None or previous is None or position > previous + 1e-3:
            moved_at = now
        previous = position
        longest = max(longest, now - moved_at)
    return longest / 1000


def network(page: Page) -> CDPSession:
    """A DevTools session on the page with the network domain on (keep it while the
    conditions it sets should last)."""
    session = page.context.new_cdp_session(page)
    session.send("Network.enable")
    return session


def throttle(session: CDPSession, bytes_per_s: float | None) -> None:
    """Limit the page's download rate (None: lift the limit), as DevTools does."""
    session.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0 if bytes_per_s is None else 20,
        "downloadThroughput": -1 if bytes_per_s is None else bytes_per_s,
        "uploadThroughput": -1,
    })
