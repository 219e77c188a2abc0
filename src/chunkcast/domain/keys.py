"""Storage keys: built in this one place, from validated parts only."""

import re

from chunkcast.domain.errors import InvalidInput
from chunkcast.domain.ids import check_rendition, check_video_id

_KEY_RE = re.compile(r"^[a-z]+/[a-z2-7]{16}(/[A-Za-z0-9._-]+)*$")


def source(video_id: str) -> str:
    return f"sources/{check_video_id(video_id)}/source"


def chunk(video_id: str, seq: int) -> str:
    return f"chunks/{check_video_id(video_id)}/{_seq(seq)}.ts"


def media_prefix(video_id: str) -> str:
    return f"media/{check_video_id(video_id)}/"


def video_prefixes(video_id: str) -> tuple[str, ...]:
    """Every prefix under which objects of one video live."""
    vid = check_video_id(video_id)
    return (f"sources/{vid}/", f"chunks/{vid}/", f"media/{vid}/")


def init_segment(video_id: str, rendition: str) -> str:
    return f"media/{check_video_id(video_id)}/{check_rendition(rendition)}/init.mp4"


def segment(video_id: str, rendition: str, seq: int) -> str:
    return f"media/{check_video_id(video_id)}/{check_rendition(rendition)}/{_seq(seq)}.m4s"


def master_playlist(video_id: str) -> str:
    return f"media/{check_video_id(video_id)}/master.m3u8"


def media_playlist(video_id: str, rendition: str) -> str:
    return f"media/{check_video_id(video_id)}/{check_rendition(rendition)}/index.m3u8"


def published_video_id(key: str) -> str | None:
    """The video a published object (``media/{video_id}/…``) belongs to, else None."""
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "media" else None


def check_key(key: str) -> str:
    """Validate a key that came from outside (a URL path): no ``..``, no absolute paths."""
    parts = key.split("/")
    if not _KEY_RE.fullmatch(key) or any(p in ("", ".", "..") for p in parts):
        raise InvalidInput("malformed object key")
    return key


def _seq(seq: int) -> str:
    if seq < 0 or seq > 99_999_999:
        raise InvalidInput("sequence number out of range")
    return f"{seq:08d}"
