"""Content types and cache policy by object key: segments never change, playlists do."""

IMMUTABLE = "public, max-age=31536000, immutable"
# A cache may serve a playlist a little past its age while it fetches the next one
# (stale-while-revalidate), never longer: a live playlist kept idle for minutes would start
# a player minutes behind.
PLAYLIST_VOD = "public, max-age=60, stale-while-revalidate=60"
PLAYLIST_LIVE = "public, max-age=1, stale-while-revalidate=1"
PLAYLIST_BLOCKING = "public, max-age=6"  # the answer to a blocking LL-HLS request
PRIVATE = "private, no-store"

_TYPES = {
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
}


def content_type_for(key: str) -> str:
    """MIME type served for an object key."""
    for suffix, mime in _TYPES.items():
        if key.endswith(suffix):
            return mime
    return "application/octet-stream"


def cache_control_for(key: str) -> str:
    """Cache-Control for an object: media is immutable, static playlists are short-lived,
    sources and raw chunks are never cached by shared caches."""
    if not key.startswith("media/"):
        return PRIVATE
    if key.endswith(".m3u8"):
        return PLAYLIST_VOD
    return IMMUTABLE
