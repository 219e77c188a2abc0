"""HLS playlist rendering (RFC 8216): pure functions from segment lists to m3u8 text."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PlaylistSegment:
    seq: int
    duration: float
    uri: str
    program_date_time: str | None = None


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
) -> str:
    """Media playlist. ``vod`` marks PLAYLIST-TYPE:VOD, ``event`` PLAYLIST-TYPE:EVENT (a live
    playlist that only grows, for DVR); ``ended`` adds EXT-X-ENDLIST.

    ``segments`` must be in seq order. A hole in the numbering (a chunk that failed for good)
    is listed as EXT-X-GAP entries at ``gap_uri(seq)``, as long as the segment before it, so
    that every entry keeps its place in the media sequence (players count entries from
    EXT-X-MEDIA-SEQUENCE); without ``gap_uri`` it is only marked with EXT-X-DISCONTINUITY.
    """
    longest = max((s.duration for s in segments), default=target_duration or 2.0)
    target = math.ceil(max(longest, target_duration or 0.0) - 1e-3)
    first = segments[0].seq if segments else 0
    holes = bool(segments) and segments[-1].seq - first + 1 != len(segments)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{8 if holes and gap_uri else 7}",
        f"#EXT-X-TARGETDURATION:{max(target, 1)}",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    if vod:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    elif event:
        lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
    lines.append(f'#EXT-X-MAP:URI="{init_uri}"')
    previous: PlaylistSegment | None = None
    for s in segments:
        if previous is not None and s.seq != previous.seq + 1:
            if gap_uri is None:
                lines.append("#EXT-X-DISCONTINUITY")
            else:
                for missing in range(previous.seq + 1, s.seq):
                    lines += ["#EXT-X-GAP", f"#EXTINF:{previous.duration:.6f},",
                              gap_uri(missing)]
        if s.program_date_time:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{s.program_date_time}")
        lines.append(f"#EXTINF:{s.duration:.6f},")
        lines.append(s.uri)
        previous = s
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
