"""Media tools: probing an input, and encoding one chunk into its renditions' segments.

ffmpeg and PyAV implement these in production (:mod:`chunkcast.adapters.media`); the tests of
the services use a fake. An implementation only reads inputs and writes files: the services
store what it wrote, record segments and publish events.

The security rules hold for every implementation: an input is read only as the one container
its :class:`MediaInput` names, with only its storage's protocols; a source's container must
be on the allow-list and its declared duration must match its pictures; an encode has a time
limit; and the message of a :class:`MediaError` is public, so it names no path or URL.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from chunkcast.domain.ladder import Rendition
from chunkcast.media.hls import WrittenSegment
from chunkcast.media.inputs import MediaInput

ChunkKind = Literal["live", "vod"]


@dataclass(frozen=True)
class SourceInfo:
    """What a probe found in an upload or a live chunk."""

    duration: float
    width: int  # as displayed: rotation applied
    height: int
    fps: float
    rotation: int
    has_audio: bool
    audio_channels: int
    audio_codec: str = ""
    audio_rate: int = 0
    container: str = ""  # the demuxer to force when reading it again (``-f``)

    @property
    def audio_passthrough(self) -> bool:
        """Audio already in the delivery format (AAC-LC, 48 kHz, at most stereo) is copied:
        chunks then join without the priming overlap a fresh AAC encode puts at each start."""
        return (self.has_audio and self.audio_codec == "aac" and self.audio_rate == 48000
                and 0 < self.audio_channels <= 2)


class Prober(Protocol):
    """Raises :class:`~chunkcast.domain.errors.MediaError` for an unusable input."""

    async def probe_source(self, url: str) -> SourceInfo:
        """An upload at ``url`` (from :meth:`ObjectStore.input_url`): read only as an
        allowed container, and refused when its pictures end well before the duration it
        declares."""

    async def probe_live_chunk(self, url: str) -> SourceInfo:
        """A live chunk at ``url``: read only as MPEG-TS (its duration may be unknown: 0)."""


@dataclass(frozen=True)
class ChunkWindow:
    """Where a chunk lies on its source's clock, in seconds. VOD: the range of the source to
    encode. Live: the whole chunk is encoded; ``start`` is its place on the stream's clock."""

    start: float
    duration: float


@dataclass(frozen=True)
class EncodedRendition:
    """What an encode wrote for one rendition below its ``out_dir``."""

    rendition: str
    init: Path  # the init segment (identical for every chunk of the rendition)
    codecs: str  # RFC 6381, read from the init segment ("" when nothing was written)
    segments: Sequence[WrittenSegment]  # in order, numbered from ``first_seq``
    start: float  # media time at which the first segment starts


class MediaEncoder(Protocol):
    async def encode(
        self, source: MediaInput, renditions: Sequence[Rendition], out_dir: Path, *,
        kind: ChunkKind, window: ChunkWindow, first_seq: int, segment_seconds: int,
        has_audio: bool, copy_audio: bool, timeout_s: float,
    ) -> list[EncodedRendition]:
        """Encode one chunk of ``source`` into every rendition, from one decode, as fMP4
        segments below ``out_dir/{rendition}/``: a VOD window as segments of
        ``segment_seconds``, a live chunk as one segment with its parts (LL-HLS: byte ranges
        of whole fragments, each lasting at most the encoder's part length), numbered from
        ``first_seq``. Media time is the source's clock: a VOD window's from 0, a live
        chunk's as the broadcaster stamped it.
        ``copy_audio`` copies the source's AAC instead of encoding it. Raises MediaError
        when the input cannot be decoded or the work takes longer than ``timeout_s``. One
        result per rendition, in the order given; a rendition may have fewer segments than
        the window asks for when the source ends early (the caller decides what that
        means)."""
