"""``/play/``: HLS playlists, rendered from the catalogue and, for live streams, from the
process's live feed."""

from fastapi import APIRouter, Request, Response

from chunkcast.api.deps import PlatformDep, TokenDep
from chunkcast.domain.ids import check_video_id
from chunkcast.domain.media_types import PLAYLIST_LIVE, PLAYLIST_VOD
from chunkcast.services.live import LiveFeed

router = APIRouter(prefix="/play", tags=["playback"])
M3U8 = "application/vnd.apple.mpegurl"


@router.get("/{video_id}/master.m3u8")
async def master(video_id: str, platform: PlatformDep, token: TokenDep) -> Response:
    text = await platform.playback.master(check_video_id(video_id), token)
    platform.metrics.served("master.m3u8")
    return Response(text, media_type=M3U8, headers={"Cache-Control": PLAYLIST_VOD})


@router.get("/{video_id}/{rendition}/index.m3u8")
async def media(video_id: str, rendition: str, request: Request, platform: PlatformDep,
                token: TokenDep, dvr: bool = False) -> Response:
    """Media playlist; for a live stream a sliding window (from the process's live feed),
    or everything so far with ``?dvr=1``."""
    feed: LiveFeed = request.app.state.feed
    text, growing = await platform.playback.media(check_video_id(video_id), rendition, dvr=dvr,
                                                  token=token, live=feed)
    platform.metrics.served("index.m3u8")
    cache = PLAYLIST_LIVE if growing else PLAYLIST_VOD
    return Response(text, media_type=M3U8, headers={"Cache-Control": cache})
