"""HLS playlist rendering (RFC 8216): pure functions from segment lists to m3u8 text."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PlaylistPart:
    """A partial segment (RFC 8216bis EXT-X-PART): ``length`` bytes at ``offset`` of its
    segment's URI."""

    duration: float
    offset: int
    length: int
    independent: bool


@dataclass(frozen=True)
class PlaylistSegment:
    seq: int  # its Media Sequence Number
    duration: float
    uri: str
    program_date_time: str | None = None
    parts: tuple[PlaylistPart, ...] = ()


@dataclass(frozen=True)
class RenditionReport:
    """Where another rendition of the same stream stands (EXT-X-RENDITION-REPORT)."""

    uri: str
    last_msn: int
    last_part: int | None  # None: its last segment has no parts


@dataclass(frozen=True)
class LiveControl:
    """What makes a growing playlist a Low-Latency one (RFC 8216bis): blocking reload, delta
    updates and, when segments have parts, the parts of the latest ones.

    ``part_target``: the configured part length (see :func:`part_target`); ``next_uri``: the
    URI the next segment will have (its first part is hinted); ``skip``: the client asked for
    a delta update."""

    part_target: float
    next_uri: str | None = None
    reports: Sequence[RenditionReport] = ()
    skip: bool = False


# How late a segment may arrive after the one before it plus its own length (the jitter of
# cutting, uploading and transcoding its chunk) with a player at PART-HOLD-BACK still playing.
ARRIVAL_MARGIN_S = 0.5


def part_target(configured: float, segment_seconds: float) -> float:
    """The longest a part of a live segment may be (PART-TARGET): the configured length, or a
    third of the segment plus :data:`ARRIVAL_MARGIN_S` when that is longer. A segment's parts
    are published together, when its chunk is transcoded, so a player asking for the next
    part waits about a whole segment, and one PART-HOLD-BACK (three part targets) behind the
    newest part must still have media when the next segment arrives; hls.js also gives up on
    a blocking request after three part targets (or 0.8 target durations)."""
    return math.ceil(max(configured, (segment_seconds + ARRIVAL_MARGIN_S) / 3) * 1000) / 1000


def _target_duration(segments: Sequence[PlaylistSegment], floor: float | None) -> int:
    """EXT-X-TARGETDURATION: every EXTINF rounded to the nearest integer is at most this
    (RFC 8216 section 4.3.3.1); at least 1, and at least ``floor`` rounded up when given."""
    longest = max((s.duration for s in segments), default=floor or 1.0)
    target = math.floor(longest + 0.5)
    if floor is not None:
        target = max(target, math.ceil(floor - 1e-3))
    return max(target, 1)


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def hold_backs(target: int, part_target: float | None) -> tuple[float, float]:
    """HOLD-BACK and PART-HOLD-BACK of a live playlist: the RFC's minimum of three target
    durations, and three part targets (the RFC asks for at least two and recommends three;
    :func:`part_target` makes three of them a whole segment and a margin)."""
    return 3.0 * target, round(3 * part_target, 3) if part_target else 0.0


def skippable(segments: Sequence[PlaylistSegment], target: int) -> int:
    """How many entries (segments and the gaps between them) a delta update leaves out: those
    that start more than CAN-SKIP-UNTIL (six target durations) before the playlist's end."""
    entries = _entries(segments)
    total = sum(duration for _, duration, _ in entries)
    elapsed, skipped = 0.0, 0
    for _, duration, _ in entries:
        if total - elapsed <= 6 * target:
            break
        elapsed += duration
        skipped += 1
    return skipped


def _entries(segments: Sequence[PlaylistSegment]
             ) -> list[tuple[int, float, PlaylistSegment | None]]:
    """Every media sequence number from the first segment to the last, with its duration and
    segment (None: a gap, as long as the segment before it)."""
    out: list[tuple[int, float, PlaylistSegment | None]] = []
    previous: PlaylistSegment | None = None
    for s in segments:
        if previous is not None:
            out += [(m, previous.duration, None) for m in range(previous.seq + 1, s.seq)]
        out.append((s.seq, s.duration, s))
        previous = s
    return out


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    average_bandwidth: int
    width: int
    height: int
    codecs: str
    frame_rate: float


def render_master(variants: Sequence[Variant]) -> str:
    """Master playlist listing every rendition, lowest bandwidth first."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in sorted(variants, key=lambda v: v.bandwidth):
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={v.bandwidth},AVERAGE-BANDWIDTH={v.average_bandwidth},"
            f'RESOLUTION={v.width}x{v.height},FRAME-RATE={v.frame_rate:.3f},CODECS="{v.codecs}"'
        )
        lines.append(v.uri)
    return "\n".join(lines) + "\n"


def render_media(
    segments: Sequence[PlaylistSegment],
    init_uri: str,
    *,
    ended: bool,
    vod: bool,
    target_duration: float | None = None,
    event: bool = False,
    gap_uri: Callable[[int], str] | None = None,
    live: LiveControl | None = None,
) -> str:
    """Media playlist. ``vod`` marks PLAYLIST-TYPE:VOD, ``event`` PLAYLIST-TYPE:EVENT (a live
    playlist that only grows, for DVR); ``ended`` adds EXT-X-ENDLIST; ``live`` makes a
    growing playlist a Low-Latency one (see :class:`LiveControl`). The target duration comes
    from the segments listed (``target_duration``: a floor).

    ``segments`` must be in seq order. A hole in the numbering (a chunk that failed for good)
    is listed as EXT-X-GAP entries at ``gap_uri(seq)``, as long as the segment before it, so
    that every entry keeps its place in the media sequence (players count entries from
    EXT-X-MEDIA-SEQUENCE); without ``gap_uri`` it is only marked with EXT-X-DISCONTINUITY.
    """
    target = _target_duration(segments, target_duration)
    first = segments[0].seq if segments else 0
    entries = _entries(segments)
    holes = len(entries) != len(segments)
    skipped = skippable(segments, target) if live is not None and live.skip else 0
    has_parts = live is not None and any(s.parts for s in segments)
    version = 9 if skipped else 8 if holes and gap_uri else 7
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", f"#EXT-X-TARGETDURATION:{target}"]
    if live is not None:
        longest = max((s.duration for s in segments), default=float(target))
        part_seconds = max([part_target(live.part_target, longest)]
                           + [p.duration for s in segments for p in s.parts])
        hold_back, part_hold_back = hold_backs(target, part_seconds if has_parts else None)
        control = (f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
                   f"CAN-SKIP-UNTIL={_seconds(6.0 * target)},HOLD-BACK={_seconds(hold_back)}")
        if has_parts:
            control += f",PART-HOLD-BACK={_seconds(part_hold_back)}"
        lines.append(control)
        if has_parts:
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={_seconds(part_seconds)}")
    lines += [f"#EXT-X-MEDIA-SEQUENCE:{first}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if vod:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    elif event:
        lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
    lines.append(f'#EXT-X-MAP:URI="{init_uri}"')
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    # Parts are listed for the segments of the last three target durations (RFC 8216bis
    # section 6.2.2 lets older ones go).
    total = sum(duration for _, duration, _ in entries)
    start = 0.0
    previous: PlaylistSegment | None = None
    for index, (msn, duration, s) in enumerate(entries):
        begins, start = start, start + duration
        if index < skipped:
            previous = s or previous
            continue
        if s is None:
            if gap_uri is None:
                if previous is not None and previous.seq == msn - 1:
                    lines.append("#EXT-X-DISCONTINUITY")
            else:
                lines += ["#EXT-X-GAP", f"#EXTINF:{duration:.6f},", gap_uri(msn)]
            continue
        if s.program_date_time:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{s.program_date_time}")
        if has_parts and total - begins <= 3 * target + 1e-6:
            lines += [_part(s.uri, p) for p in s.parts]
        lines.append(f"#EXTINF:{s.duration:.6f},")
        lines.append(s.uri)
        previous = s
    if live is not None and has_parts and live.next_uri is not None and not ended:
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{live.next_uri}",BYTERANGE-START=0')
    for report in live.reports if live is not None else ():
        text = f'#EXT-X-RENDITION-REPORT:URI="{report.uri}",LAST-MSN={report.last_msn}'
        if report.last_part is not None and has_parts:
            text += f",LAST-PART={report.last_part}"
        lines.append(text)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _part(uri: str, p: PlaylistPart) -> str:
    independent = ",INDEPENDENT=YES" if p.independent else ""
    return (f"#EXT-X-PART:DURATION={p.duration:.6f},URI=\"{uri}\","
            f"BYTERANGE=\"{p.length}@{p.offset}\"{independent}")
