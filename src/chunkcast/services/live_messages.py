"""The messages of the viewers' WebSocket (ARCHITECTURE §3), serialised once per event and
shared by every viewer.

A private video's messages are shared too: their URLs carry :data:`SIGNATURE_SLOT` where the
token goes, and each viewer gets them with the slot filled with its own token
(:func:`with_token`), so the URLs expire with the link the viewer came with.
"""

import json
from typing import Any

from chunkcast.domain import keys
from chunkcast.domain.videos import Segment
from chunkcast.services.playback import object_url

# Where a viewer's token (``e=…&st=…``) goes in the URLs of a private video's messages. Left
# unfilled it is no valid token: such a URL is refused, never served.
SIGNATURE_SLOT = "{signature}"


def with_token(text: str, query: str) -> str:
    """A private video's message as one viewer gets it: its URLs signed with ``query``."""
    return text.replace(SIGNATURE_SLOT, query)


def _json(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


class Messages:
    """Serialises messages whose URLs point at ``base_url`` (the CDN, or the API)."""

    def __init__(self, base_url: str) -> None:
        self._base = base_url

    def _url(self, key: str, private: bool) -> str:
        return object_url(self._base, key, SIGNATURE_SLOT if private else None)

    def segment(self, s: Segment, ready_at: str | None, *, private: bool) -> str:
        return _json({"type": "segment", "seq": s.seq, "url": self._url(s.key, private),
                      "duration": s.duration, "pts_start": s.pts_start,
                      "captured_at": s.captured_at, "ready_at": ready_at})

    def init(self, video_id: str, rendition: str, codecs: str | None, width: int, height: int,
             *, private: bool) -> str:
        return _json({"type": "init", "rendition": rendition,
                      "init_url": self._url(keys.init_segment(video_id, rendition), private),
                      "codecs": codecs, "width": width, "height": height})

    @staticmethod
    def gap(seq: int) -> str:
        return _json({"type": "gap", "seq": seq})

    @staticmethod
    def status(status: str) -> str:
        return _json({"type": "status", "status": status})

    @staticmethod
    def viewers(count: int) -> str:
        return _json({"type": "viewers", "count": count})
