"""Playback of what the pipeline made: master and media playlists, live windows, and signed
links of private videos that keep the caller's expiry."""

import re

import pytest

from chunkcast.domain import keys
from chunkcast.domain.errors import Expired, Forbidden, InvalidInput, NotFound
from chunkcast.domain.signing import playback_check
from chunkcast.domain.videos import Video
from tests.fakes import VIDEO_CODECS, fake_chunk, fake_media

from .world import CDN, SECRET, World


async def _ready(world: World, *, private: bool = False) -> Video:
    video, _ = await world.videos.create("clip", private=private)
    await world.store.put_bytes(keys.source(video.id),
                                fake_media(duration=7.0, width=640, height=360, fps=25.0))
    await world.videos.complete(video.id)
    await world.work()
    return await world.videos.get(video.id)


def _uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


async def test_a_ready_video_plays_every_rendition_from_the_cdn(world: World) -> None:
    video = await _ready(world)
    master = await world.playback.master(video.id)
    assert _uris(master) == ["240p/index.m3u8", "360p/index.m3u8"]
    assert (f'RESOLUTION=640x360,FRAME-RATE=25.000,CODECS="{VIDEO_CODECS},mp4a.40.2"'
            in master)
    media, growing = await world.playback.media(video.id, "360p")
    assert not growing
    assert f'#EXT-X-MAP:URI="{CDN}/media/{keys.init_segment(video.id, "360p")}"' in media
    assert _uris(media) == [f"{CDN}/media/{keys.segment(video.id, '360p', s)}"
                            for s in range(4)]
    assert re.findall(r"#EXTINF:([\d.]+),", media) == ["2.000000"] * 3 + ["1.000000"]
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in media and "#EXT-X-ENDLIST" in media
    urls = world.playback.urls(video, expires=None)
    assert urls.token is None and urls.hls == f"{CDN}/play/{video.id}/master.m3u8"


async def test_a_video_plays_only_once_ready_and_only_its_renditions(world: World) -> None:
    video, _ = await world.videos.create("clip")
    with pytest.raises(NotFound, match="not playable yet"):
        await world.playback.master(video.id)
    ready = await _ready(world)
    with pytest.raises(NotFound):
        await world.playback.media(ready.id, "1080p")
    with pytest.raises(InvalidInput):
        await world.playback.media(ready.id, "../../etc")
    with pytest.raises(NotFound):
        await world.playback.master("a" * 16)


async def test_a_live_playlist_is_a_sliding_window_with_gaps_in_their_place(
    world: World,
) -> None:
    stream, key = await world.streams.create("live")
    world.encoder.fail_first_seqs.add(4)
    for seq in range(6):
        await world.store.put_bytes(keys.chunk(stream.id, seq), fake_chunk(1.0))
        await world.streams.complete_chunk(stream.id, key, seq, duration=1.0,
                                           pts_start=float(seq), captured_at=None)
    await world.work()
    window, growing = await world.playback.media(stream.id, "240p")
    assert growing and "#EXT-X-ENDLIST" not in window
    # The last three seqs, the lost one listed as a gap where its segment would have been;
    # Media Sequence Numbers are seqs plus one.
    assert "#EXT-X-MEDIA-SEQUENCE:4" in window and window.count("#EXT-X-GAP") == 1
    assert _uris(window) == [
        f"{CDN}/media/{keys.segment(stream.id, '240p', s)}" for s in (3, 4, 5)]
    dvr, _ = await world.playback.media(stream.id, "240p", dvr=True)
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in dvr and len(_uris(dvr)) == 6
    await world.streams.end(stream.id)
    ended, growing = await world.playback.media(stream.id, "240p")
    assert not growing and ended.rstrip().endswith("#EXT-X-ENDLIST") and len(_uris(ended)) == 6


def _token(world: World, video_id: str, expires: int) -> tuple[str, str]:
    e, st = (part.split("=", 1)[1] for part in world.signer.query(video_id, expires)
             .split("&"))
    return e, st


async def test_a_private_video_plays_only_from_a_signed_link_and_keeps_its_expiry(
    world: World,
) -> None:
    video = await _ready(world, private=True)
    with pytest.raises(Forbidden):
        await world.playback.master(video.id)
    soon = int(world.clock.now) + 90  # a link minted long ago, about to expire
    token = _token(world, video.id, soon)
    master = await world.playback.master(video.id, token)
    media, _ = await world.playback.media(video.id, "240p", token=token)
    assert _uris(master) == [f"{r}/index.m3u8?e={token[0]}&st={token[1]}"
                             for r in ("240p", "360p")]
    for uri in _uris(media) + re.findall(r'URI="([^"]+)"', media):
        assert uri.startswith(f"{CDN}/private/media/{video.id}/240p/"), uri
        e, st = re.findall(r"\?e=(\d+)&st=(.+)$", uri)[0]
        assert int(e) == soon
        assert playback_check(SECRET, video.id, e, st, world.clock.now) == "ok"
    assert world.playback.urls(video, expires=soon).token == world.signer.query(video.id, soon)
    world.clock.now = soon + 1
    with pytest.raises(Expired):
        await world.playback.media(video.id, "240p", token=token)
    other = await _ready(world, private=True)
    with pytest.raises(Forbidden):
        await world.playback.master(other.id, _token(world, video.id, soon + 3600))


async def test_static_playlists_use_relative_uris(world: World) -> None:
    video = await _ready(world)
    media = (await world.store.read_bytes(keys.media_playlist(video.id, "240p"))).decode()
    assert _uris(media) == [f"{s:08d}.m4s" for s in range(4)]
    master = (await world.store.read_bytes(keys.master_playlist(video.id))).decode()
    assert _uris(master) == ["240p/index.m3u8", "360p/index.m3u8"]
