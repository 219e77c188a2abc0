"""``/api/v1/videos``: create, upload completion, read, list, delete."""

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from chunkcast.api.deps import AdminDep, PlaybackDep, TokenDep, VideosDep, is_admin
from chunkcast.api.schemas import (
    CompleteUpload,
    CreatedVideo,
    CreateVideo,
    Playback,
    RenditionOut,
    UpdateVideo,
    UploadPartOut,
    UploadTarget,
    VideoOut,
    VideoPage,
)
from chunkcast.domain.ladder import fallback_codecs
from chunkcast.domain.videos import Video, VideoKind, VideoStatus
from chunkcast.ports.storage import MultipartUpload, PresignedRequest
from chunkcast.services.playback import Playback as PlaybackService
from chunkcast.services.videos import Videos

router = APIRouter(prefix="/api/v1/videos", tags=["videos"])


async def video_out(videos: Videos, playback: PlaybackService, video: Video) -> VideoOut:
    """The video resource, with freshly minted playback links (for the admin)."""
    renditions = await videos.renditions(video.id)
    return VideoOut(
        id=video.id, kind=video.kind.value, title=video.title, status=video.status.value,
        error=video.error, duration=video.duration, width=video.width, height=video.height,
        has_audio=video.has_audio, private=video.private,
        playable=video.status.is_playable, live=video.status.is_broadcasting,
        fallback_codecs=fallback_codecs(video.has_audio is not False),
        progress=await videos.progress(video),
        renditions=[RenditionOut(
            name=i.rendition.name, width=i.rendition.width, height=i.rendition.height,
            video_kbps=i.rendition.video_kbps, audio_kbps=i.rendition.audio_kbps,
            fps=i.rendition.fps, codecs=i.codecs) for i in renditions],
        playback=Playback(**asdict(playback.urls(video, expires=None))),  # fresh
        created_at=video.created_at,
    )


def _upload_target(upload: PresignedRequest | MultipartUpload) -> UploadTarget:
    if isinstance(upload, MultipartUpload):
        return UploadTarget(
            url=None, method="PUT", headers={}, expires_at=upload.expires_at,
            upload_id=upload.upload_id, part_size=upload.part_size,
            parts=[UploadPartOut(number=p.number, url=p.url) for p in upload.parts])
    return UploadTarget(url=upload.url, method=upload.method, headers=upload.headers,
                        expires_at=upload.expires_at)


@router.post("", status_code=201, dependencies=[AdminDep])
async def create_video(body: CreateVideo, videos: VideosDep,
                       playback: PlaybackDep) -> CreatedVideo:
    """Create a video; PUT the source to ``upload.url`` (or its parts to their URLs), then
    call ``complete``."""
    video, upload = await videos.create(body.title, body.size, private=body.private)
    out = await video_out(videos, playback, video)
    return CreatedVideo(**out.model_dump(), upload=_upload_target(upload))


@router.post("/{video_id}/complete", status_code=202, dependencies=[AdminDep])
async def complete_upload(video_id: str, videos: VideosDep, playback: PlaybackDep,
                          body: CompleteUpload | None = None) -> VideoOut:
    """The source is uploaded (for a multipart upload: with its parts' ETags; otherwise no
    body or ``{}``): verify it and start processing. Calling it again changes nothing."""
    multipart = body.multipart() if body else None
    return await video_out(videos, playback, await videos.complete(video_id, multipart))


@router.get("/{video_id}")
async def get_video(video_id: str, request: Request, videos: VideosDep,
                    playback: PlaybackDep, token: TokenDep) -> VideoOut:
    """A video; a private one only for the admin or with a signed link (``e``, ``st``).
    The admin is given fresh links; a link's holder, links that expire with its own."""
    video = await videos.get(video_id)
    if not video.private or is_admin(request):
        return await video_out(videos, playback, video)
    expires = playback.signer.check(video.id, token)
    out = await video_out(videos, playback, video)
    urls = playback.urls(video, expires=expires)
    return out.model_copy(update={"playback": Playback(**asdict(urls))})


@router.patch("/{video_id}", dependencies=[AdminDep])
async def update_video(video_id: str, body: UpdateVideo, videos: VideosDep,
                       playback: PlaybackDep) -> VideoOut:
    """Make a video private (its playback links are then signed) or public."""
    return await video_out(videos, playback, await videos.set_private(video_id, body.private))


@router.get("")
async def list_videos(
    request: Request,
    videos: VideosDep,
    playback: PlaybackDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    status: Annotated[list[VideoStatus] | None, Query(
        description="only videos in these statuses (repeatable)")] = None,
    kind: Annotated[VideoKind | None, Query(description="only VOD uploads or live streams")
                    ] = None,
) -> VideoPage:
    """Newest first; private videos are listed for the admin only."""
    found = await videos.list(limit=limit, offset=offset, public_only=not is_admin(request),
                              statuses=status or (), kind=kind)
    return VideoPage(items=[await video_out(videos, playback, v) for v in found], limit=limit,
                     offset=offset)


@router.delete("/{video_id}", status_code=204, dependencies=[AdminDep])
async def delete_video(video_id: str, videos: VideosDep) -> Response:
    await videos.delete(video_id)
    return Response(status_code=204)
