"""Codec strings (RFC 6381) read from an init segment."""

import pytest

from chunkcast.media.mp4 import codecs_of_init


def avcc_box(profile: int, compat: int, level: int) -> bytes:
    # size, type, then configurationVersion=1, profile, compatibility, level, ...
    body = bytes([1, profile, compat, level, 0xFF, 0xE1])
    return (8 + len(body)).to_bytes(4, "big") + b"avcC" + body


MP4A = (36).to_bytes(4, "big") + b"mp4a" + bytes(28)
PADDING = b"\x00\x00\x00\x18ftypiso6" + bytes(16)


@pytest.mark.parametrize(
    ("profile", "compat", "level", "expected"),
    [(0x64, 0x00, 0x1F, "avc1.64001f"), (0x42, 0xC0, 0x1E, "avc1.42c01e"),
     (0x4D, 0x40, 0x28, "avc1.4d4028"), (0x64, 0x00, 0x0D, "avc1.64000d")],
)
def test_video_only(profile: int, compat: int, level: int, expected: str) -> None:
    assert codecs_of_init(PADDING + avcc_box(profile, compat, level)) == expected


def test_video_and_audio() -> None:
    data = PADDING + avcc_box(0x64, 0x00, 0x1F) + MP4A
    assert codecs_of_init(data) == "avc1.64001f,mp4a.40.2"


def test_audio_before_video_still_lists_video_first() -> None:
    data = PADDING + MP4A + avcc_box(0x64, 0x00, 0x28)
    assert codecs_of_init(data) == "avc1.640028,mp4a.40.2"


def test_audio_only() -> None:
    assert codecs_of_init(PADDING + MP4A) == "mp4a.40.2"


def test_nothing_known() -> None:
    assert codecs_of_init(b"") == ""
    assert codecs_of_init(PADDING) == ""


def test_truncated_avcc_gives_no_video_codec() -> None:
    assert codecs_of_init(PADDING + b"\x00\x00\x00\x10avcC\x01\x64\x00") == ""
