"""Request and response bodies of the JSON API."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chunkcast.domain.errors import InvalidInput

MAX_SIZE = 2**50  # bytes; the configured upload limit is checked by the service


class RequestBody(BaseModel):
    """A JSON request body: finite numbers only (no NaN or Infinity, which JavaScript
    clients cannot parse when they come back), every number bounded where it is declared."""

    model_config = ConfigDict(allow_inf_nan=False)


class CreateVideo(RequestBody):
    title: str = Field(min_length=1, max_length=200)
    size: int | None = Field(None, ge=0, le=MAX_SIZE, description="source size in bytes: "
                             "big sources get a multipart upload when the storage offers one")
    private: bool = Field(False, description="playback only through signed links")


class UpdateVideo(RequestBody):
    private: bool = Field(description="private: playback only through signed links")


class UploadPartOut(BaseModel):
    number: int
    url: str


class UploadTarget(BaseModel):
    """Either one PUT to ``url``, or (``upload_id`` set) each part PUT to its own URL and
    the ETags sent back with ``complete``."""

    url: str | None
    method: str
    headers: dict[str, str]
    expires_at: datetime
    upload_id: str | None = None
    part_size: int | None = None
    parts: list[UploadPartOut] | None = None


class PartDone(RequestBody):
    number: int = Field(ge=1, le=10_000)
    etag: str = Field(min_length=1, max_length=200)


class CompleteUpload(RequestBody):
    """Empty (``{}``, or no body at all) for a single PUT; the upload id and every part's
    ETag for a multipart upload."""

    upload_id: str | None = Field(None, min_length=1, max_length=1000)
    parts: list[PartDone] | None = Field(None, min_length=1, max_length=10_000)

    def multipart(self) -> tuple[str, list[tuple[int, str]]] | None:
        """The upload id and the parts' (number, ETag), or None for a single PUT."""
        if self.upload_id is None and self.parts is None:
            return None
        if self.upload_id is None or self.parts is None:
            raise InvalidInput("a multipart upload is completed with both upload_id and parts")
        return self.upload_id, [(p.number, p.etag) for p in self.parts]


class RenditionOut(BaseModel):
    name: str
    width: int
    height: int
    video_kbps: int
    audio_kbps: int
    fps: float
    codecs: str | None


class Playback(BaseModel):
    hls: str
    ws: str
    watch: str
    token: str | None = Field(None, description="private videos: the query string "
                              "(e=…&st=…) their WebSocket and playlist URLs need")


class VideoOut(BaseModel):
    id: str
    kind: str
    title: str
    status: str
    error: str | None
    duration: float | None
    width: int | None
    height: int | None
    has_audio: bool | None
    private: bool
    playable: bool = Field(description="players can start: a live stream or a finished video")
    live: bool = Field(description="a stream taking chunks (idle until the first one)")
    fallback_codecs: str = Field(description="CODECS to assume for a rendition whose "
                                 "`codecs` are not known yet")
    progress: int
    renditions: list[RenditionOut]
    playback: Playback
    created_at: datetime


class CreatedVideo(VideoOut):
    upload: UploadTarget


class VideoPage(BaseModel):
    items: list[VideoOut]
    limit: int
    offset: int


class IngestOut(BaseModel):
    """A stream's publisher (OBS, an encoder) on the RTMP or SRT ingest, as the ingest
    process it is connected to last reported it (every second)."""

    protocol: Literal["rtmp", "srt"]
    bitrate_kbps: float = Field(description="bitrate in, over the last few seconds")
    keyframe_interval_s: float | None = Field(description="measured between keyframes "
                                              "(RTMP), else the longest recent chunk")
    keyframe_warning: str | None = Field(description="for people, when keyframes are more "
                                         "than 2.5 s apart (chunks and the delay grow as "
                                         "long)")
    chunks_cut: int = Field(description="chunks cut from the publisher's stream since it "
                            "connected")
    chunks_skipped: int = Field(description="of those, chunks that could not be stored "
                                "(a gap for viewers)")
    connected_at: datetime | None
    reported_at: datetime = Field(description="when its ingest process reported it")
    ingest_process: str = Field(description="the ingest process it is connected to")
    publishers: int = Field(description="ingest processes reporting a publisher on this "
                            "stream: more than 1 means several encoders publish to it")


class StreamStatus(BaseModel):
    """What a broadcaster's dashboard shows about its stream."""

    id: str
    title: str
    status: str
    viewers: int = Field(description="WebSocket viewers on every API process: those of the "
                         "process that answered, and the others' as last reported (within "
                         "about a second; a process gone silent for 3 s is no longer counted)")
    last_chunk_at: datetime | None = Field(description="when the latest chunk was reported")
    ingest: IngestOut | None = Field(None, description="its publisher on the RTMP or SRT "
                                     "ingest, shown with the admin token only; null when it "
                                     "has none (no ingest process reported one within 3 s)")


class ResumePoint(BaseModel):
    """Where a broadcaster (re)starting on a stream goes on, so that it overwrites nothing
    and its timestamps keep running."""

    next_seq: int = Field(description="the seq after the last chunk recorded (0 before the "
                          "first)")
    next_pts: float = Field(description="the end of the latest chunk on the broadcaster's "
                            "clock, max(pts_start + duration) (0.0 before the first)")
    status: Literal["idle", "live"]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    """Every error: a stable ``code`` and a ``message`` for people."""

    error: ErrorDetail
