"""ffmpeg argv builders: pure functions from typed options to a list (never a shell string)."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chunkcast.domain.ladder import Rendition
from chunkcast.media.inputs import MediaInput

# Media time = source time + this offset. fMP4 written without edit lists (so that every
# chunk yields the same init segment) cannot hold negative timestamps, and B-frame reordering
# and AAC priming start slightly before the first frame; the offset keeps them positive.
TIMELINE_OFFSET_S = 1.0

# Options of the mp4 muxer inside the HLS muxer: no edit list (identical init segments),
# timestamps kept as given (``frag_discont`` writes each fragment's real decode time).
_FMP4_OPTIONS = "use_editlist=0:avoid_negative_ts=disabled:movflags=+frag_discont"

# A live chunk is encoded as one segment: its GOP and segment length are set this many
# segment lengths long so nothing inside the chunk starts a new one.
_WHOLE_INPUT_GOPS = 30


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
    ts_offset: float | None, opts: EncodeOptions, whole_input: bool = False,
    copy_audio: bool = False,
) -> list[str]:
    """Encoder and HLS/fMP4 muxer arguments for one rendition written below ``out_dir``.

    ``ts_offset`` None keeps the input's own timestamps. ``whole_input`` makes the input one
    segment with a keyframe only at its start (a live chunk, already cut at a keyframe).
    """
    gop = max(1, round(r.fps * opts.segment_seconds))
    args = [
        "-map", f"[v{index}]",
        "-c:v", "libx264", "-preset", opts.preset, "-profile:v", "high",
        "-b:v", f"{r.video_kbps}k", "-maxrate", f"{r.maxrate_kbps}k",
        "-bufsize", f"{r.bufsize_kbps}k",
    ]
    if whole_input:
        args += ["-g", str(gop * _WHOLE_INPUT_GOPS), "-sc_threshold", "0"]
    else:
        args += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
                 "-force_key_frames", f"expr:gte(t,n_forced*{opts.segment_seconds})"]
    if has_audio and copy_audio:
        args += ["-map", "0:a:0", "-c:a", "copy", "-bsf:a", "aac_adtstoasc"]
    elif has_audio:
        args += ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{r.audio_kbps}k", "-ac", "2",
                 "-ar", "48000"]
    if ts_offset is not None:
        args += ["-output_ts_offset", _num(ts_offset)]
    target = out_dir / r.name
    segment_time = opts.segment_seconds * (_WHOLE_INPUT_GOPS if whole_input else 1)
    args += [
        "-f", "hls", "-hls_time", str(segment_time), "-hls_playlist_type", "vod",
        "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_options", _FMP4_OPTIONS,
        "-start_number", str(first_seq),
        "-hls_segment_filename", str(target / "%08d.m4s"),
        str(target / "index.m3u8"),
    ]
    return args


def _head(ffmpeg: str, opts: EncodeOptions) -> list[str]:
    return [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", opts.loglevel, "-y"]


def live_chunk_argv(
    ffmpeg: str,
    chunk: MediaInput,
    renditions: Sequence[Rendition],
    out_dir: Path,
    *,
    has_audio: bool,
    copy_audio: bool,
    opts: EncodeOptions,
    seq: int,
) -> list[str]:
    """One live chunk (MPEG-TS cut at a keyframe by the broadcaster) into one segment per
    rendition, numbered ``seq``. The broadcaster's timestamps are kept (``-copyts``) so
    consecutive chunks join without gaps; its AAC is copied when it already fits, so audio
    runs on across chunk boundaries without the priming a new encode adds."""
    argv = [*_head(ffmpeg, opts), *chunk.ffmpeg_args(), "-copyts", "-i", chunk.url,
            "-filter_complex", filter_graph(renditions)]
    for i, r in enumerate(renditions):
        argv += rendition_output_args(r, i, out_dir, has_audio=has_audio, first_seq=seq,
                                      ts_offset=None, opts=opts, whole_input=True,
                                      copy_audio=copy_audio)
    return argv


def ladder_argv(
    ffmpeg: str,
    source: MediaInput,
    renditions: Sequence[Rendition],
    out_dir: Path,
    *,
    has_audio: bool,
    opts: EncodeOptions,
    window: InputRange | None = None,
    first_seq: int = 0,
) -> list[str]:
    """The whole command: decode ``source`` (read only as its format says) once, optionally
    a time ``window`` of it, and encode every rendition into ``out_dir/{rendition}/`` as fMP4
    HLS segments numbered from ``first_seq``."""
    argv = _head(ffmpeg, opts)
    if window is not None:
        argv += ["-ss", _num(window.start), "-t", _num(window.duration)]
    argv += [*source.ffmpeg_args(), "-i", source.url,
             "-filter_complex", filter_graph(renditions)]
    offset = (window.start if window is not None else 0.0) + TIMELINE_OFFSET_S
    for i, r in enumerate(renditions):
        argv += rendition_output_args(r, i, out_dir, has_audio=has_audio, first_seq=first_seq,
                                      ts_offset=offset, opts=opts)
    return argv
