"""hls.js 1.7 on another site playing a live stream through the nginx edge that
`chunkcast deploy nginx` writes (playlists and segments from the edge, the API behind it):
low-latency mode with blocking reloads, close behind capture, without a stall."""

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from chunkcast.testing import Server, free_port, make_clip, run_server
from tests.browser.hlsjs_support import (
    LOW_LATENCY_MEDIAN_S,
    PLAY_S,
    SETTLE_S,
    assert_blocking_reloads,
    brief,
    player_site,
    plays_live,
    stalls_seen,
)
from tests.browser.player_support import broadcasting
from tests.conftest import LIVE_ENV
from tests.servers.nginx import Nginx, deploy, run_nginx

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Nginx]]:
    """An API whose media URLs point at an nginx edge in front of it."""
    root = tmp_path_factory.mktemp("hlsjs-edge")
    edge_port = free_port()
    env = {**LIVE_ENV, "CHUNKCAST_CDN_URL": f"http://127.0.0.1:{edge_port}"}
    with run_server(root / "api", env=env) as api:
        deploy(root / "nginx", [api.url.removeprefix("http://")], api.url, edge_port,
               free_port(), {"CHUNKCAST_DATA_DIR": str(api.data_dir)})
        with run_nginx(root / "nginx", "edge", edge_port) as nginx:
            yield api, nginx


@pytest.fixture(scope="module")
def stream(edge: tuple[Server, Nginx], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("hlsjs-edge-broadcast")
    clip = make_clip(folder / "source.mp4", seconds=10, size="640x360")
    with broadcasting(edge[0], clip, folder) as running:
        yield running


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with player_site() as origin:
        yield origin


def test_hlsjs_low_latency_plays_live_through_the_edge(
    page: Page, site: str, edge: tuple[Server, Nginx], stream: dict[str, Any]
) -> None:
    _, nginx = edge
    seen = plays_live(page, site, f"{nginx.url}/play/{stream['id']}/master.m3u8",
                      low_latency=True, seconds=PLAY_S, settle_s=SETTLE_S)
    assert seen["low_latency"] is True
    assert stalls_seen(seen) == [], brief(seen)
    assert seen["played"] >= PLAY_S - 2, brief(seen)
    assert seen["glass"]["p50"] <= LOW_LATENCY_MEDIAN_S, brief(seen)
    assert seen["glass"]["min"] > 0, brief(seen)  # the program date time and media agree
    assert seen["requests"] and all(url.startswith(nginx.url) for url in seen["requests"])
    assert_blocking_reloads(seen, at_least=PLAY_S)
