"""The encoder on ffmpeg: one supervised ffmpeg per chunk, argv from :mod:`chunkcast.media.argv`,
then what it wrote is read back: a VOD window's HLS segments as its HLS muxer lists them, a
live chunk's fragmented MP4 split into init segment, segment and parts."""

from collections.abc import Sequence
from pathlib import Path

import anyio

from chunkcast.domain.ladder import Rendition
from chunkcast.domain.playlists import part_target
from chunkcast.media.argv import (
    LIVE_FILE,
    EncodeOptions,
    InputRange,
    ladder_argv,
    live_chunk_argv,
)
from chunkcast.media.fragments import NotFragmented, read_fragmented
from chunkcast.media.hls import WrittenSegment, read_written_segments
from chunkcast.media.inputs import MediaInput
from chunkcast.media.mp4 import codecs_of_init
from chunkcast.media.process import FfmpegFailed, run_ffmpeg
from chunkcast.ports.media import ChunkKind, ChunkWindow, EncodedRendition

INIT_NAME = "init.mp4"
PLAYLIST_NAME = "index.m3u8"


class FfmpegEncoder:
    """``ffmpeg``: the binary to run (see :func:`chunkcast.media.process.ffmpeg_path`);
    ``preset``: the x264 preset of every encode; ``part_seconds``: the configured part length
    of live segments (LL-HLS): their parts last at most
    :func:`~chunkcast.domain.playlists.part_target` of it and the chunk's length."""

    def __init__(self, ffmpeg: str, *, preset: str = EncodeOptions.preset,
                 loglevel: str = EncodeOptions.loglevel,
                 part_seconds: float = EncodeOptions.part_seconds) -> None:
        self._ffmpeg = ffmpeg
        self._preset = preset
        self._loglevel = loglevel
        self._part_seconds = part_seconds

    def argv(
        self, source: MediaInput, renditions: Sequence[Rendition], out_dir: Path, *,
        kind: ChunkKind, window: ChunkWindow, first_seq: int, segment_seconds: int,
        has_audio: bool, copy_audio: bool,
    ) -> list[str]:
        """The command :meth:`encode` runs."""
        opts = EncodeOptions(preset=self._preset, segment_seconds=segment_seconds,
                             loglevel=self._loglevel,
                             part_seconds=part_target(self._part_seconds, window.duration))
        if kind == "live":
            return live_chunk_argv(self._ffmpeg, source, renditions, out_dir,
                                   has_audio=has_audio, copy_audio=copy_audio, opts=opts)
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
        # Both keep their source's clock: a live chunk the broadcaster's timestamps, a VOD
        # window the upload's (see ladder_argv).
        if kind == "live":
            parts = part_target(self._part_seconds, window.duration)
            return [await self._read_back_live(out_dir / r.name, r.name, first_seq,
                                               window.start, parts) for r in renditions]
        return [await _read_back(out_dir / r.name, r.name, window.start) for r in renditions]

    async def _read_back_live(self, folder: Path, rendition: str, seq: int, start: float,
                              part_seconds: float) -> EncodedRendition:
        """The rendition's file cut into the init segment and the segment (numbered ``seq``),
        the segment's parts measured on the way."""
        init = folder / INIT_NAME
        try:
            written = await anyio.to_thread.run_sync(read_fragmented, folder / LIVE_FILE,
                                                     part_seconds)
        except NotFragmented as exc:
            raise FfmpegFailed("ffmpeg failed: what it wrote is not a fragmented MP4") from exc
        if written is None:  # nothing to read: the chunk held no pictures
            return EncodedRendition(rendition, init, "", [], start)
        segment = folder / f"{seq:08d}.m4s"
        await anyio.Path(init).write_bytes(written.init)
        await anyio.Path(segment).write_bytes(written.segment)
        return EncodedRendition(rendition, init, codecs_of_init(written.init),
                                [WrittenSegment(segment, written.duration, written.parts)],
                                start)


async def _read_back(folder: Path, rendition: str, start: float) -> EncodedRendition:
    written = read_written_segments(folder / PLAYLIST_NAME)
    init = folder / INIT_NAME
    if not written:  # the window lies past the end of the source: nothing to read
        return EncodedRendition(rendition, init, "", [], start)
    if not init.is_file():
        raise FfmpegFailed("ffmpeg failed: it wrote segments without an init segment")
    codecs = codecs_of_init(await anyio.Path(init).read_bytes())
    return EncodedRendition(rendition, init, codecs, written, start)
