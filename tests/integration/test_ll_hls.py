"""Low-Latency HLS against the real server, as a client would use it: a live broadcast of
1 s chunks, playlists asked for with blocking requests the way Safari does (``_HLS_msn``
without ``_HLS_part``, delta updates), and the parts fetched as the byte ranges listed."""

import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest

from chunkcast.testing import Server, make_clip
from tests.integration.live_support import create_stream, start_broadcast, wait_for_renditions
from tests.integration.media_checks import decodes_cleanly

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stream(live_server: Server, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    """A live stream of 1 s chunks, broadcast in a loop for the module's tests."""
    folder = tmp_path_factory.mktemp("ll")
    clip = make_clip(folder / "clip.mp4", seconds=6, size="640x360")
    created = create_stream(live_server)
    proc = start_broadcast(live_server, created, clip, folder / "broadcast.log",
                           "--chunk-seconds", "1", "--loop")
    try:
        wait_for_renditions(live_server, created["id"])
        yield created
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def playlist_url(server: Server, stream: dict[str, Any], rendition: str = "240p") -> str:
    return f"{server.url}/play/{stream['id']}/{rendition}/index.m3u8"


def last_msn(playlist: m3u8.M3U8) -> int:
    return int(playlist.media_sequence) + len(playlist.segments) - 1


def get_playlist(client: httpx.Client, url: str, **params: str | int) -> m3u8.M3U8:
    answer = client.get(url, params=params)
    assert answer.status_code == 200, answer.text
    return m3u8.loads(answer.text)


def current(client: httpx.Client, url: str) -> m3u8.M3U8:
    """The playlist as it is now (404 until the first segment is recorded)."""
    deadline = time.monotonic() + 15
    while (answer := client.get(url)).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert answer.status_code == 200, answer.text
    return m3u8.loads(answer.text)


def wait_for_segments(client: httpx.Client, url: str, count: int) -> m3u8.M3U8:
    """The playlist once it lists ``count`` segments (blocking requests, not polling)."""
    playlist = current(client, url)
    while len(playlist.segments) < count:
        playlist = get_playlist(client, url, _HLS_msn=last_msn(playlist) + 1)
    return playlist


def test_safari_reloads_with_a_segment_number_and_gets_each_new_segment_at_once(
        live_server: Server, stream: dict[str, Any]) -> None:
    """Safari asks for the next segment with ``_HLS_msn`` alone: each request is held until
    that segment exists, then answered with it as the newest (a plain request right after
    shows nothing newer)."""
    url = playlist_url(live_server, stream)
    with httpx.Client(timeout=15) as client:
        playlist = current(client, url)
        control = playlist.server_control
        assert control.can_block_reload == "YES" and playlist.target_duration == 1
        assert control.hold_back >= 3 * playlist.target_duration
        assert playlist.media_sequence >= 1  # players skip blocking reload at 0
        for _ in range(4):
            wanted = last_msn(playlist) + 1
            started = time.monotonic()
            answer = client.get(url, params={"_HLS_msn": wanted})
            held = time.monotonic() - started
            assert answer.status_code == 200, answer.text
            assert "max-age" in answer.headers["cache-control"]
            playlist = m3u8.loads(answer.text)
            assert last_msn(playlist) == wanted
            assert held < 3 * playlist.target_duration  # never the 503 of a stuck stream
            assert last_msn(get_playlist(client, url)) <= wanted + 1


def test_too_far_ahead_is_refused_and_a_part_needs_a_segment(
        live_server: Server, stream: dict[str, Any]) -> None:
    url = playlist_url(live_server, stream)
    with httpx.Client(timeout=15) as client:
        newest = last_msn(current(client, url))
        assert client.get(url, params={"_HLS_msn": newest + 10}).status_code == 400
        assert client.get(url, params={"_HLS_part": 1}).status_code == 400
        assert client.get(url, params={"_HLS_msn": -1}).status_code == 422
        assert client.get(url, params={"_HLS_msn": 1, "_HLS_skip": "NO"}).status_code == 400


def test_parts_are_byte_ranges_of_their_segment_that_play(
        live_server: Server, stream: dict[str, Any]) -> None:
    """Each part listed is fetched with a Range request, as hls.js and Safari do: the parts
    of a segment are whole fMP4 fragments, contiguous, covering the segment; the first one
    starts with a keyframe and plays after the init segment."""
    url = playlist_url(live_server, stream)
    with httpx.Client(timeout=15) as client:
        playlist = wait_for_segments(client, url, 3)
        info = playlist.part_inf
        assert info is not None and playlist.server_control.part_hold_back >= \
            3 * info.part_target
        segment = playlist.segments[-1]
        assert segment.parts, playlist.dumps()
        body = client.get(segment.uri).content
        offset = 0
        for index, part in enumerate(segment.parts):
            assert part.uri == segment.uri
            length, start = (int(v) for v in part.byterange.strip('"').split("@"))
            assert start == offset
            ranged = client.get(part.uri, headers={"Range": f"bytes={start}-{start + length - 1}"})
            assert ranged.status_code == 206 and ranged.content == body[start:start + length]
            assert ranged.content[4:8] in (b"moof", b"styp"), index
            assert part.duration <= info.part_target
            assert (part.independent == "YES") == (index == 0)
            offset += length
        assert offset == len(body)
        assert sum(p.duration for p in segment.parts) == pytest.approx(segment.duration,
                                                                       abs=0.002)
        init = client.get(playlist.segment_map[0].absolute_uri or
                          playlist.segment_map[0].uri).content
        first = segment.parts[0]
        length, start = (int(v) for v in first.byterange.strip('"').split("@"))
        with tempfile.NamedTemporaryFile(suffix=".mp4") as media:
            media.write(init + body[start:start + length])
            media.flush()
            assert decodes_cleanly(media.name) == ""


def test_the_hinted_part_is_the_next_segments_first(
        live_server: Server, stream: dict[str, Any]) -> None:
    url = playlist_url(live_server, stream)
    with httpx.Client(timeout=15) as client:
        playlist = wait_for_segments(client, url, 2)
        hint = playlist.preload_hint
        assert hint is not None and hint.hint_type == "PART" and hint.byterange_start == 0
        wanted = last_msn(playlist) + 1
        following = get_playlist(client, url, _HLS_msn=wanted, _HLS_part=0)
        newest = following.segments[len(following.segments) - 1 - (last_msn(following)
                                                                      - wanted)]
        assert newest.uri == hint.uri and newest.parts[0].byterange.strip('"').endswith("@0")


def test_rendition_reports_follow_the_other_renditions(
        live_server: Server, stream: dict[str, Any]) -> None:
    url = playlist_url(live_server, stream, "240p")
    with httpx.Client(timeout=15) as client:
        playlist = wait_for_segments(client, url, 2)
        reports = {r.uri: r for r in playlist.rendition_reports}
        assert list(reports) == ["../360p/index.m3u8"]
        # Workers make every rendition of a chunk in one encode: they stand together.
        assert abs(reports["../360p/index.m3u8"].last_msn - last_msn(playlist)) <= 1


def test_a_delta_update_of_the_dvr_playlist_leaves_out_its_start(
        live_server: Server, stream: dict[str, Any]) -> None:
    """``_HLS_skip=YES`` (Safari and hls.js ask for it once CAN-SKIP-UNTIL is given): the
    segments older than six target durations are replaced by EXT-X-SKIP, and what is listed
    matches the end of the whole playlist."""
    url = playlist_url(live_server, stream)
    with httpx.Client(timeout=15) as client:
        wait_for_segments(client, url, 6)
        full = get_playlist(client, url, dvr=1)
        while len(full.segments) < 9:
            full = get_playlist(client, url, dvr=1, _HLS_msn=last_msn(full) + 1)
        msn = last_msn(full)
        delta = get_playlist(client, url, dvr=1, _HLS_msn=msn, _HLS_skip="YES")
        assert delta.media_sequence == full.media_sequence
        assert delta.skip.skipped_segments >= 2
        kept = [s.uri for s in delta.segments]
        assert kept == [s.uri for s in full.segments][delta.skip.skipped_segments:
                                                       delta.skip.skipped_segments + len(kept)]


def test_a_stream_that_ends_answers_a_waiting_request_with_its_end(
        live_server: Server, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "short.mp4", seconds=3, size="320x240")
    created = create_stream(live_server)
    proc = start_broadcast(live_server, created, clip, tmp_path / "broadcast.log",
                           "--chunk-seconds", "1")
    url = playlist_url(live_server, created)
    try:
        wait_for_renditions(live_server, created["id"])
        with httpx.Client(timeout=15) as client:
            playlist = current(client, url)
            while not playlist.is_endlist:
                playlist = get_playlist(client, url, _HLS_msn=last_msn(playlist) + 1)
            assert len(playlist.segments) >= 3
        assert proc.wait(timeout=30) == 0  # the broadcaster ended the stream and exited
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
