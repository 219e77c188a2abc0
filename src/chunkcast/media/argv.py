"""ffmpeg argv builders: pure functions from typed options to a list (never a shell string)."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chunkcast.domain.ladder import Rendition

# Media time = source time + this offset. fMP4 written without edit lists (so that every
# chunk yields the same init segment) cannot hold negative timestamps, and B-frame reordering
# and AAC priming start slightly before the first frame; the offset keeps them positive.
TIMELINE_OFFSET_S = 1.0

# Options of the mp4 muxer inside the HLS muxer: no edit list (identical init segments),
# timestamps kept as given (``frag_discont`` writes each fragment's real decode time).
_FMP4_OPTIONS = "use_editlist=0:avoid_negative_ts=disabled:movflags=+frag_discont"


@dataclass(frozen=True)
class EncodeOptions:
    """Encoder settings shared by every rendition of one transcode."""

    preset: str = "veryfast"
    segment_seconds: int = 2
    loglevel: str = "error"


@dataclass(frozen=True)
class InputRange:
    """Read ``duration`` seconds from ``start`` (accurate seek), and keep the source clock:
    output timestamps start at ``start + TIMELINE_OFFSET_S`` so consecutive chunks join
    without a gap or an overlap."""

    start: float
    duration: float


def _num(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def filter_graph(renditions: Sequence[Rendition]) -> str:
    """One decode, split once per rendition, each scaled to its size and frame rate."""
    labels = "".join(f"[s{i}]" for i in range(len(renditions)))
    chains = [f"[0:v:0]split={len(renditions)}{labels}"]
    for i, r in enumerate(renditions):
        chains.append(
            f"[s{i}]scale={r.width}:{r.height},setsar=1,fps={_num(r.fps)},format=yuv420p[v{i}]"
        )
    return ";".join(chains)


def rendition_output_args(
    r: Rendition, index: int, out_dir: Path, *, has_audio: bool, first_seq: int,
    ts_offset: float, opts: EncodeOptions
) -> list[str]:
    """Encoder and HLS/fMP4 muxer arguments for one rendition written below ``out_dir``."""
    gop = max(1, round(r.fps * opts.segment_seconds))
    args = [
        "-map", f"[v{index}]",
        "-c:v", "libx264", "-preset", opts.preset, "-profile:v", "high",
        "-b:v", f"{r.video_kbps}k", "-maxrate", f"{round(r.video_kbps * 1.07)}k",
        "-bufsize", f"{round(r.video_kbps * 1.5)}k",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{opts.segment_seconds})",
    ]
    if has_audio:
        args += ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{r.audio_kbps}k", "-ac", "2",
                 "-ar", "48000"]
    target = out_dir / r.name
    args += [
        "-output_ts_offset", _num(ts_offset),
        "-f", "hls", "-hls_time", str(opts.segment_seconds), "-hls_playlist_type", "vod",
        "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_options", _FMP4_OPTIONS,
        "-start_number", str(first_seq),
        "-hls_segment_filename", str(target / "%08d.m4s"),
        str(target / "index.m3u8"),
    ]
    return args


def ladder_argv(
    ffmpeg: str,
    source: str,
    renditions: Sequence[Rendition],
    out_dir: Path,
    *,
    has_audio: bool,
    opts: EncodeOptions,
    window: InputRange | None = None,
    first_seq: int = 0,
) -> list[str]:
    """The whole command: decode ``source`` once (optionally a time ``window`` of it) and
    encode every rendition into ``out_dir/{rendition}/`` as fMP4 HLS segments numbered from
    ``first_seq``."""
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", opts.loglevel, "-y"]
    if window is not None:
        argv += ["-ss", _num(window.start), "-t", _num(window.duration)]
    argv += ["-i", source, "-filter_complex", filter_graph(renditions)]
    offset = (window.start if window is not None else 0.0) + TIMELINE_OFFSET_S
    for i, r in enumerate(renditions):
        argv += rendition_output_args(r, i, out_dir, has_audio=has_audio, first_seq=first_seq,
                                      ts_offset=offset, opts=opts)
    return argv
