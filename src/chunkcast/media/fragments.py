"""A fragmented MP4 as ffmpeg's mp4 muxer writes a live segment: its init segment, its media
segment, and the Low-Latency HLS parts of that segment.

The file is ``ftyp`` + ``moov`` (the init), then ``moof`` + ``mdat`` pairs (the fragments).
Only the top-level boxes are walked here; which fragment holds which samples, and how long
those last, is read from the packets PyAV demuxes (each one knows its byte position).
"""

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from chunkcast.domain.videos import Part

_INIT_BOXES = frozenset({b"ftyp", b"moov", b"free", b"skip"})
_MEDIA_BOXES = frozenset({b"styp", b"sidx", b"moof", b"mdat", b"prft", b"emsg"})
# Durations are exact fractions of the tracks' time bases; the limit allows float noise.
_ROUNDING = Fraction(1, 10**9)


class NotFragmented(ValueError):
    """The file is not an init segment followed by fragments."""


@dataclass(frozen=True)
class Box:
    """A box at the top of a file: its type, where it starts, how long it is (header too)."""

    type: bytes
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class Sample:
    """One demuxed packet: where its bytes are, how long it lasts (seconds), of which kind."""

    pos: int
    duration: Fraction
    video: bool
    keyframe: bool


@dataclass(frozen=True)
class FragmentedFile:
    """What a fragmented MP4 holds: the init segment's bytes, the media segment's bytes (every
    fragment, nothing after the last), the segment's video duration and its parts."""

    init: bytes
    segment: bytes
    duration: float
    parts: tuple[Part, ...]


def top_level_boxes(data: bytes) -> list[Box]:
    """The boxes at the top of ``data``, in order (size 0: to the end; size 1: 64-bit)."""
    boxes: list[Box] = []
    at = 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        if size == 1:
            if at + 16 > len(data):
                raise NotFragmented("a box header is cut short")
            size = int.from_bytes(data[at + 8:at + 16], "big")
        elif size == 0:
            size = len(data) - at
        if size < 8 or at + size > len(data):
            raise NotFragmented(f"box {kind!r} at {at} runs past the end of the file")
        boxes.append(Box(kind, at, size))
        at += size
    return boxes


def split_boxes(boxes: Sequence[Box]) -> tuple[int, int] | None:
    """(end of the init segment, end of the last fragment), None when there is no fragment:
    the init is everything before the first media box, the segment runs from there to the
    end of the last ``mdat`` (a trailing ``mfra`` index is left out)."""
    kinds = [b.type for b in boxes]
    if b"moof" not in kinds:
        return None
    if b"moov" not in kinds or b"mdat" not in kinds:
        raise NotFragmented("fragments without a moov or an mdat")
    first_media = next(i for i, b in enumerate(boxes) if b.type in _MEDIA_BOXES)
    if any(b.type not in _INIT_BOXES for b in boxes[:first_media]):
        raise NotFragmented("unexpected boxes before the first fragment")
    last_mdat = max(i for i, b in enumerate(boxes) if b.type == b"mdat")
    return boxes[first_media].offset, boxes[last_mdat].end


def fragment_starts(boxes: Sequence[Box], segment_start: int) -> list[int]:
    """Where each fragment begins: at its ``moof``, the first at the segment's start (so a
    leading ``styp`` belongs to it)."""
    starts = [b.offset for b in boxes if b.type == b"moof"]
    return [segment_start, *starts[1:]]


@dataclass(frozen=True)
class _Run:
    """Consecutive fragments: their byte range, video duration and whether their first video
    sample is a keyframe (None: no video yet)."""

    start: int
    end: int
    duration: Fraction
    keyframe: bool | None

    def joined(self, after: "_Run") -> "_Run":
        first = self.keyframe if self.keyframe is not None else after.keyframe
        return _Run(self.start, after.end, self.duration + after.duration, first)


def parts_of(starts: Sequence[int], segment_start: int, segment_end: int,
             samples: Iterable[Sample], part_seconds: float) -> tuple[Part, ...]:
    """The parts of a segment whose fragments begin at ``starts``: each the longest run of
    consecutive fragments whose video lasts at most ``part_seconds``. A fragment without
    video (the audio left after the last picture) joins its neighbour; a fragment longer
    than ``part_seconds`` is a part by itself. Offsets count from the segment's first byte."""
    bounds = [*starts, segment_end]
    runs = [_Run(a, b, Fraction(0), None) for a, b in itertools.pairwise(bounds)]
    for s in sorted(samples, key=lambda s: s.pos):
        if s.video and segment_start <= s.pos < segment_end:
            i = bisect.bisect_right(starts, s.pos) - 1
            first = runs[i].keyframe if runs[i].keyframe is not None else s.keyframe
            runs[i] = _Run(runs[i].start, runs[i].end, runs[i].duration + s.duration, first)
    limit = Fraction(part_seconds) + _ROUNDING
    parts: list[_Run] = []
    for run in runs:
        if parts and (run.keyframe is None or parts[-1].keyframe is None
                      or parts[-1].duration + run.duration <= limit):
            parts[-1] = parts[-1].joined(run)
        else:
            parts.append(run)
    return tuple(Part(offset=p.start - segment_start, length=p.end - p.start,
                      duration=float(p.duration), independent=bool(p.keyframe))
                 for p in parts)


def read_samples(path: Path) -> list[Sample]:
    """Every packet of the file, as PyAV demuxes it (blocking: call it in a thread)."""
    samples: list[Sample] = []
    try:
        with av.open(str(path), format="mp4",
                     container_options={"protocol_whitelist": "file"}) as container:
            for packet in container.demux():
                if packet.size == 0 or packet.pos is None or packet.pos < 0:
                    continue
                duration = Fraction(packet.duration or 0) * Fraction(packet.time_base)
                samples.append(Sample(packet.pos, duration, packet.stream.type == "video",
                                      bool(packet.is_keyframe)))
    except av.FFmpegError as exc:
        raise NotFragmented(f"unreadable: {exc}") from exc
    return samples


def read_fragmented(path: Path, part_seconds: float) -> FragmentedFile | None:
    """Split the fragmented MP4 at ``path`` into init and segment, and cut the segment into
    parts of at most ``part_seconds`` (blocking: call it in a thread). None when the file
    holds no fragment (or is missing: nothing was written); NotFragmented for a file of
    another shape."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    boxes = top_level_boxes(data)
    bounds = split_boxes(boxes)
    if bounds is None:
        return None
    start, end = bounds
    samples = read_samples(path)
    parts = parts_of(fragment_starts(boxes, start), start, end, samples, part_seconds)
    duration = sum((s.duration for s in samples if s.video), Fraction(0))
    return FragmentedFile(data[:start], data[start:end], float(duration), parts)
