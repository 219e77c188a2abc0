"""Cutting a fragmented MP4 into init segment, segment and parts, on made-up boxes and
samples (the real ffmpeg's output is checked in tests/services/test_parts.py)."""

from fractions import Fraction

import pytest

from chunkcast.domain.videos import Part
from chunkcast.media.fragments import (
    Box,
    NotFragmented,
    Sample,
    fragment_starts,
    parts_of,
    split_boxes,
    top_level_boxes,
)

FRAME = Fraction(1, 30)


def box(kind: bytes, body_size: int = 0) -> bytes:
    return (8 + body_size).to_bytes(4, "big") + kind + bytes(body_size)


def test_top_level_boxes_in_order_with_their_sizes() -> None:
    large = (1).to_bytes(4, "big") + b"mdat" + (20).to_bytes(8, "big") + bytes(4)
    data = box(b"ftyp", 8) + box(b"moov", 100) + box(b"moof", 30) + large
    assert top_level_boxes(data) == [Box(b"ftyp", 0, 16), Box(b"moov", 16, 108),
                                     Box(b"moof", 124, 38), Box(b"mdat", 162, 20)]
    to_the_end = (0).to_bytes(4, "big") + b"mdat" + bytes(5)
    assert top_level_boxes(box(b"moof") + to_the_end)[-1] == Box(b"mdat", 8, 13)


@pytest.mark.parametrize("data", [box(b"moof", 10)[:-1], (4).to_bytes(4, "big") + b"moof"])
def test_a_box_running_past_the_end_is_refused(data: bytes) -> None:
    with pytest.raises(NotFragmented):
        top_level_boxes(data)


def test_the_segment_runs_from_the_first_fragment_to_the_last_mdat() -> None:
    boxes = top_level_boxes(box(b"ftyp", 8) + box(b"moov", 40) + box(b"styp", 8)
                            + box(b"moof", 20) + box(b"mdat", 50) + box(b"moof", 20)
                            + box(b"mdat", 30) + box(b"mfra", 16))
    start, end = split_boxes(boxes) or (0, 0)
    assert (start, end) == (64, 64 + 16 + 28 + 58 + 28 + 38)
    assert fragment_starts(boxes, start) == [64, 64 + 16 + 28 + 58]  # styp is the first's


def test_an_init_without_fragments_is_nothing_and_other_shapes_are_refused() -> None:
    assert split_boxes(top_level_boxes(box(b"ftyp") + box(b"moov"))) is None
    with pytest.raises(NotFragmented):
        split_boxes(top_level_boxes(box(b"ftyp") + box(b"mdat") + box(b"moof") + box(b"mdat")))
    with pytest.raises(NotFragmented):
        split_boxes(top_level_boxes(box(b"ftyp") + box(b"moof") + box(b"mdat")))


def video(pos: int, frames: int = 1, keyframe: bool = False) -> Sample:
    return Sample(pos, frames * FRAME, True, keyframe)


def audio(pos: int) -> Sample:
    return Sample(pos, Fraction(1024, 48000), False, True)


def test_each_fragment_of_a_part_length_is_a_part_and_audio_left_over_joins_the_last() -> None:
    # Fragments at 100, 200, 300 hold 10 pictures each (the first a keyframe); the one at
    # 400 only the audio that outlasts the pictures.
    samples = [video(100 + 10 + i, keyframe=i == 0) for i in range(10)]
    samples += [video(200 + 10 + i) for i in range(10)] + [video(300 + 10 + i) for i in range(10)]
    samples += [audio(150), audio(250), audio(350), audio(410), audio(420)]
    assert parts_of([100, 200, 300, 400], 100, 450, samples, 0.334) == (
        Part(0, 100, 1 / 3, True), Part(100, 100, 1 / 3, False), Part(200, 150, 1 / 3, False))


def test_short_fragments_are_joined_up_to_the_part_length_and_a_long_one_stands_alone() -> None:
    samples = [video(0, 5, keyframe=True), video(100, 5), video(200, 5), video(300, 12),
               video(400, 2)]
    parts = parts_of([0, 100, 200, 300, 400], 0, 500, samples, 0.334)
    assert [(p.offset, p.length, round(p.duration * 30), p.independent) for p in parts] == [
        (0, 200, 10, True), (200, 100, 5, False), (300, 100, 12, False), (400, 100, 2, False)]


def test_a_segment_starting_with_audio_only_joins_it_to_the_first_pictures() -> None:
    samples = [audio(10), video(110, 10, keyframe=True), video(210, 10)]
    assert parts_of([0, 100, 200], 0, 300, samples, 0.334) == (
        Part(0, 200, 1 / 3, True), Part(200, 100, 1 / 3, False))
