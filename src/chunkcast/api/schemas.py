"""Request and response bodies of the JSON API."""

from datetime import datetime

from pydantic import BaseModel, Field


class CreateVideo(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class UploadTarget(BaseModel):
    url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime


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
