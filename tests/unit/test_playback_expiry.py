"""Signed links never renew themselves: what is derived from a link (playlists, the video's
playback block) keeps the link's expiry; only the admin's links are minted with a fresh one."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chunkcast.adapters.db.repository import SqlVideoRepository
from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.domain import keys
from chunkcast.domain.errors import Expired, Forbidden
from chunkcast.domain.ids import new_video_id
from chunkcast.domain.ladder import Rendition
from chunkcast.domain.signing import playback_check
from chunkcast.domain.videos import Segment, Video, VideoKind, VideoStatus
from chunkcast.services.playback import Playback, Signer

SECRET = "p" * 64
NOW = 1_800_000_000.0
TTL = 4 * 3600
SOON = int(NOW) + 90  # a link minted long ago, about to expire
R240 = Rendition("240p", 426, 240, 400, 64, 30.0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> Signer:
    return Signer(SECRET, TTL, clock)


@pytest.fixture
def playback(repo: SqlVideoRepository, signer: Signer, tmp_path: Path) -> Playback:
    store = LocalObjectStore(tmp_path / "objects", b"s" * 32, "http://api")
    return Playback(repo, store, signer, "http://cdn", "http://api", 2)


async def _private_vod(repo: SqlVideoRepository) -> Video:
    video = Video(new_video_id(), VideoKind.VOD, "secret", VideoStatus.READY,
                  datetime.now(UTC), has_audio=True, private=True)
    await repo.add_video(video)
    await repo.set_plan(video.id, [R240], 1)
    await repo.upsert_segments([Segment(video.id, "240p", s, keys.segment(video.id, "240p", s),
                                        2.0 * s, 2.0) for s in range(3)])
    return video


def _expiries(text: str) -> set[int]:
    return {int(e) for e in re.findall(r"[?&]e=(\d+)", text)}


def _token(signer: Signer, video_id: str, expires: int) -> tuple[str, str]:
    e, st = (part.split("=", 1)[1] for part in signer.query(video_id, expires).split("&"))
    return e, st


def test_check_gives_the_link_s_expiry_and_query_gives_back_the_same_token(
    signer: Signer,
) -> None:
    query = signer.query("abcdefghijklmnop", SOON)
    token = _token(signer, "abcdefghijklmnop", SOON)
    assert signer.check("abcdefghijklmnop", token) == SOON
    assert signer.query("abcdefghijklmnop", signer.check("abcdefghijklmnop", token)) == query


def test_fresh_links_expire_at_least_the_ttl_from_now(signer: Signer, clock: Clock) -> None:
    fresh = signer.fresh_expiry()
    assert NOW + TTL <= fresh <= NOW + TTL + 300 and fresh % 300 == 0
    clock.now += 3600
    assert signer.fresh_expiry() >= fresh + 3600 - 300


def test_an_expired_or_foreign_token_is_refused(signer: Signer, clock: Clock) -> None:
    token = _token(signer, "abcdefghijklmnop", SOON)
    with pytest.raises(Forbidden):
        signer.check("bbcdefghijklmnop", token)
    with pytest.raises(Forbidden):
        signer.check("abcdefghijklmnop", (str(SOON + 3600), token[1]))
    with pytest.raises(Forbidden):
        signer.check("abcdefghijklmnop", (None, None))
    clock.now = SOON + 1
    with pytest.raises(Expired):
        signer.check("abcdefghijklmnop", token)


async def test_playlists_keep_the_caller_s_expiry(
    repo: SqlVideoRepository, playback: Playback, signer: Signer,
) -> None:
    video = await _private_vod(repo)
    token = _token(signer, video.id, SOON)
    master = await playback.master(video.id, token)
    media, _ = await playback.media(video.id, "240p", token=token)
    for text in (master, media):
        assert _expiries(text) == {SOON}, text
    # Every URI is signed with the very token the caller came with.
    assert f"240p/index.m3u8?e={token[0]}&st={token[1]}" in master
    uris = re.findall(r'URI="([^"]+)"', media) + [
        line for line in media.splitlines() if line and not line.startswith("#")]
    assert len(uris) == 4
    for uri in uris:
        assert uri.startswith(f"http://cdn/private/media/{video.id}/240p/")
        e, st = re.findall(r"\?e=(\d+)&st=(.+)$", uri)[0]
        assert playback_check(SECRET, video.id, e, st, NOW) == "ok"


async def test_playlists_of_an_expired_link_are_refused(
    repo: SqlVideoRepository, playback: Playback, signer: Signer, clock: Clock,
) -> None:
    video = await _private_vod(repo)
    token = _token(signer, video.id, SOON)
    clock.now = SOON + 1
    with pytest.raises(Expired):
        await playback.master(video.id, token)
    with pytest.raises(Expired):
        await playback.media(video.id, "240p", token=token)


async def test_the_playback_block_keeps_a_link_s_expiry_and_the_admin_s_is_fresh(
    repo: SqlVideoRepository, playback: Playback, signer: Signer,
) -> None:
    video = await _private_vod(repo)
    held = playback.urls(video, expires=SOON)
    assert held.token == signer.query(video.id, SOON)
    assert _expiries(held.hls) == _expiries(held.watch) == {SOON}
    minted = playback.urls(video, expires=None)
    assert minted.token == signer.query(video.id, signer.fresh_expiry())
    assert _expiries(minted.hls) == {signer.fresh_expiry()} and signer.fresh_expiry() > SOON


async def test_public_videos_have_plain_links(
    repo: SqlVideoRepository, playback: Playback,
) -> None:
    video = Video(new_video_id(), VideoKind.VOD, "open", VideoStatus.READY, datetime.now(UTC))
    await repo.add_video(video)
    urls = playback.urls(video, expires=SOON)
    assert urls.token is None and "?" not in urls.hls and "?" not in urls.watch
