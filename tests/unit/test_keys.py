"""Storage keys and identifiers: only validated parts ever reach a path."""

import re

import pytest

from chunkcast.domain import keys
from chunkcast.domain.errors import InvalidInput
from chunkcast.domain.ids import check_rendition, check_video_id, new_video_id

VID = "abcdefghijklmnop"
VID2 = "z234567zz234567z"

BAD_IDS = [
    "",
    "../etc/passwd",
    "ABCDEFGHIJKLMNOP",  # upper case
    "abcdefghijklmno",  # 15 chars
    "abcdefghijklmnopq",  # 17 chars
    "abcdefghijklmno1",  # 1 is not base32
    "abcdefghijklmno0",  # 0 is not base32
    "abcdefghijklmno8",  # 8 is not base32
    "abcdefgh/jklmnop",
    "abcdefgh.jklmnop",
    "abcdefghijklmnop\n",
    " abcdefghijklmnop",
]


def test_keys_for_a_valid_id() -> None:
    assert keys.source(VID) == f"sources/{VID}/source"
    assert keys.chunk(VID, 7) == f"chunks/{VID}/00000007.ts"
    assert keys.media_prefix(VID) == f"media/{VID}/"
    assert keys.video_prefixes(VID) == (f"sources/{VID}/", f"chunks/{VID}/", f"media/{VID}/")
    assert keys.init_segment(VID, "720p") == f"media/{VID}/720p/init.mp4"
    assert keys.segment(VID, "720p", 12) == f"media/{VID}/720p/00000012.m4s"
    assert keys.master_playlist(VID) == f"media/{VID}/master.m3u8"
    assert keys.media_playlist(VID, "1080p") == f"media/{VID}/1080p/index.m3u8"


def test_every_built_key_passes_check_key() -> None:
    built = [
        keys.source(VID2), keys.chunk(VID2, 0), keys.chunk(VID2, 99_999_999),
        keys.init_segment(VID2, "120p"), keys.segment(VID2, "240p", 3),
        keys.master_playlist(VID2), keys.media_playlist(VID2, "1080p"),
    ]
    for key in built:
        assert keys.check_key(key) == key


def test_media_keys_live_under_the_media_prefix() -> None:
    for key in (keys.init_segment(VID, "720p"), keys.segment(VID, "720p", 1),
                keys.master_playlist(VID), keys.media_playlist(VID, "720p")):
        assert key.startswith(keys.media_prefix(VID))


@pytest.mark.parametrize("video_id", BAD_IDS)
def test_builders_reject_a_bad_video_id(video_id: str) -> None:
    for build in (keys.source, keys.media_prefix, keys.video_prefixes, keys.master_playlist):
        with pytest.raises(InvalidInput):
            build(video_id)
    with pytest.raises(InvalidInput):
        keys.chunk(video_id, 0)
    with pytest.raises(InvalidInput):
        keys.segment(video_id, "720p", 0)


@pytest.mark.parametrize("rendition", ["", "720", "p", "7p", "12345p", "720P", "../720p",
                                       "720p/..", "720p/x", "720p\n"])
def test_builders_reject_a_bad_rendition(rendition: str) -> None:
    with pytest.raises(InvalidInput):
        keys.init_segment(VID, rendition)
    with pytest.raises(InvalidInput):
        keys.segment(VID, rendition, 0)
    with pytest.raises(InvalidInput):
        keys.media_playlist(VID, rendition)


@pytest.mark.parametrize("seq", [-1, 100_000_000])
def test_sequence_numbers_out_of_range(seq: int) -> None:
    with pytest.raises(InvalidInput):
        keys.chunk(VID, seq)
    with pytest.raises(InvalidInput):
        keys.segment(VID, "720p", seq)


@pytest.mark.parametrize(
    "key",
    [
        f"media/{VID}/master.m3u8",
        f"media/{VID}/720p/00000001.m4s",
        f"sources/{VID}/source",
        f"chunks/{VID}/00000000.ts",
        f"media/{VID}",
        f"media/{VID}/a-b_c.d",
    ],
)
def test_check_key_accepts_well_formed_keys(key: str) -> None:
    assert keys.check_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../etc/passwd",
        "media/../../x",
        f"media/{VID}/../../x",
        f"media/{VID}/720p/../../other",
        f"media/{VID}/..",
        f"media/{VID}/.",
        f"media/{VID}/./x",
        f"/media/{VID}/master.m3u8",
        "/etc/passwd",
        f"media//{VID}/x",
        f"media/{VID}//x",
        f"media/{VID}/",
        f"media\\{VID}\\x",
        f"media/{VID}/720p\\..\\..\\x",
        f"media/{VID}/%2e%2e/x",
        f"media/{VID}/a b",
        f"media/{VID}/x\n",
        f"MEDIA/{VID}/x",
        "media/abcdefghijklmno/x",
        "media/abcdefghijklmnopq/x",
        "media/ABCDEFGHIJKLMNOP/x",
        "media/abcdefghijklmno1/x",
        "media/x",
        VID,
    ],
)
def test_check_key_rejects(key: str) -> None:
    with pytest.raises(InvalidInput):
        keys.check_key(key)


def test_new_video_id_format() -> None:
    made = {new_video_id() for _ in range(200)}
    assert len(made) == 200, "ids do not repeat"
    for video_id in made:
        assert re.fullmatch(r"[a-z2-7]{16}", video_id)
        assert check_video_id(video_id) == video_id
        assert keys.check_key(keys.master_playlist(video_id))


@pytest.mark.parametrize("video_id", BAD_IDS)
def test_check_video_id_rejects(video_id: str) -> None:
    with pytest.raises(InvalidInput):
        check_video_id(video_id)


@pytest.mark.parametrize("name", ["120p", "240p", "360p", "480p", "720p", "1080p", "2160p"])
def test_check_rendition_accepts(name: str) -> None:
    assert check_rendition(name) == name
