"""ffmpeg argv of the live broadcaster: one real-time encode cut into MPEG-TS chunks.

Pure functions from typed options to a list (never a shell string). The chunks are closed
at keyframes by the segment muxer, which prints one CSV line per closed chunk
(``name,start,end`` in seconds) to ``segment_list``: that line is how the broadcaster learns
that a chunk can be uploaded.
"""

import enum
from dataclasses import dataclass
from pathlib import Path

from chunkcast.media.argv import TIMELINE_OFFSET_S

TESTSRC = "testsrc"
TESTSRC_WIDTH, TESTSRC_HEIGHT, TESTSRC_FPS = 1280, 720, 30
CHUNK_NAME = "%08d.ts"

# ``-readrate_initial_burst 0`` means "the default" (0.5 s) to ffmpeg, so 1 ms stands for
# "no burst": every frame is then read when its timestamp comes due on the wall clock, which
# is what makes the capture time of a frame computable from its timestamp.
_NO_BURST = "0.001"

# With audio, the encode's first packet (list time 0) is the AAC encoder's priming: one frame
# of 1024 samples at 48 kHz, before the first picture.
AUDIO_PRIMING_S = 1024 / 48000

# Contribution bitrates (capped VBR, one-chunk buffer): generous, since the platform
# re-encodes every chunk into its ladder. Keyed by the largest height they fit.
_VIDEO_KBPS = ((360, 1200), (480, 2000), (720, 4500), (1080, 7000))
_VIDEO_KBPS_ABOVE_1080 = 12000


class SourceKind(enum.Enum):
    """How a source is read: files and the test pattern are paced by ``-re``; live inputs
    (URLs, devices) arrive in real time by themselves."""

    FILE = "file"
    TESTSRC = "testsrc"
    LIVE = "live"


def source_kind(source: str) -> SourceKind:
    """``testsrc``, a URL (``rtmp://``, ``srt://`` …; ``file:`` counts as a file), a device
    under ``/dev/``, or else a file path."""
    if source == TESTSRC:
        return SourceKind.TESTSRC
    scheme, sep, _ = source.partition("://")
    if sep and scheme.isalnum() and scheme.lower() != "file":
        return SourceKind.LIVE
    if source.startswith("/dev/"):
        return SourceKind.LIVE
    return SourceKind.FILE


@dataclass(frozen=True)
class BroadcastOptions:
    """What the broadcast encode depends on besides the source itself."""

    chunk_seconds: int = 1
    loop: bool = False  # files only: start again at the end, forever
    fps: float = TESTSRC_FPS  # sets the GOP length; the caller probes files, assumes for live
    height: int | None = None  # source height when known; picks the bitrate
    font: Path | None = None  # testsrc only: burn in the wall clock with this font
    input_options: tuple[str, ...] = ()  # extra ffmpeg options placed before ``-i``
    rw_timeout_s: float = 10.0  # network inputs: give up when nothing arrives for this long
    loglevel: str = "error"
    has_audio: bool = True  # files: probed; the test pattern has; live inputs: assumed
    # Media time of the first packet in the chunk files: the timeline offset for a new
    # stream; for a broadcast that resumes one, see resumed_timeline_start.
    timeline_start_s: float = TIMELINE_OFFSET_S


def resumed_timeline_start(next_pts: float, *, has_audio: bool) -> float:
    """``timeline_start_s`` of a broadcast continuing a stream whose media timeline ends at
    ``next_pts``: its first picture lands exactly there, right after the last one sent
    (its audio priming, when it has audio, overlaps the end of the stream's audio)."""
    if next_pts <= 0:
        return TIMELINE_OFFSET_S  # nothing to continue
    return max(TIMELINE_OFFSET_S, next_pts - (AUDIO_PRIMING_S if has_audio else 0.0))


def video_kbps(height: int | None) -> int:
    """Video bitrate (and maxrate) for a source ``height`` pixels high; unknown = 1080p."""
    if height is None:
        height = 1080
    for limit, kbps in _VIDEO_KBPS:
        if height <= limit:
            return kbps
    return _VIDEO_KBPS_ABOVE_1080


def _num(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def _filter_quote(args: str) -> str:
    """Quote a filter's whole argument string for the filtergraph parser, so that the
    commas and backslashes inside it reach the filter's own option parser unchanged."""
    return "'" + args.replace("'", "'\\''") + "'"


def _option_escape(value: str) -> str:
    """Escape one ``key=value`` option value for a filter's option parser."""
    return value.replace("\\", "\\\\").replace("'", "\\'").replace(":", "\\:")


def clock_filter(font: Path) -> str:
    """drawtext burning in the local wall clock with milliseconds (``%3N``) at the moment
    the frame is filtered, i.e. right after ``-re`` released it: what a viewer compares
    with their own clock to see the glass-to-glass latency."""
    # drawtext itself splits %{function:arg} on ':', hence the escaped colons in the
    # strftime format; _option_escape adds the option-parser level on top.
    text = "%{localtime:%H\\:%M\\:%S.%3N}"
    args = ":".join([
        f"fontfile={_option_escape(str(font))}",
        f"text={_option_escape(text)}",
        "fontsize=64", "fontcolor=white", "box=1", "boxcolor=black@0.6", "boxborderw=16",
        "x=(w-text_w)/2", "y=h-text_h-48",
    ])
    return f"drawtext={_filter_quote(args)}"


def video_filter(kind: SourceKind, opts: BroadcastOptions) -> str:
    """Even dimensions no taller than 1080 (x264 needs even sizes for 4:2:0; the ladder
    tops out at 1080p), 4:2:0 pixels, and the clock on the test pattern."""
    if kind is SourceKind.TESTSRC:
        chain = [clock_filter(opts.font)] if opts.font is not None else []
    else:
        chain = ["scale=trunc(iw*min(1\\,1080/ih)/2)*2:trunc(min(ih\\,1080)/2)*2"]
    return ",".join([*chain, "format=yuv420p"])


def input_args(source: str, kind: SourceKind, opts: BroadcastOptions) -> list[str]:
    """Everything up to and including ``-i``."""
    if kind is SourceKind.TESTSRC:
        graph = (f"testsrc2=size={TESTSRC_WIDTH}x{TESTSRC_HEIGHT}:rate={TESTSRC_FPS}[out0];"
                 "sine=frequency=1000:sample_rate=48000[out1]")
        return ["-re", "-readrate_initial_burst", _NO_BURST, *opts.input_options,
                "-f", "lavfi", "-i", graph]
    if kind is SourceKind.FILE:
        loop = ["-stream_loop", "-1"] if opts.loop else []
        return ["-re", "-readrate_initial_burst", _NO_BURST, *loop, *opts.input_options,
                "-i", source]
    network = "://" in source
    timeout = ["-rw_timeout", str(round(opts.rw_timeout_s * 1_000_000))] if network else []
    return [*timeout, *opts.input_options, "-i", source]


def encode_args(kind: SourceKind, opts: BroadcastOptions) -> list[str]:
    """H.264 without B-frames (``zerolatency``: a chunk's frames are all out when it
    closes) with exactly one keyframe per chunk, and AAC-LC stereo 48 kHz."""
    gop = str(max(1, round(opts.fps * opts.chunk_seconds)))
    height = TESTSRC_HEIGHT if kind is SourceKind.TESTSRC else opts.height
    kbps = f"{video_kbps(height)}k"
    return [
        "-map", "0:v:0", "-map", "0:a:0?",
        "-vf", video_filter(kind, opts),
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
        "-b:v", kbps, "-maxrate", kbps, "-bufsize", kbps,
        "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{opts.chunk_seconds})",
        "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000",
    ]


def segment_args(out_dir: Path, chunk_seconds: int, segment_list: str, *,
                 timeline_start: float = TIMELINE_OFFSET_S) -> list[str]:
    """MPEG-TS chunks ``out_dir/%08d.ts`` cut at the first keyframe after each
    ``chunk_seconds``, timestamps running on from chunk to chunk.

    The list's times count from the first packet (0); the files hold the same times plus
    ``timeline_start`` (``initial_offset``, with the MPEG-TS muxer told not to add its own
    delay): at least ``TIMELINE_OFFSET_S``, the headroom the transcoder needs for its
    encoder delays, or where the stream's timeline ended when a broadcast resumes it."""
    return [
        "-f", "segment", "-segment_format", "mpegts",
        "-segment_format_options", "mpegts_copyts=1",
        "-initial_offset", _num(timeline_start),
        "-segment_time", str(chunk_seconds), "-reset_timestamps", "0",
        "-segment_list", segment_list, "-segment_list_type", "csv",
        str(out_dir / CHUNK_NAME),
    ]


def broadcast_argv(
    ffmpeg: str,
    source: str,
    out_dir: Path,
    opts: BroadcastOptions,
    *,
    segment_list: str = "pipe:1",
    progress: str = "pipe:2",
) -> list[str]:
    """The whole broadcaster command: read ``source`` in real time, encode, and write
    closed chunks to ``out_dir``, announcing each on ``segment_list`` (CSV) while
    ``-progress`` reports go to ``progress`` ten times a second."""
    kind = source_kind(source)
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", opts.loglevel, "-y",
        *input_args(source, kind, opts),
        *encode_args(kind, opts),
        "-progress", progress, "-stats_period", "0.1",
        *segment_args(out_dir, opts.chunk_seconds, segment_list,
                      timeline_start=opts.timeline_start_s),
    ]
