"""The watch page's player in a real Chromium: live at the edge, quality switches, adaptive
bitrate under a throttled network, VOD seeking, signed playback parameters."""

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocket, WebSocketRoute, expect

from chunkcast.testing import Server, make_clip
from tests.browser.player_support import (
    broadcasting,
    longest_freeze_s,
    network,
    open_watch,
    state,
    throttle,
    wait_for_state,
)
from tests.integration.api import admin, put, upload, wait_done

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stream(live_server: Server, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    """One live stream for the module: a 640x360 clip looped in 1 s chunks (ladder 240p and
    360p), stopped at the end."""
    folder = tmp_path_factory.mktemp("broadcast")
    clip = make_clip(folder / "source.mp4", seconds=10, size="640x360")
    with broadcasting(live_server, clip, folder) as running:
        yield running


@pytest.fixture(scope="module")
def vod(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    clip = make_clip(tmp_path_factory.mktemp("vod") / "vod.mp4", seconds=12, size="426x240")
    video = upload(server, clip, "seek me")
    assert video["status"] == "ready", video
    return video


def _delay_shown(page: Page) -> float:
    text = page.locator("#delay").inner_text()
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?) s", text.strip())
    assert match, f"delay readout shows {text!r}"
    return float(match.group(1))


def _on(rendition: str) -> Callable[[dict[str, Any]], bool]:
    return lambda current: bool(current["rendition"] == rendition)


def test_live_plays_at_the_edge_with_a_small_delay(
    page: Page, live_server: Server, stream: dict[str, Any]
) -> None:
    open_watch(page, live_server, stream["id"])
    assert page.locator("#delay").is_visible()
    before = state(page)
    delays = []
    for _ in range(8):
        page.wait_for_timeout(500)
        delays.append(_delay_shown(page))
    after = state(page)
    assert after["time"] - before["time"] >= 3.0, (before, after)
    assert all(0 <= d < 3.0 for d in delays), delays
    assert after["live"] is True and after["delay"] is not None and after["delay"] < 3.0


def test_live_scrubs_back_and_returns_to_the_edge(
    page: Page, live_server: Server, stream: dict[str, Any]
) -> None:
    open_watch(page, live_server, stream["id"])
    live_button = page.get_by_role("button", name="Jump to live")
    assert live_button.get_attribute("aria-pressed") == "true"
    seek = page.locator("#seek")
    seek.focus()  # fetches the DVR segment list
    page.wait_for_function("() => Number(document.getElementById('seek').max) > 8",
                           timeout=30_000)
    seek.fill(f"{float(seek.get_attribute('max') or 0) - 8:.1f}")
    behind = wait_for_state(page, lambda s: s["delay"] is not None and s["delay"] > 6, 15)
    assert live_button.get_attribute("aria-pressed") == "false"
    page.wait_for_timeout(2000)
    assert state(page)["time"] - behind["time"] >= 1.5  # plays on from back there
    live_button.click()
    wait_for_state(page, lambda s: s["delay"] is not None and s["delay"] < 3, 15)
    assert live_button.get_attribute("aria-pressed") == "true"


def test_live_resumes_after_the_connection_drops(
    page: Page, live_server: Server, stream: dict[str, Any]
) -> None:
    routes: list[WebSocketRoute] = []

    def through(route: WebSocketRoute) -> None:
        route.connect_to_server()
        routes.append(route)

    page.route_web_socket(re.compile(r"/ws/"), through)
    open_watch(page, live_server, stream["id"])
    dropped = len(routes)
    dropped_at = state(page)["now"]
    for route in routes:
        route.close(code=1011, reason="dropped")
    resumed = wait_for_state(page, lambda s: len(routes) > dropped, 15)
    assert all("since=" in r.url for r in routes[dropped:]), [r.url for r in routes]
    page.wait_for_timeout(3000)
    now = state(page)
    assert now["time"] - resumed["time"] >= 2.5
    assert now["delay"] is not None and now["delay"] < 3
    assert longest_freeze_s(page, dropped_at) < 1.0


def test_switching_quality_from_the_menu_keeps_playing(
    page: Page, live_server: Server, stream: dict[str, Any]
) -> None:
    open_watch(page, live_server, stream["id"])
    switched_at = state(page)["now"]
    for rendition in ("240p", "360p"):
        page.select_option("#quality-select", rendition)
        shown = wait_for_state(page, _on(rendition), 15)
        assert shown["auto"] is False
        assert page.locator("#quality").inner_text() == rendition
        before = shown["time"]
        page.wait_for_timeout(2000)
        assert state(page)["time"] - before >= 1.5
    assert longest_freeze_s(page, switched_at) < 1.0


def test_auto_quality_goes_up_with_bandwidth_and_down_when_throttled(
    page: Page, live_server: Server, stream: dict[str, Any]
) -> None:
    open_watch(page, live_server, stream["id"])
    top = wait_for_state(page, _on("360p"), 20)
    assert top["auto"] is True and page.locator("#quality").inner_text() == "Auto (360p)"
    session = network(page)
    throttle(session, 120_000)  # ~0.96 Mbit/s: 360p (0.93 Mbit/s nominal) no longer fits
    low = wait_for_state(page, _on("240p"), 30)
    page.wait_for_timeout(3000)
    assert state(page)["time"] - low["time"] >= 2.0  # still playing, on the lower rung
    throttle(session, None)
    wait_for_state(page, _on("360p"), 30)


def test_vod_plays_from_the_start_and_seeks_to_the_middle(
    page: Page, server: Server, vod: dict[str, Any]
) -> None:
    open_watch(page, server, vod["id"])
    first = state(page)
    start, end = first["range"]
    assert first["live"] is False and end - start == pytest.approx(12, abs=0.5)
    # From the beginning, and on without a jump (the playhead as sampled every 100 ms).
    page.wait_for_timeout(500)
    played = [t for _, t in page.evaluate("() => window.__watch.samples") if t > 0]
    assert played and played[0] - start < 1.5, played[:20]
    assert all(b - a < 0.6 for a, b in itertools.pairwise(played)), played
    page.wait_for_timeout(1000)
    assert state(page)["time"] > first["time"]
    middle = (end - start) / 2
    page.locator("#seek").fill(f"{middle:.1f}")
    seeked_at = state(page)["now"]
    moved = wait_for_state(page, lambda s: s["time"] >= start + middle + 0.5, 15)
    assert moved["time"] < start + middle + 4  # landed in the middle, not further
    page.wait_for_timeout(1500)
    assert state(page)["time"] >= moved["time"] + 1.0
    assert longest_freeze_s(page, seeked_at + 3000) < 1.0
    assert page.locator("#time").inner_text().endswith("/ 0:12")


def test_a_private_video_plays_from_its_signed_link_only(
    page: Page, server: Server, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "private.mp4", seconds=4, size="426x240")
    with admin(server) as client:
        created = client.post("/api/v1/videos", json={"title": "private", "private": True})
        assert put(created.json(), clip.read_bytes()).status_code == 200
        client.post(f"/api/v1/videos/{created.json()['id']}/complete")
        video = wait_done(client, created.json()["id"])
    token = video["playback"]["token"]
    assert video["status"] == "ready" and token
    requests: list[str] = []
    sockets: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    def keep(ws: WebSocket) -> None:
        sockets.append(ws.url)

    page.on("websocket", keep)
    open_watch(page, server, video["id"], f"?{token}")  # plays: the signed watch link
    assert video["playback"]["watch"].endswith(f"/watch/{video['id']}?{token}")
    media = [u for u in requests if "/media/" in u or "/private/" in u]
    assert media and all("/private/media/" in u and "st=" in u for u in media), media
    assert sockets and all(token in u for u in sockets)
    # Without the signature the page says the video cannot be played.
    page.goto(f"{server.url}/watch/{video['id']}")
    message = page.locator("#player-message")
    message.wait_for(state="visible", timeout=10_000)
    assert "private" in message.inner_text().lower()


def test_unknown_video_says_so(page: Page, server: Server) -> None:
    page.goto(f"{server.url}/watch/aaaaaaaaaaaaaaaa")
    message = page.locator("#player-message")
    message.wait_for(state="visible", timeout=10_000)
    assert "does not exist" in message.inner_text()


def test_controls_work_from_the_keyboard_at_phone_width(
    page: Page, server: Server, vod: dict[str, Any]
) -> None:
    page.set_viewport_size({"width": 375, "height": 740})
    open_watch(page, server, vod["id"])
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    for control in ("#play", "#mute", "#seek", "#quality-select", "#fullscreen"):
        box = page.locator(control).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, control
    play = page.get_by_role("button", name="Pause", exact=True)
    play.focus()
    page.keyboard.press("Space")
    page.wait_for_function("() => document.getElementById('video').paused")
    expect(page.get_by_role("button", name="Play", exact=True)).to_be_visible()
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.getElementById('video').paused")
    page.get_by_label("Quality").focus()
    page.get_by_label("Quality").select_option("240p")
    wait_for_state(page, lambda s: s["auto"] is False and s["target"] == "240p", 5)
    page.get_by_label("Seek").focus()
    before = state(page)["time"]
    page.keyboard.press("ArrowRight")
    wait_for_state(page, lambda s: s["time"] >= before + 4, 10)


NO_MSE = """
delete window.MediaSource;
delete window.ManagedMediaSource;
HTMLMediaElement.prototype.canPlayType = function (type) {
  return type === "application/vnd.apple.mpegurl" ? "maybe" : "";
};
"""


def test_without_mse_the_page_hands_the_master_playlist_to_the_browser(
    page: Page, server: Server, vod: dict[str, Any]
) -> None:
    """What iOS Safari gets (no Media Source Extensions, HLS built in). Chromium cannot play
    HLS itself, so this checks the page's choice, not the picture."""
    page.add_init_script(NO_MSE)
    page.goto(f"{server.url}/watch/{vod['id']}")
    page.wait_for_function("() => window.chunkcastPlayer", timeout=30_000)
    assert page.evaluate("() => window.chunkcastPlayer.mode") == "native"
    src = page.evaluate("() => document.getElementById('video').src")
    assert src == f"{server.url}/play/{vod['id']}/master.m3u8"
