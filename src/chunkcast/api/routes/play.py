"""``/play/``: HLS playlists, rendered from the catalogue and, for live streams, from the
process's live feed; while the catalogue is unreachable, the last good answer of each."""

from fastapi import APIRouter, Response

from chunkcast.api.deps import FeedDep, MetricsDep, PlaybackDep, TokenDep
from chunkcast.domain.ids import check_video_id
from chunkcast.domain.media_types import PLAYLIST_LIVE, PLAYLIST_VOD
from chunkcast.services.playback import Playlist

router = APIRouter(prefix="/play", tags=["playback"])
M3U8 = "application/vnd.apple.mpegurl"


@router.get("/{video_id}/master.m3u8")
async def master(video_id: str, playback: PlaybackDep, metrics: MetricsDep,
                 token: TokenDep) -> Response:
    """Master playlist (while the catalogue is down, the last one served, cached briefly)."""
    playlist = await playback.serve_master(check_video_id(video_id), token)
    metrics.served("master.m3u8")
    return _response(playlist)


@router.get("/{video_id}/{rendition}/index.m3u8")
async def media(video_id: str, rendition: str, playback: PlaybackDep, feed: FeedDep,
                metrics: MetricsDep, token: TokenDep, dvr: bool = False) -> Response:
    """Media playlist; for a live stream a sliding window (from the process's live feed),
    or everything so far with ``?dvr=1`` (while the catalogue is down, the last one served,
    cached briefly)."""
    playlist = await playback.serve_media(check_video_id(video_id), rendition, dvr=dvr,
                                          token=token, live=feed)
    metrics.served("index.m3u8")
    return _response(playlist)


def _response(playlist: Playlist) -> Response:
    # A stale answer is kept briefly by caches, so a fresh one is asked for soon.
    cache = PLAYLIST_LIVE if playlist.growing or playlist.stale else PLAYLIST_VOD
    return Response(playlist.text, media_type=M3U8, headers={"Cache-Control": cache})
