"""Reading the playlists ffmpeg's HLS muxer writes next to its segments."""

from dataclasses import dataclass
from pathlib import Path

from chunkcast.domain.videos import Part


@dataclass(frozen=True)
class WrittenSegment:
    path: Path
    duration: float
    parts: tuple[Part, ...] = ()  # a live segment's fragments as LL-HLS parts


def read_written_segments(playlist: Path) -> list[WrittenSegment]:
    """The segments listed in an ffmpeg-written media playlist, in order, with their
    exact EXTINF durations. A missing playlist means ffmpeg wrote nothing."""
    if not playlist.exists():
        return []
    out: list[WrittenSegment] = []
    duration: float | None = None
    for line in playlist.read_text().splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:"):].split(",", 1)[0])
        elif line and not line.startswith("#") and duration is not None:
            out.append(WrittenSegment(playlist.parent / line, duration))
            duration = None
    return out
