"""HLS players other than the watch page's MSE player, on chunkcast's playlists straight from
the API. hls.js 1.7 on another site: a live stream in low-latency mode (blocking playlist
reloads, close behind capture, no stall), the same stream in plain mode, an upload from its
first frame to its end without a hole. And the watch page where the browser plays HLS
itself (iOS Safari): the master playlist as is, no seek of its own, the delay shown."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from chunkcast.testing import Server, make_clip
from tests.browser.hlsjs_support import (
    LOW_LATENCY_MEDIAN_S,
    PLAIN_MEDIAN_S,
    PLAY_S,
    SETTLE_S,
    assert_blocking_reloads,
    brief,
    open_hlsjs,
    player_site,
    plays_live,
    stalls_seen,
)
from tests.browser.player_support import broadcasting
from tests.integration.api import upload

pytestmark = pytest.mark.integration

PLAIN_PLAY_S = 20  # seconds of live playback watched without low-latency mode


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with player_site() as origin:
        yield origin


@pytest.fixture(scope="module")
def stream(live_server: Server, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    """One live stream for the module: a 640x360 clip looped in 1 s chunks."""
    folder = tmp_path_factory.mktemp("hlsjs-broadcast")
    clip = make_clip(folder / "source.mp4", seconds=10, size="640x360")
    with broadcasting(live_server, clip, folder) as running:
        yield running


def test_hlsjs_low_latency_plays_live_close_behind_capture_with_blocking_reloads(
    page: Page, site: str, live_server: Server, stream: dict[str, Any]
) -> None:
    seen = plays_live(page, site, f"{live_server.url}/play/{stream['id']}/master.m3u8",
                      low_latency=True, seconds=PLAY_S, settle_s=SETTLE_S)
    assert seen["low_latency"] is True
    assert stalls_seen(seen) == [], brief(seen)
    assert seen["played"] >= PLAY_S - 2, brief(seen)
    assert seen["glass"]["p50"] <= LOW_LATENCY_MEDIAN_S, brief(seen)
    assert seen["glass"]["min"] > 0, brief(seen)  # the program date time and media agree
    assert_blocking_reloads(seen, at_least=PLAY_S)


def test_hlsjs_without_low_latency_mode_plays_live_a_few_seconds_behind(
    page: Page, site: str, live_server: Server, stream: dict[str, Any]
) -> None:
    seen = plays_live(page, site, f"{live_server.url}/play/{stream['id']}/master.m3u8",
                      low_latency=False, seconds=PLAIN_PLAY_S, settle_s=SETTLE_S)
    assert seen["low_latency"] is False
    assert stalls_seen(seen) == [], brief(seen)
    assert seen["played"] >= PLAIN_PLAY_S - 2, brief(seen)
    assert seen["glass"]["p50"] <= PLAIN_MEDIAN_S, brief(seen)
    assert seen["glass"]["min"] > 0, brief(seen)
    assert seen["errors"] == [], brief(seen)


def test_hlsjs_plays_an_upload_from_its_first_frame_to_its_end(
    page: Page, site: str, server: Server, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "vod.mp4", seconds=6, size="426x240")
    video = upload(server, clip, "hls.js from the start")
    assert video["status"] == "ready", video
    playback = open_hlsjs(page, site, f"{server.url}/play/{video['id']}/master.m3u8")
    page.wait_for_function("() => window.record.ended || window.record.fatal",
                           timeout=30_000)
    record = playback.snapshot()["record"]
    starts = [s["buffered"][0][0] for s in record["samples"] if s["buffered"]]
    played = [s["time"] for s in record["samples"]]
    seen = {"fatal": record["fatal"], "errors": record["errors"], "playing": record["playing"],
            "seeking": record["seeking"], "buffer_starts": sorted(set(starts))[:3],
            "last": played[-1]}
    assert record["fatal"] is None and record["ended"], seen
    assert record["errors"] == [], seen  # bufferSeekOverHole: hls.js jumped a hole
    assert record["playing"][1] <= 0.05, seen  # from its first frame
    assert record["seeking"] == [], seen  # nothing skipped
    assert starts and max(starts) <= 0.05, seen  # no hole before the first frame
    assert played == sorted(played) and played[-1] == pytest.approx(6, abs=0.2), seen


# What iOS Safari offers the watch page: no Media Source Extensions, HLS built in, and
# getStartDate() (media time 0 as a date, from EXT-X-PROGRAM-DATE-TIME), stubbed 2.5 s behind
# the wall clock. Every seek the page makes is kept.
SAFARI = """
delete window.MediaSource;
delete window.ManagedMediaSource;
HTMLMediaElement.prototype.canPlayType = function (type) {
  return type === "application/vnd.apple.mpegurl" ? "maybe" : "";
};
HTMLMediaElement.prototype.getStartDate = function () { return new Date(Date.now() - 2500); };
window.__seeks = [];
// Held at 0: a Chromium that plays HLS itself would otherwise move it (and the delay shown).
const position = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, "currentTime");
Object.defineProperty(HTMLMediaElement.prototype, "currentTime", {
  configurable: true,
  get() { return 0; },
  set(value) { window.__seeks.push(value); position.set.call(this, value); },
});
"""


def test_without_mse_a_live_stream_goes_to_the_browser_as_its_master_playlist(
    page: Page, live_server: Server, stream: dict[str, Any]
) -> None:
    """Chromium cannot play HLS itself: this checks what the page asks of the browser."""
    page.add_init_script(SAFARI)
    page.goto(f"{live_server.url}/watch/{stream['id']}")
    page.wait_for_function("() => window.chunkcastPlayer", timeout=30_000)
    assert page.evaluate("() => window.chunkcastPlayer.mode") == "native"
    src = page.evaluate("() => document.getElementById('video').src")
    assert src == f"{live_server.url}/play/{stream['id']}/master.m3u8"  # nothing appended
    page.dispatch_event("#video", "timeupdate")
    expect(page.locator("#delay")).to_have_text("2.5 s")
    assert page.evaluate("() => window.__seeks") == []  # where live starts is Safari's call
