"""The bitrate ladder: which renditions a source gets and which worker group encodes them."""

import math

import pytest

from chunkcast.domain.errors import InvalidInput
from chunkcast.domain.ladder import (
    Rendition,
    choose_ladder,
    parse_groups,
    renditions_for_group,
)


def sizes(renditions: list[Rendition]) -> list[tuple[str, int, int]]:
    return [(r.name, r.width, r.height) for r in renditions]


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (1920, 1080, [("240p", 426, 240), ("360p", 640, 360), ("480p", 854, 480),
                      ("720p", 1280, 720), ("1080p", 1920, 1080)]),
        (1280, 720, [("240p", 426, 240), ("360p", 640, 360), ("480p", 854, 480),
                     ("720p", 1280, 720)]),
        (1080, 1920, [("240p", 240, 426), ("360p", 360, 640), ("480p", 480, 854),
                      ("720p", 720, 1280), ("1080p", 1080, 1920)]),
        (641, 361, [("240p", 426, 240), ("360p", 640, 360)]),
        (160, 120, [("120p", 160, 120)]),
        (3840, 2160, [("240p", 426, 240), ("360p", 640, 360), ("480p", 854, 480),
                      ("720p", 1280, 720), ("1080p", 1920, 1080)]),
    ],
    ids=["1080p-landscape", "720p-landscape", "1080p-portrait", "odd-641x361", "tiny-160x120",
         "4k-capped-at-1080p"],
)
def test_ladder_sizes(width: int, height: int, expected: list[tuple[str, int, int]]) -> None:
    assert sizes(choose_ladder(width, height, 30.0)) == expected


def test_ladder_rates_follow_the_default_rungs() -> None:
    rates = [(r.name, r.video_kbps, r.audio_kbps) for r in choose_ladder(1920, 1080, 30.0)]
    assert rates == [("240p", 400, 96), ("360p", 800, 128), ("480p", 1400, 128),
                     ("720p", 2800, 128), ("1080p", 5000, 128)]


def test_tiny_source_gets_one_rendition_with_the_lowest_rung_rates() -> None:
    (only,) = choose_ladder(160, 120, 25.0)
    assert (only.name, only.width, only.height) == ("120p", 160, 120)
    assert (only.video_kbps, only.audio_kbps, only.fps) == (400, 96, 25.0)


def test_rotated_source_is_laid_out_as_portrait() -> None:
    # A phone clip stored as 1920x1080 with 90 degree rotation is displayed as 1080x1920.
    ladder = choose_ladder(1080, 1920, 30.0)
    assert all(r.height > r.width for r in ladder)
    assert sizes(ladder)[-1] == ("1080p", 1080, 1920)
    assert next(r for r in ladder if r.name == "720p").width == 720


@pytest.mark.parametrize(
    ("width", "height"),
    [(641, 361), (1081, 721), (1279, 719), (1920, 1080), (1080, 1920), (854, 481),
     (200, 150), (160, 120), (163, 123), (123, 163), (100, 75), (1923, 1080), (1080, 1923)],
)
def test_ladder_never_upscales_and_keeps_even_sizes(width: int, height: int) -> None:
    ladder = choose_ladder(width, height, 30.0)
    assert ladder, "at least one rendition is always chosen"
    for r in ladder:
        assert r.width % 2 == 0 and r.height % 2 == 0, r
        assert r.width <= width and r.height <= height, f"{r} upscales {width}x{height}"
        assert min(r.width, r.height) <= min(width, height)
        assert (r.height > r.width) == (height > width)
    heights = [min(r.width, r.height) for r in ladder]
    assert heights == sorted(heights)


@pytest.mark.parametrize(
    ("fps", "expected"),
    [(30.0, 30.0), (29.97, 29.97), (23.976, 23.976), (60.0, 60.0), (120.0, 60.0),
     (240.0, 60.0), (0.0, 30.0), (math.nan, 30.0), (math.inf, 30.0), (-25.0, 30.0)],
)
def test_ladder_frame_rate(fps: float, expected: float) -> None:
    assert {r.fps for r in choose_ladder(1280, 720, fps)} == {expected}


@pytest.mark.parametrize(("width", "height"), [(0, 720), (1280, 0), (-1, -1)])
def test_ladder_rejects_a_source_without_picture(width: int, height: int) -> None:
    with pytest.raises(InvalidInput):
        choose_ladder(width, height, 30.0)


def test_parse_groups_good_spec() -> None:
    assert parse_groups("hi=720p,1080p;lo=240p,360p,480p") == {
        "hi": ("720p", "1080p"),
        "lo": ("240p", "360p", "480p"),
    }


def test_parse_groups_tolerates_spaces_and_empty_parts() -> None:
    assert parse_groups(" hi = 720p , 1080p ;; lo=240p ; ") == {
        "hi": ("720p", "1080p"),
        "lo": ("240p",),
    }


def test_parse_groups_one_group_per_rung() -> None:
    spec = "g240=240p;g360=360p;g480=480p;g720=720p;g1080=1080p"
    assert list(parse_groups(spec).values()) == [("240p",), ("360p",), ("480p",), ("720p",),
                                                  ("1080p",)]


@pytest.mark.parametrize(
    "spec",
    [
        "hi",  # missing '='
        "hi:720p,1080p",  # missing '='
        "hi=720p;lo",  # one part missing '='
        "hi=4k",  # unknown rung
        "hi=720p,1440p",  # unknown rung
        "hi=720p,1080p;lo=240p,720p",  # duplicate rung across groups
        "all=240p,240p",  # duplicate rung inside a group
        "",  # empty
        " ; ; ",  # only separators
        "hi=",  # group without rungs
        "hi= , ",  # group without rungs
        "=720p",  # group without a name
        "9x=720p",  # name is not an identifier
    ],
)
def test_parse_groups_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(InvalidInput):
        parse_groups(spec)


def test_parse_groups_rejects_a_repeated_group_name() -> None:
    # Keeping only the last "a" would leave 240p and 360p in the ladder with no worker
    # group to encode them.
    with pytest.raises(InvalidInput):
        parse_groups("a=240p,360p;a=480p")


GROUPS = {"hi": ("720p", "1080p"), "lo": ("240p", "360p", "480p")}


def test_renditions_for_group_splits_the_ladder() -> None:
    ladder = choose_ladder(1920, 1080, 30.0)
    assert [r.name for r in renditions_for_group(ladder, GROUPS, "hi")] == ["720p", "1080p"]
    assert [r.name for r in renditions_for_group(ladder, GROUPS, "lo")] == ["240p", "360p",
                                                                            "480p"]


def test_renditions_for_group_can_be_empty_for_a_small_source() -> None:
    ladder = choose_ladder(854, 480, 30.0)
    assert renditions_for_group(ladder, GROUPS, "hi") == []
    assert [r.name for r in renditions_for_group(ladder, GROUPS, "lo")] == ["240p", "360p",
                                                                            "480p"]


@pytest.mark.parametrize(
    ("groups", "owner"),
    [
        ({"hi": ("720p", "1080p"), "lo": ("240p", "360p", "480p")}, "lo"),
        ({"a": ("1080p",), "b": ("360p",), "c": ("240p", "720p")}, "c"),
    ],
)
def test_tiny_source_rendition_belongs_to_the_lowest_rung_group(
    groups: dict[str, tuple[str, ...]], owner: str
) -> None:
    ladder = choose_ladder(160, 120, 30.0)
    for group in groups:
        expected = ["120p"] if group == owner else []
        assert [r.name for r in renditions_for_group(ladder, groups, group)] == expected


def test_every_rendition_belongs_to_exactly_one_group() -> None:
    groups = parse_groups("a=240p;b=360p,1080p;c=480p,720p")
    ladder = choose_ladder(1920, 1080, 30.0)
    owned = [r.name for g in groups for r in renditions_for_group(ladder, groups, g)]
    assert sorted(owned) == sorted(r.name for r in ladder)
