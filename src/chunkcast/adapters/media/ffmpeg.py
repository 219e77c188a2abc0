"""The encoder on ffmpeg: one supervised ffmpeg per chunk, argv from :mod:`chunkcast.media.argv`,
then what its HLS muxer wrote is read back."""

from collections.abc import Sequence
from pathlib import Path

import anyio

from chunkcast.domain.ladder import Rendition
from chunkcast.media.argv import (
    TIMELINE_OFFSET_S,
    EncodeOptions,
    InputRange,
    ladder_argv,
    live_chunk_argv,
)
from chunkcast.media.hls import read_written_segments
from chunkcast.media.inputs import MediaInput
from chunkcast.media.mp4 import codecs_of_init
from chunkcast.media.process import FfmpegFailed, run_ffmpeg
from chunkcast.ports.media import ChunkKind, ChunkWindow, EncodedRendition

INIT_NAME = "init.mp4"
PLAYLIST_NAME = "index.m3u8"


class FfmpegEncoder:
    """``ffmpeg``: the binary to run (see :func:`chunkcast.media.process.ffmpeg_path`);
    ``preset``: the x264 preset of every encode."""

    def __init__(self, ffmpeg: str, *, preset: str = "veryfast", loglevel: str = "error"
                 ) -> None:
        self._ffmpeg = ffmpeg
        self._preset = preset
        self._loglevel = loglevel

    def argv(
        self, source: MediaInput, renditions: Sequence[Rendition], out_dir: Path, *,
        kind: ChunkKind, window: ChunkWindow, first_seq: int, segment_seconds: int,
        has_audio: bool, copy_audio: bool,
    ) -> list[str]:
        """The command :meth:`encode` runs."""
        opts = EncodeOptions(preset=self._preset, segment_seconds=segment_seconds,
                             loglevel=self._loglevel)
        if kind == "live":
            return live_chunk_argv(self._ffmpeg, source, renditions, out_dir,
                                   has_audio=has_audio, copy_audio=copy_audio, opts=opts,
                                   seq=first_seq)
        return ladder_argv(self._ffmpeg, source, renditions, out_dir, has_audio=has_audio,
                           opts=opts, window=InputRange(window.start, window.duration),
                           first_seq=first_seq)

    async def encode(
        self, source: MediaInput, renditions: Sequence[Rendition], out_dir: Path, *,
        kind: ChunkKind, window: ChunkWindow, first_seq: int, segment_seconds: int,
        has_audio: bool, copy_audio: bool, timeout_s: float,
    ) -> list[EncodedRendition]:
        for r in renditions:
            (out_dir / r.name).mkdir(parents=True, exist_ok=True)
        await run_ffmpeg(self.argv(source, renditions, out_dir, kind=kind, window=window,
                                   first_seq=first_seq, segment_seconds=segment_seconds,
                                   has_audio=has_audio, copy_audio=copy_audio),
                         timeout_s=timeout_s)
        # A live chunk keeps the broadcaster's timestamps; a VOD window is written on the
        # source's clock moved by the timeline offset (see ladder_argv).
        start = window.start if kind == "live" else window.start + TIMELINE_OFFSET_S
        return [await _read_back(out_dir / r.name, r.name, start) for r in renditions]


async def _read_back(folder: Path, rendition: str, start: float) -> EncodedRendition:
    written = read_written_segments(folder / PLAYLIST_NAME)
    init = folder / INIT_NAME
    if not written:  # the window lies past the end of the source: nothing to read
        return EncodedRendition(rendition, init, "", [], start)
    if not init.is_file():
        raise FfmpegFailed("ffmpeg failed: it wrote segments without an init segment")
    codecs = codecs_of_init(await anyio.Path(init).read_bytes())
    return EncodedRendition(rendition, init, codecs, written, start)
