"""ffmpeg argv builders: pure functions from typed options to a list (never a shell string)."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chunkcast.domain.ladder import Rendition
from chunkcast.media.inputs import MediaInput

# Where a live stream's timeline starts (the broadcaster's and the ingest's chunks): room
# before its first picture for the contribution encoder's AAC priming. An upload needs none:
# its media time is its source's time, from 0. Composition offsets may be negative, so
# B-frames need no room before the first picture, and the first window drops its AAC
# priming (see _DROP_BELOW_ZERO; an edit list that would keep it differs from window to
# window, and hls.js ignores edit lists).
TIMELINE_OFFSET_S = 1.0

# fMP4 without an edit list, so that every chunk yields the same init segment; timestamps kept
# as given (``frag_discont``: each fragment carries its real decode time); and composition
# offsets that may be negative, so that a fragment's decode time is the presentation time of
# its first picture: with B-frames the keyframe would otherwise be decoded before it is shown,
# and players see a hole at the start of every segment.
_FMP4_FLAGS = "+frag_discont+negative_cts_offsets"
# ... as options of the mp4 muxer inside the HLS muxer (VOD).
_FMP4_OPTIONS = f"use_editlist=0:avoid_negative_ts=disabled:movflags={_FMP4_FLAGS}"
# ... for the mp4 muxer writing a live segment as one file: the init (written once the first
# fragment is complete, when every codec setting is known), then fragments of about a part
# each; no index boxes (sidx, mfra), which the parts would have to skip.
_LIVE_FLAGS = f"{_FMP4_FLAGS}+empty_moov+delay_moov+default_base_moof+skip_sidx+skip_trailer"

# The AAC encoder's first packet (its priming) lies one frame (21 ms) before the first sample:
# below zero in a window at the source's start, a decode time fMP4 cannot hold. That packet
# is dropped there, so the audio starts with the source's first sample (the decoder, missing
# the frame before it, fades its first milliseconds in). Later windows keep theirs.
_DROP_BELOW_ZERO = "noise=drop=lt(pts\\,0)"

# A live chunk is encoded as one segment: its GOP is set this many segment lengths long so
# nothing inside the chunk starts a new one.
_WHOLE_INPUT_GOPS = 30
# The file a live chunk's rendition is written to (see live_chunk_argv).
LIVE_FILE = "chunk.mp4"


@dataclass(frozen=True)
class EncodeOptions:
    """Encoder settings shared by every rendition of one transcode."""

    preset: str = "veryfast"
    segment_seconds: int = 2
    loglevel: str = "error"
    part_seconds: float = 0.334  # a live segment's parts (LL-HLS) last at most this long


@dataclass(frozen=True)
class InputRange:
    """Read ``duration`` seconds from ``start`` (accurate seek), and keep the source clock:
    output timestamps start at ``start`` so consecutive chunks join without a gap or an
    overlap."""

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


def fragment_us(part_seconds: float, fps: float) -> int:
    """``-frag_duration`` (µs) for fragments of at most ``part_seconds`` at ``fps``: just under
    the whole frames that fit. The muxer starts a new fragment with the first picture at
    least this long after the fragment's first, so a fragment never holds one more."""
    frames = max(1, math.floor(part_seconds * fps + 1e-9))
    return max(1, math.floor(frames * 1_000_000 / fps))


def _encoder_args(r: Rendition, index: int, *, has_audio: bool, copy_audio: bool,
                  opts: EncodeOptions, whole_input: bool) -> list[str]:
    gop = max(1, round(r.fps * opts.segment_seconds))
    args = [
        "-map", f"[v{index}]",
        "-c:v", "libx264", "-preset", opts.preset, "-profile:v", "high",
        "-b:v", f"{r.video_kbps}k", "-maxrate", f"{r.maxrate_kbps}k",
        "-bufsize", f"{r.bufsize_kbps}k",
        # B-frames in a fixed pattern: the deepest reordering then occurs within the first
        # pictures after every keyframe. A demuxer that infers a presentation delay from the
        # most negative composition offset seen so far (ffmpeg's, without an edit list)
        # settles on it in the first fragment instead of moving it, a frame, mid-stream.
        "-b_strategy", "0",
    ]
    if whole_input:
        args += ["-g", str(gop * _WHOLE_INPUT_GOPS), "-sc_threshold", "0"]
    else:
        args += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
                 "-force_key_frames", f"expr:gte(t,n_forced*{opts.segment_seconds})"]
    if has_audio and copy_audio:
        # The rung's nominal bitrate, declared in the init segment so that it is the same
        # for every chunk: left to itself the muxer writes what it guessed from this one.
        args += ["-map", "0:a:0", "-c:a", "copy", "-bsf:a", "aac_adtstoasc",
                 "-b:a", f"{r.audio_kbps}k"]
    elif has_audio:
        args += ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{r.audio_kbps}k", "-ac", "2",
                 "-ar", "48000"]
    return args


def rendition_output_args(
    r: Rendition, index: int, out_dir: Path, *, has_audio: bool, first_seq: int,
    ts_offset: float, opts: EncodeOptions,
) -> list[str]:
    """Encoder and HLS/fMP4 muxer arguments for one rendition of a VOD window, written below
    ``out_dir`` with timestamps moved by ``ts_offset``."""
    args = _encoder_args(r, index, has_audio=has_audio, copy_audio=False, opts=opts,
                         whole_input=False)
    if has_audio and ts_offset <= 0:
        args += ["-bsf:a", _DROP_BELOW_ZERO]
    target = out_dir / r.name
    # Timestamps as they are: the HLS muxer would otherwise move both tracks later so that
    # the first decode times (before the first picture, until the mp4 muxer moves them to
    # it) are not negative.
    args += [
        "-output_ts_offset", _num(ts_offset), "-avoid_negative_ts", "disabled",
        "-f", "hls", "-hls_time", str(opts.segment_seconds), "-hls_playlist_type", "vod",
        "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_options", _FMP4_OPTIONS,
        "-start_number", str(first_seq),
        "-hls_segment_filename", str(target / "%08d.m4s"),
        str(target / "index.m3u8"),
    ]
    return args


def live_output_args(r: Rendition, index: int, out_file: Path, *, has_audio: bool,
                     copy_audio: bool, opts: EncodeOptions) -> list[str]:
    """Encoder and mp4 muxer arguments for one rendition of a live chunk: one keyframe, at
    its start, and fragments of at most ``opts.part_seconds`` in ``out_file`` (init first)."""
    args = _encoder_args(r, index, has_audio=has_audio, copy_audio=copy_audio, opts=opts,
                         whole_input=True)
    return [*args, "-avoid_negative_ts", "disabled",
            "-f", "mp4", "-use_editlist", "0", "-movflags", _LIVE_FLAGS,
            "-frag_duration", str(fragment_us(opts.part_seconds, r.fps)), str(out_file)]


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
) -> list[str]:
    """One live chunk (MPEG-TS cut at a keyframe by the broadcaster) into one fragmented MP4
    per rendition, ``out_dir/{rendition}/{LIVE_FILE}``: its init segment, then the segment
    as fragments of about a part each. The broadcaster's timestamps are kept (``-copyts``)
    so consecutive chunks join without gaps; its AAC is copied when it already fits, so audio
    runs on across chunk boundaries without the priming a new encode adds."""
    argv = [*_head(ffmpeg, opts), *chunk.ffmpeg_args(), "-copyts", "-i", chunk.url,
            "-filter_complex", filter_graph(renditions)]
    for i, r in enumerate(renditions):
        argv += live_output_args(r, i, out_dir / r.name / LIVE_FILE, has_audio=has_audio,
                                 copy_audio=copy_audio, opts=opts)
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
    HLS segments numbered from ``first_seq``, on the source's clock."""
    argv = _head(ffmpeg, opts)
    start = window.start if window is not None else 0.0
    if window is not None:
        # No seek to the very start: ffmpeg then shifts a source's primed AAC one frame late.
        argv += ["-ss", _num(start)] if start > 0 else []
        argv += ["-t", _num(window.duration)]
    argv += [*source.ffmpeg_args(), "-i", source.url,
             "-filter_complex", filter_graph(renditions)]
    for i, r in enumerate(renditions):
        argv += rendition_output_args(r, i, out_dir, has_audio=has_audio, first_seq=first_seq,
                                      ts_offset=start, opts=opts)
    return argv
