"""Bus events: frozen dataclasses serialised as JSON with a type and a schema version."""

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from chunkcast.domain.videos import Part

SCHEMA_VERSION = 1

# Topic names, one per event family (ARCHITECTURE §2).
SOURCES = "sources"
# Live chunks and an upload's chunks travel apart, each rendition group consuming both with
# slots of its own, so a stream never waits behind an upload's backlog.
CHUNKS = "chunks"
VOD_CHUNKS = "vod_chunks"
CHUNK_TOPICS = (CHUNKS, VOD_CHUNKS)
SEGMENTS = "segments"
VIDEOS = "videos"
# Each API process's viewer counts, followed by every API process (no group, like
# ``segments`` and ``videos``): what makes a viewer count the cluster's, not one process's.
AUDIENCE = "audience"
# Each ingest process's publishers and their figures, followed by every API process (no
# group, like ``audience``): what a stream's resource shows of its publisher, whichever
# ingest process it is connected to.
INGEST = "ingest"


@dataclass(frozen=True)
class SourceUploaded:
    type: ClassVar[str] = "source.uploaded"
    video_id: str
    key: str


@dataclass(frozen=True)
class ChunkUploaded:
    """A chunk to transcode. For VOD, ``key`` may be the whole source: the worker seeks
    accurately to ``pts_start`` and reads ``duration`` seconds (no intermediate copy)."""

    type: ClassVar[str] = "chunk.uploaded"
    video_id: str
    kind: Literal["live", "vod"]
    seq: int
    key: str
    pts_start: float
    duration: float
    captured_at: str | None = None
    reported_at: str | None = None  # when the chunk was reported complete (queue wait)
    # VOD: the container the splitter's probe found (the demuxer to force). A live chunk is
    # always MPEG-TS.
    container: str = ""


@dataclass(frozen=True)
class SegmentReady:
    type: ClassVar[str] = "segment.ready"
    video_id: str
    rendition: str
    seq: int
    key: str
    init_key: str
    pts_start: float
    duration: float
    captured_at: str | None
    ready_at: str
    parts: tuple[Part, ...] = ()  # a live segment's partial segments (LL-HLS)


@dataclass(frozen=True)
class VideoStatusChanged:
    type: ClassVar[str] = "video.status"
    video_id: str
    status: str
    error: str | None = None


@dataclass(frozen=True)
class VideoPrivacyChanged:
    """A video was made private (playback only through signed links) or public again: every
    API process applies it at once to the viewers it serves."""

    type: ClassVar[str] = "video.privacy"
    video_id: str
    private: bool


@dataclass(frozen=True)
class AudienceReported:
    """The viewers one API process (``process``, unique per process) serves, per video: the
    whole table each time (a video left out has none there), sent every ``every_s`` seconds
    while it has viewers and once more when it has none left. A process not heard from for a
    few intervals is taken to be gone, with its viewers; ``leaving`` says so at once (a
    clean stop). ``at``: when it was counted (wall clock, for people; expiry goes by when a
    report is received)."""

    type: ClassVar[str] = "audience.reported"
    process: str
    counts: dict[str, int]
    at: str
    every_s: float = 1.0
    leaving: bool = False


@dataclass(frozen=True)
class IngestReported:
    """The publishers one ingest process (``process``, unique per process) has, per stream:
    ``streams`` maps a stream id to its publisher's figures (``protocol``, ``bitrate_kbps``,
    ``keyframe_interval_s``, ``keyframe_warning``, ``chunks_cut``, ``chunks_skipped``,
    ``connected_at``: :class:`~chunkcast.services.ingest_stats.PublisherStats`). Like
    :class:`AudienceReported`: the whole table each time, sent every ``every_s`` seconds
    while it has publishers and once more when it has none left; a process not heard from
    for a few intervals is taken to be gone, ``leaving`` says so at once."""

    type: ClassVar[str] = "ingest.reported"
    process: str
    streams: dict[str, dict[str, Any]]
    at: str
    every_s: float = 1.0
    leaving: bool = False


Event = (SourceUploaded | ChunkUploaded | SegmentReady | VideoStatusChanged
         | VideoPrivacyChanged | AudienceReported | IngestReported)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (SourceUploaded, ChunkUploaded, SegmentReady, VideoStatusChanged,
                              VideoPrivacyChanged, AudienceReported, IngestReported)
}


def encode(event: Event) -> str:
    """Serialise an event to JSON (one line)."""
    body: dict[str, Any] = {"type": event.type, "v": SCHEMA_VERSION}
    body.update(dataclasses.asdict(event))
    return json.dumps(body, separators=(",", ":"))


def decode(data: str | bytes) -> Event:
    """Parse JSON produced by :func:`encode`; unknown fields are ignored."""
    body = json.loads(data)
    cls = EVENT_TYPES[body.pop("type")]
    body.pop("v", None)
    names = {f.name for f in dataclasses.fields(cls)}
    fields = {k: v for k, v in body.items() if k in names}
    if "parts" in fields:
        fields["parts"] = tuple(Part(**part) for part in fields["parts"])
    return cls(**fields)

TOPIC_EVENTS: dict[str, tuple[type[Event], ...]] = {
    SOURCES: (SourceUploaded,),
    CHUNKS: (ChunkUploaded,),
    VOD_CHUNKS: (ChunkUploaded,),
    SEGMENTS: (SegmentReady,),
    VIDEOS: (VideoStatusChanged, VideoPrivacyChanged),
    AUDIENCE: (AudienceReported,),
    INGEST: (IngestReported,),
}
