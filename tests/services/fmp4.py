"""The timing of fMP4 fragments (tfhd, tfdt, trun) and of the tracks of an init segment, read
as a browser's Media Source Extensions read them: a sample is presented at its decode time
plus its composition offset, which may be negative (trun version 1); no edit list applies.
For tests that check a timeline without a demuxer's own interpretation in between."""

from dataclasses import dataclass

from chunkcast.media.fragments import top_level_boxes

_CONTAINERS = (b"moov", b"trak", b"mdia", b"moof", b"traf")


def _children(data: bytes, path: tuple[bytes, ...]) -> list[bytes]:
    """The bodies of every box at ``path`` (e.g. ``(b"moof", b"traf")``) below ``data``."""
    found: list[bytes] = []
    for box in top_level_boxes(data):
        body = data[box.offset + 8:box.end]
        if box.type == path[0] and len(path) == 1:
            found.append(body)
        elif box.type == path[0] and box.type in _CONTAINERS:
            found += _children(body, path[1:])
    return found


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 4], "big")


def timescales(init: bytes) -> dict[int, tuple[str, int]]:
    """Track id -> (handler, e.g. "vide" or "soun"; timescale) of an init segment."""
    out: dict[int, tuple[str, int]] = {}
    for trak in _children(init, (b"moov", b"trak")):
        (tkhd,) = _children(trak, (b"tkhd",))
        track_id = _u32(tkhd, 20 if tkhd[0] == 1 else 12)
        (mdhd,) = _children(trak, (b"mdia", b"mdhd"))
        (hdlr,) = _children(trak, (b"mdia", b"hdlr"))
        out[track_id] = (hdlr[8:12].decode(), _u32(mdhd, 20 if mdhd[0] == 1 else 12))
    return out


@dataclass(frozen=True)
class TrackRun:
    """One track's samples in one fragment, in the track's timescale."""

    track_id: int
    decode_time: int
    durations: tuple[int, ...]
    offsets: tuple[int, ...]  # composition offsets (0 when the trun has none)

    @property
    def presented(self) -> list[int]:
        """Each sample's presentation time, in decode order."""
        times, at = [], self.decode_time
        for duration, offset in zip(self.durations, self.offsets, strict=True):
            times.append(at + offset)
            at += duration
        return times

    @property
    def end(self) -> int:
        return self.decode_time + sum(self.durations)


def track_runs(segment: bytes) -> list[TrackRun]:
    """Every track run of a media segment's fragments, in order."""
    runs = []
    for traf in _children(segment, (b"moof", b"traf")):
        (tfhd,) = _children(traf, (b"tfhd",))
        flags, track_id, at = int.from_bytes(tfhd[1:4], "big"), _u32(tfhd, 4), 8
        default_duration = None
        for flag, size in ((0x01, 8), (0x02, 4), (0x08, 4), (0x10, 4), (0x20, 4)):
            if flags & flag:
                if flag == 0x08:
                    default_duration = _u32(tfhd, at)
                at += size
        (tfdt,) = _children(traf, (b"tfdt",))
        decode_time = int.from_bytes(tfdt[4:12] if tfdt[0] == 1 else tfdt[4:8], "big")
        for trun in _children(traf, (b"trun",)):
            version, flags, count = trun[0], int.from_bytes(trun[1:4], "big"), _u32(trun, 4)
            at = 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
            durations, offsets = [], []
            for _ in range(count):
                duration, offset = default_duration, 0
                if flags & 0x100:
                    duration, at = _u32(trun, at), at + 4
                at += (4 if flags & 0x200 else 0) + (4 if flags & 0x400 else 0)
                if flags & 0x800:
                    offset = int.from_bytes(trun[at:at + 4], "big", signed=version == 1)
                    at += 4
                assert duration is not None, "a sample without a duration"
                durations.append(duration)
                offsets.append(offset)
            runs.append(TrackRun(track_id, decode_time, tuple(durations), tuple(offsets)))
            decode_time += sum(durations)
    return runs
