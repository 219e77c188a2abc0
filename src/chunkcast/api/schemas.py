"""Request and response bodies of the JSON API."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

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
    upload_id: str = Field(min_length=1, max_length=1000)
    parts: list[PartDone] = Field(min_length=1, max_length=10_000)


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


class StreamStatus(BaseModel):
    """What a broadcaster's dashboard shows about its stream."""

    id: str
    title: str
    status: str
    viewers: int = Field(description="viewers connected to the API process that answered")
    last_chunk_at: datetime | None = Field(description="when the latest chunk was reported")
