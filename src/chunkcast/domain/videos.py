"""Videos and their life cycle."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from chunkcast.domain.errors import Conflict
from chunkcast.domain.ladder import Rendition


class VideoKind(StrEnum):
    VOD = "vod"
    LIVE = "live"


class VideoStatus(StrEnum):
    CREATED = "created"  # waiting for the upload
    UPLOADED = "uploaded"  # source stored, waiting for the splitter
    PROCESSING = "processing"  # chunks are being transcoded
    READY = "ready"
    FAILED = "failed"
    IDLE = "idle"  # live: no chunk yet
    LIVE = "live"
    ENDED = "ended"

    # The one home of every rule about statuses; the API gives the JS the answers too.
    @property
    def is_open(self) -> bool:
        """Work is still to come: the video may still fail."""
        return self in _OPEN

    @property
    def is_broadcasting(self) -> bool:
        """A stream that takes chunks (idle until the first one)."""
        return self in (VideoStatus.IDLE, VideoStatus.LIVE)

    @property
    def is_final(self) -> bool:
        """Nothing more will come: every segment there will be is there."""
        return self in (VideoStatus.READY, VideoStatus.ENDED, VideoStatus.FAILED)

    @property
    def is_playable(self) -> bool:
        """Players can start (a live stream, or a finished video)."""
        return self in (VideoStatus.READY, VideoStatus.LIVE, VideoStatus.ENDED)

    @property
    def is_complete(self) -> bool:
        """Plays from start to end: a ready upload or an ended stream (the library)."""
        return self in (VideoStatus.READY, VideoStatus.ENDED)

    @property
    def is_splittable(self) -> bool:
        """An upload the splitter may (still) cut into chunks."""
        return self in (VideoStatus.UPLOADED, VideoStatus.PROCESSING)

    @classmethod
    def complete_ones(cls) -> tuple["VideoStatus", ...]:
        return tuple(s for s in cls if s.is_complete)

    @classmethod
    def open_ones(cls) -> tuple["VideoStatus", ...]:
        return tuple(s for s in cls if s.is_open)


_OPEN = frozenset({VideoStatus.CREATED, VideoStatus.UPLOADED, VideoStatus.PROCESSING,
                   VideoStatus.IDLE, VideoStatus.LIVE})

_NEXT: dict[VideoStatus, frozenset[VideoStatus]] = {
    VideoStatus.CREATED: frozenset({VideoStatus.UPLOADED, VideoStatus.FAILED}),
    VideoStatus.UPLOADED: frozenset({VideoStatus.PROCESSING, VideoStatus.FAILED}),
    VideoStatus.PROCESSING: frozenset({VideoStatus.READY, VideoStatus.FAILED}),
    VideoStatus.READY: frozenset(),
    VideoStatus.FAILED: frozenset(),
    VideoStatus.IDLE: frozenset({VideoStatus.LIVE, VideoStatus.ENDED, VideoStatus.FAILED}),
    VideoStatus.LIVE: frozenset({VideoStatus.ENDED, VideoStatus.FAILED}),
    VideoStatus.ENDED: frozenset(),
}


def can_move(current: VideoStatus, new: VideoStatus) -> bool:
    """Whether the state machine allows ``current`` → ``new``."""
    return new in _NEXT[current]


def sources_of(new: VideoStatus) -> tuple[VideoStatus, ...]:
    """Every status the state machine allows to become ``new``."""
    return tuple(s for s in VideoStatus if can_move(s, new))


def check_move(current: VideoStatus, new: VideoStatus) -> None:
    """Raise Conflict unless ``current`` → ``new`` is allowed."""
    if not can_move(current, new):
        raise Conflict(f"video is {current.value}, it cannot become {new.value}")


@dataclass(frozen=True)
class Video:
    """A video (VOD upload or live stream) as the catalogue knows it."""

    id: str
    kind: VideoKind
    title: str
    status: VideoStatus
    created_at: datetime
    error: str | None = None
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    has_audio: bool | None = None
    source_size: int | None = None
    jobs_total: int = 0  # chunk x worker-group transcodes this video needs
    stream_key_digest: str | None = None  # live: SHA-256 of the stream key
    last_chunk_at: datetime | None = None  # live: when the latest chunk was reported
    audio_passthrough: bool = False  # the source's audio is copied, not re-encoded
    private: bool = False  # playback URLs are signed and refused without a valid signature


@dataclass(frozen=True)
class RenditionInfo:
    """A rendition of one video, with the codec string read from its init segment."""

    video_id: str
    rendition: Rendition
    codecs: str | None = None


@dataclass(frozen=True)
class Part:
    """A partial segment (Low-Latency HLS): a byte range of its segment's object holding one
    or more whole fMP4 fragments (moof + mdat), in order. ``independent``: its first video
    sample is a keyframe."""

    offset: int
    length: int
    duration: float
    independent: bool


@dataclass(frozen=True)
class Segment:
    """One fMP4 media segment of one rendition. ``parts``: its partial segments, in order,
    covering the whole segment (a live segment's, known to the live feed from its event; the
    catalogue does not keep them)."""

    video_id: str
    rendition: str
    seq: int
    key: str
    pts_start: float
    duration: float
    captured_at: str | None = None
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A piece of a source to transcode: a live chunk object, or a time range of a VOD
    source (``key`` is then the source and the worker seeks to ``pts_start``)."""

    video_id: str
    seq: int
    key: str
    pts_start: float
    duration: float
    captured_at: str | None = None
