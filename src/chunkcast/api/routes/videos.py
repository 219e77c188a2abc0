"""``/api/v1/videos``: create, upload completion, read, list, delete."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from chunkcast.api.deps import AdminDep, PlatformDep
from chunkcast.api.schemas import (
    CreatedVideo,
    CreateVideo,
    Playback,
    RenditionOut,
    UploadTarget,
    VideoOut,
    VideoPage,
)
from chunkcast.domain.videos import Video
from chunkcast.runtime import Platform

router = APIRouter(prefix="/api/v1/videos", tags=["videos"])


async def video_out(platform: Platform, video: Video) -> VideoOut:
    renditions = await platform.repo.renditions(video.id)
    return VideoOut(
        id=video.id, kind=video.kind.value, title=video.title, status=video.status.value,
        error=video.error, duration=video.duration, width=video.width, height=video.height,
        has_audio=video.has_audio, progress=await platform.videos.progress(video),
        renditions=[RenditionOut(
            name=i.rendition.name, width=i.rendition.width, height=i.rendition.height,
            video_kbps=i.rendition.video_kbps, audio_kbps=i.rendition.audio_kbps,
            fps=i.rendition.fps, codecs=i.codecs) for i in renditions],
        playback=Playback(**platform.playback.urls(video.id)),
        created_at=video.created_at,
    )


@router.post("", status_code=201, dependencies=[AdminDep])
async def create_video(body: CreateVideo, platform: PlatformDep) -> CreatedVideo:
    """Create a video; PUT the source to ``upload.url``, then call ``complete``."""
    video, upload = await platform.videos.create(body.title)
    out = await video_out(platform, video)
    return CreatedVideo(**out.model_dump(), upload=UploadTarget(
        url=upload.url, method=upload.method, headers=upload.headers,
        expires_at=upload.expires_at))


@router.post("/{video_id}/complete", status_code=202, dependencies=[AdminDep])
async def complete_upload(video_id: str, platform: PlatformDep) -> VideoOut:
    """The source is uploaded: verify it and start processing."""
    return await video_out(platform, await platform.videos.complete(video_id))


@router.get("/{video_id}")
async def get_video(video_id: str, platform: PlatformDep) -> VideoOut:
    return await video_out(platform, await platform.videos.get(video_id))


@router.get("")
async def list_videos(
    platform: PlatformDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> VideoPage:
    videos = await platform.videos.list(limit=limit, offset=offset)
    return VideoPage(items=[await video_out(platform, v) for v in videos], limit=limit,
                     offset=offset)


@router.delete("/{video_id}", status_code=204, dependencies=[AdminDep])
async def delete_video(video_id: str, platform: PlatformDep) -> Response:
    await platform.videos.delete(video_id)
    return Response(status_code=204)
