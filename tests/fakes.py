"""A fake prober and encoder (:mod:`chunkcast.ports.media`) for in-process service tests.

A "media file" here is a small JSON object, made by :func:`fake_media` and stored like any
upload or chunk: it says what a probe would find (container, duration, size, audio) and how
the file misbehaves (pictures ending before the declared duration, undecodable). The fake
encoder writes tiny init and segment files of the durations a real encode would produce.
Both apply the rules the real ones do: a source must be in an allowed container, a live chunk
must be MPEG-TS, an input is read only as the container it is given, and error messages name
no path. This lives under ``tests/``: the installed package cannot wire it by mistake.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from chunkcast.domain.errors import MediaError
from chunkcast.domain.ladder import Rendition
from chunkcast.domain.videos import Part
from chunkcast.media.hls import WrittenSegment
from chunkcast.media.inputs import ALLOWED_CONTAINERS, LIVE_CHUNK_FORMAT, MediaInput
from chunkcast.ports.media import ChunkKind, ChunkWindow, EncodedRendition, SourceInfo

FORMAT = "chunkcast-fake-media"
VIDEO_CODECS = "avc1.64001e"
AUDIO_CODECS = "mp4a.40.2"
# As the real probe: a declared duration may exceed the pictures by this much.
END_TOLERANCE_S = 2.0
END_TOLERANCE_SHARE = 0.05

UNREADABLE = ("not a readable video file: it is not a video in a supported container, "
              "or it is incomplete")
ENCODE_FAILED = "ffmpeg failed: the media could not be decoded or encoded (exit code 1)"


def fake_media(*, duration: float = 10.0, width: int = 640, height: int = 360,
               fps: float = 30.0, container: str = "mov", audio: str | None = "aac",
               audio_rate: int = 48000, audio_channels: int = 2,
               pictures_end: float | None = None, decodable: bool = True) -> bytes:
    """The bytes of a fake media file. ``pictures_end``: where the pictures really end (the
    declared ``duration`` by default); ``decodable=False`` makes every encode of it fail."""
    return json.dumps({
        "format": FORMAT, "container": container, "duration": duration, "width": width,
        "height": height, "fps": fps, "audio": audio, "audio_rate": audio_rate,
        "audio_channels": audio_channels,
        "pictures_end": duration if pictures_end is None else pictures_end,
        "decodable": decodable,
    }).encode()


def fake_chunk(duration: float = 2.0, **kwargs: Any) -> bytes:
    """A fake live chunk: MPEG-TS, AAC 48 kHz stereo unless told otherwise."""
    return fake_media(duration=duration, container=LIVE_CHUNK_FORMAT, **kwargs)


@dataclass(frozen=True)
class _Media:
    container: str
    duration: float
    width: int
    height: int
    fps: float
    audio: str | None
    audio_rate: int
    audio_channels: int
    pictures_end: float
    decodable: bool

    def info(self) -> SourceInfo:
        return SourceInfo(
            duration=self.duration, width=self.width, height=self.height, fps=self.fps,
            rotation=0, has_audio=self.audio is not None,
            audio_channels=self.audio_channels if self.audio else 0,
            audio_codec=self.audio or "", audio_rate=self.audio_rate if self.audio else 0,
            container=self.container)


async def _read(url: str, error: str) -> _Media:
    """The media file at ``url`` (a local store's path); MediaError(``error``) when it is
    not one."""
    try:
        body = json.loads(await anyio.Path(url).read_bytes())
        if body.pop("format") != FORMAT:
            raise ValueError("not fake media")
        return _Media(**body)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise MediaError(error) from exc


class FakeProber:
    """Probes fake media files; ``probed`` lists ``(kind, url)`` of every call."""

    def __init__(self) -> None:
        self.probed: list[tuple[str, str]] = []

    async def probe_source(self, url: str) -> SourceInfo:
        self.probed.append(("source", url))
        media = await _read(url, UNREADABLE)
        if media.container not in ALLOWED_CONTAINERS:
            raise MediaError("not a readable video file: its container is not supported")
        tolerance = max(END_TOLERANCE_S, media.duration * END_TOLERANCE_SHARE)
        if media.pictures_end < media.duration - tolerance:
            raise MediaError(f"the file says it lasts {media.duration:.1f} s but its pictures "
                             f"end at {media.pictures_end:.1f} s: it is truncated, damaged "
                             "or forged")
        return media.info()

    async def probe_live_chunk(self, url: str) -> SourceInfo:
        self.probed.append(("live", url))
        media = await _read(url, UNREADABLE)
        if media.container != LIVE_CHUNK_FORMAT:  # read as MPEG-TS, anything else fails
            raise MediaError(UNREADABLE)
        return media.info()


@dataclass(frozen=True)
class EncodeCall:
    """One call of :meth:`FakeEncoder.encode`, as it was asked."""

    source: MediaInput
    renditions: tuple[str, ...]
    kind: ChunkKind
    window: ChunkWindow
    first_seq: int
    segment_seconds: int
    has_audio: bool
    copy_audio: bool
    timeout_s: float


@dataclass
class FakeEncoder:
    """Writes ``init.mp4`` and ``%08d.m4s`` files (a few bytes each) below ``out_dir``.

    VOD: segments of ``segment_seconds`` covering the window, up to where the pictures end.
    Live: one segment as long as the chunk, in parts of ``part_seconds`` (the last shorter)
    covering its bytes, the first independent. An encode fails (MediaError, as a failed ffmpeg)
    when the input is not fake media, is read as another container than its own, is not
    decodable, or when its ``first_seq`` is in ``fail_first_seqs`` (a live chunk's seq);
    once only for a ``first_seq`` in ``fail_once_first_seqs`` (storage that went away
    mid-read and came back)."""

    fail_first_seqs: set[int] = field(default_factory=set)
    fail_once_first_seqs: set[int] = field(default_factory=set)
    calls: list[EncodeCall] = field(default_factory=list)
    part_seconds: float = 0.334

    async def encode(
        self, source: MediaInput, renditions: Sequence[Rendition], out_dir: Path, *,
        kind: ChunkKind, window: ChunkWindow, first_seq: int, segment_seconds: int,
        has_audio: bool, copy_audio: bool, timeout_s: float,
    ) -> list[EncodedRendition]:
        self.calls.append(EncodeCall(source, tuple(r.name for r in renditions), kind, window,
                                     first_seq, segment_seconds, has_audio, copy_audio,
                                     timeout_s))
        media = await _read(source.url, ENCODE_FAILED)
        if (media.container != source.format or not media.decodable
                or first_seq in self.fail_first_seqs):
            raise MediaError(ENCODE_FAILED)
        if first_seq in self.fail_once_first_seqs:
            self.fail_once_first_seqs.discard(first_seq)
            raise MediaError(ENCODE_FAILED)
        if kind == "live":
            durations = [media.pictures_end]
        else:
            end = min(window.start + window.duration, media.pictures_end)
            durations = _split(max(0.0, end - window.start), segment_seconds)
        codecs = VIDEO_CODECS + (f",{AUDIO_CODECS}" if has_audio else "")
        part_seconds = self.part_seconds if kind == "live" else None
        return [await _write(out_dir / r.name, r.name, first_seq, durations, codecs,
                             window.start, part_seconds) for r in renditions]


def _split(length: float, segment_seconds: int) -> list[float]:
    """Whole segments, then what is left (as an HLS muxer cutting at fixed keyframes)."""
    out: list[float] = []
    while length > 1e-6:
        out.append(round(float(min(segment_seconds, length)), 6))
        length -= segment_seconds
    return out


def fake_parts(size: int, duration: float, part_seconds: float) -> tuple[Part, ...]:
    """Parts of ``part_seconds`` (the last shorter) over a segment of ``size`` bytes, split
    evenly, the first independent (one keyframe per live segment)."""
    count = max(1, math.ceil(duration / part_seconds - 1e-9))
    bounds = [size * i // count for i in range(count + 1)]
    return tuple(Part(bounds[i], bounds[i + 1] - bounds[i],
                      round(min(part_seconds, duration - i * part_seconds), 6), i == 0)
                 for i in range(count))


async def _write(folder: Path, rendition: str, first_seq: int, durations: list[float],
                 codecs: str, start: float, part_seconds: float | None) -> EncodedRendition:
    await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
    init = folder / "init.mp4"
    if not durations:  # nothing to encode: like ffmpeg, write nothing
        return EncodedRendition(rendition, init, "", [], start)
    await anyio.Path(init).write_bytes(f"fake init {rendition}".encode())
    written = []
    for i, duration in enumerate(durations):
        path = folder / f"{first_seq + i:08d}.m4s"
        data = f"fake {rendition} {first_seq + i} {duration}".encode()
        if part_seconds is not None:  # at least a byte per part
            data = data.ljust(math.ceil(duration / part_seconds), b".")
        await anyio.Path(path).write_bytes(data)
        parts = () if part_seconds is None else fake_parts(len(data), duration, part_seconds)
        written.append(WrittenSegment(path, duration, parts))
    return EncodedRendition(rendition, init, codecs, written, start)
