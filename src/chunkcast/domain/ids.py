"""Identifiers: random, URL- and path-safe, validated before they touch storage."""

import re
import secrets

from chunkcast.domain.errors import InvalidInput

_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_ID_RE = re.compile(r"^[a-z2-7]{16}$")
_RENDITION_RE = re.compile(r"^[0-9]{2,4}p$")


def new_video_id() -> str:
    """A new 80-bit video id in lower-case base32 (safe in URLs and file names)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(16))


def new_secret(nbytes: int = 32) -> str:
    """A random URL-safe secret (token, key) that never starts with "-", so it can follow an
    option on any command line."""
    while (secret := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return secret


def check_video_id(value: str) -> str:
    """Return ``value`` if it is a well-formed video id, else raise InvalidInput."""
    if not _ID_RE.fullmatch(value):
        raise InvalidInput("malformed video id")
    return value


def check_rendition(value: str) -> str:
    """Return ``value`` if it looks like a rendition name such as ``720p``."""
    if not _RENDITION_RE.fullmatch(value):
        raise InvalidInput("malformed rendition name")
    return value
