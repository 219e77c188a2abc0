"""``/play/``: HLS playlists, rendered from the catalogue and, for live streams, from the
process's live feed; while the catalogue is unreachable, the last good answer of each."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from chunkcast.api.deps import FeedDep, MetricsDep, PlaybackDep, TokenDep
from chunkcast.domain.errors import BadRequest
from chunkcast.domain.ids import check_video_id
from chunkcast.domain.media_types import PLAYLIST_BLOCKING, PLAYLIST_LIVE, PLAYLIST_VOD
from chunkcast.services.playback import Blocking, Playlist

# Low-Latency HLS delivery directives (RFC 8216bis section 6.2.5).
Msn = Annotated[int | None, Query(alias="_HLS_msn", ge=0, le=2**53)]
Part = Annotated[int | None, Query(alias="_HLS_part", ge=0, le=10_000)]
Skip = Annotated[str | None, Query(alias="_HLS_skip", max_length=8)]

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
                metrics: MetricsDep, token: TokenDep, dvr: bool = False,
                msn: Msn = None, part: Part = None, skip: Skip = None) -> Response:
    """Media playlist; for a live stream a sliding window (from the process's live feed),
    or everything so far with ``?dvr=1`` (while the catalogue is down, the last one served,
    cached briefly). A live playlist is a Low-Latency HLS one: ``_HLS_msn`` (and
    ``_HLS_part``) hold the request until that segment (part) exists, ``_HLS_skip=YES``
    asks for a delta update."""
    if part is not None and msn is None:
        raise BadRequest("_HLS_part needs _HLS_msn")
    if skip not in (None, "YES", "v2"):
        raise BadRequest("_HLS_skip is YES or v2")
    block = Blocking(msn, part or 0) if msn is not None else None
    playlist = await playback.serve_media(check_video_id(video_id), rendition, dvr=dvr,
                                          token=token, live=feed, block=block,
                                          skip=skip is not None)
    metrics.served("index.m3u8")
    return _response(playlist, blocking=block is not None)


def _response(playlist: Playlist, *, blocking: bool = False) -> Response:
    # A stale answer is kept briefly by caches, so a fresh one is asked for soon. The answer
    # to a blocking request stays right for as long as it is kept: it holds what was asked.
    if playlist.growing and blocking and not playlist.stale:
        cache = PLAYLIST_BLOCKING
    else:
        cache = PLAYLIST_LIVE if playlist.growing or playlist.stale else PLAYLIST_VOD
    return Response(playlist.text, media_type=M3U8, headers={"Cache-Control": cache})
