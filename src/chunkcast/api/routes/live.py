"""Live streams: ``/api/v1/streams`` (the viewers' WebSocket is in :mod:`chunkcast.api.hub`)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request
from pydantic import BaseModel, Field

from chunkcast.api.deps import (
    AdminDep,
    FeedDep,
    PlaybackDep,
    StreamsDep,
    TokenDep,
    VideosDep,
    get_platform,
    is_admin,
    require_admin,
)
from chunkcast.api.routes.videos import video_out
from chunkcast.api.schemas import (
    ErrorOut,
    IngestOut,
    Playback,
    RequestBody,
    ResumePoint,
    StreamStatus,
    UploadTarget,
    VideoOut,
)
from chunkcast.domain.errors import ChunkcastError, Expired, NotFound
from chunkcast.domain.videos import VideoStatus
from chunkcast.services.ingest_stats import IngestStats
from chunkcast.services.streams import MAX_CHUNK_SECONDS


def get_ingest_stats(request: Request) -> IngestStats:
    return get_platform(request).ingest_stats


router = APIRouter(tags=["live"])
StreamKey = Annotated[str | None, Header(alias="X-Stream-Key")]
IngestStatsDep = Annotated[IngestStats, Depends(get_ingest_stats)]


class CreateStream(RequestBody):
    title: str = Field(min_length=1, max_length=200)
    private: bool = Field(False, description="playback only through signed links")


class CreatedStream(VideoOut):
    stream_key: str
    broadcast: str


class ChunkReport(RequestBody):
    seq: int | None = Field(None, ge=0, le=99_999_999)
    duration: float = Field(gt=0, le=MAX_CHUNK_SECONDS)
    # Seconds on the broadcaster's clock (MPEG-TS time wraps after about 26.5 hours).
    pts_start: float = Field(0.0, ge=-1e6, le=1e7)
    captured_at: str | None = Field(None, max_length=40)


class ChunkUpload(BaseModel):
    seq: int
    upload: UploadTarget


class ChunkAccepted(BaseModel):
    seq: int
    new: bool


@router.post("/api/v1/streams", status_code=201, dependencies=[AdminDep])
async def create_stream(body: CreateStream, streams: StreamsDep, videos: VideosDep,
                        playback: PlaybackDep) -> CreatedStream:
    """A live stream; the stream key is shown here once."""
    video, key = await streams.create(body.title, private=body.private)
    out = await video_out(videos, playback, video)
    return CreatedStream(**out.model_dump(), stream_key=key,
                         broadcast=streams.broadcast_command(video.id, key))


@router.get("/api/v1/streams/{video_id}")
async def stream_status(video_id: str, request: Request, streams: StreamsDep,
                        playback: PlaybackDep, feed: FeedDep, ingest_stats: IngestStatsDep,
                        token: TokenDep) -> StreamStatus:
    """Status, viewers (on every API process) and last chunk time of a stream, and with the
    admin token its publisher on the RTMP or SRT ingest (whichever ingest process it is
    connected to): what its dashboard polls. A private stream's only for the admin or with a
    valid signed link (``e``, ``st``); to anyone else it is unknown."""
    admin = is_admin(request)
    video = await streams.get(video_id)
    if video.private and not admin:
        try:
            playback.signer.check(video.id, token)
        except Expired:
            raise  # only a genuine link can have expired: it says nothing new
        except ChunkcastError:
            raise NotFound("no such stream") from None
    seen = ingest_stats.of(video.id) if admin else None
    ingest = None if seen is None else IngestOut.model_validate({
        **seen.stats.wire(), "reported_at": seen.reported_at, "ingest_process": seen.process,
        "publishers": seen.publishers})
    return StreamStatus(id=video.id, title=video.title, status=video.status.value,
                        viewers=feed.viewers(video.id), last_chunk_at=video.last_chunk_at,
                        ingest=ingest)


@router.post("/api/v1/streams/{video_id}/key", dependencies=[AdminDep])
async def rotate_key(video_id: str, streams: StreamsDep) -> dict[str, str]:
    """A new stream key; the old one stops working at once."""
    return {"stream_key": await streams.rotate_key(video_id)}


@router.get("/api/v1/streams/{video_id}/resume", responses={
    401: {"model": ErrorOut, "description": "no stream key"},
    403: {"model": ErrorOut, "description": "wrong stream key"},
    404: {"model": ErrorOut, "description": "no such stream"},
    409: {"model": ErrorOut, "description": "the stream has ended or failed"}})
async def resume(video_id: str, streams: StreamsDep,
                 x_stream_key: StreamKey = None) -> ResumePoint:
    """Where a broadcaster starting (or restarting) on this stream goes on: the next seq
    and the end of the latest chunk on its clock, so it overwrites nothing and viewers see
    continuous timestamps. A broadcaster calls it before its first chunk."""
    next_seq, next_pts, video = await streams.resume(video_id, x_stream_key)
    return ResumePoint(next_seq=next_seq, next_pts=next_pts,
                       status="live" if video.status is VideoStatus.LIVE else "idle")


@router.post("/api/v1/streams/{video_id}/chunks", status_code=201, responses={
    409: {"model": ErrorOut, "description": "the stream has ended or failed, or chunk `seq` "
          "is already stored (the message says at which seq the stream continues; see "
          "`GET /api/v1/streams/{id}/resume`)"},
    422: {"model": ErrorOut, "description": "`seq` is outside the stream's seq window"}})
async def chunk_upload(video_id: str, body: ChunkReport, streams: StreamsDep,
                       x_stream_key: StreamKey = None) -> ChunkUpload:
    """A pre-signed PUT for chunk ``seq``; never for a chunk already stored."""
    if body.seq is None:
        raise ChunkcastError("seq is required")
    target = await streams.chunk_upload(video_id, x_stream_key, body.seq)
    return ChunkUpload(seq=body.seq, upload=UploadTarget(
        url=target.url, method=target.method, headers=target.headers,
        expires_at=target.expires_at))


@router.post("/api/v1/streams/{video_id}/chunks/{seq}/complete", status_code=202)
async def chunk_complete(video_id: str, seq: Annotated[int, Path(ge=0, le=99_999_999)],
                         body: ChunkReport, streams: StreamsDep,
                         x_stream_key: StreamKey = None) -> ChunkAccepted:
    """Chunk ``seq`` is stored: transcode it. Reporting it twice changes nothing (``new``
    is false). Accepted means recorded: the transcoders get it even if the event bus is
    down at that moment."""
    new = await streams.complete_chunk(
        video_id, x_stream_key, seq, duration=body.duration, pts_start=body.pts_start,
        captured_at=body.captured_at)
    return ChunkAccepted(seq=seq, new=new)


@router.post("/api/v1/streams/{video_id}/end")
async def end_stream(video_id: str, request: Request, streams: StreamsDep, videos: VideosDep,
                     playback: PlaybackDep, x_stream_key: StreamKey = None,
                     authorization: Annotated[str | None, Header()] = None) -> VideoOut:
    """End the stream (with its stream key or the admin token); it becomes replayable."""
    if authorization is not None and x_stream_key is None:
        require_admin(request)
    else:
        await streams.authenticate(video_id, x_stream_key)
    out = await video_out(videos, playback, await streams.end(video_id))
    if out.private and not is_admin(request):
        # A stream key is not a playback link: its holder gets no signed links to mint.
        out.playback = Playback(hls=out.playback.hls.split("?", 1)[0], ws=out.playback.ws,
                                watch=out.playback.watch.split("?", 1)[0], token=None)
    return out
