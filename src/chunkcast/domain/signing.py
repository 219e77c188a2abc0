"""Signatures: HMAC for pre-signed object URLs (method, key, expiry), digests of bearer
tokens, the secure_link tokens of private playback, and the secret the nginx edge proves
itself with."""

import base64
import hashlib
import hmac
import re
import time


def signature(secret: bytes, method: str, key: str, expires: int) -> str:
    """Hex HMAC-SHA256 over ``METHOD\\nkey\\nexpires``."""
    message = f"{method.upper()}\n{key}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify(
    secret: bytes, method: str, key: str, expires: int, given: str, now: float | None = None
) -> bool:
    """True when ``given`` is the signature for these values and ``expires`` is not past."""
    if (now if now is not None else time.time()) > expires:
        return False
    # Bytes, not str: compare_digest refuses non-ASCII text, and any text can arrive here.
    return hmac.compare_digest(signature(secret, method, key, expires).encode(), given.encode())


def token_digest(token: str) -> str:
    """SHA-256 hex of a bearer token or stream key: what is stored instead of the secret."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, digest: str) -> bool:
    """Constant-time check of ``token`` against a stored digest."""
    return hmac.compare_digest(token_digest(token).encode(), digest.encode())


def edge_secret(secret_key: str) -> str:
    """The secret the generated nginx edge sends in ``X-Chunkcast-Edge`` to prove it is the
    edge (the API then hands it objects, and answers its privacy checks), derived from the
    platform's secret key like :func:`playback_secret`: what the edge's config holds."""
    return hmac.new(secret_key.encode(), b"chunkcast edge", hashlib.sha256).hexdigest()


def edge_secret_matches(expected: str, given: str | None) -> bool:
    """Constant-time check of an ``X-Chunkcast-Edge`` header against the edge secret."""
    return given is not None and hmac.compare_digest(expected.encode(),
                                                     given.encode(errors="replace"))


# -- signed playback of private videos ------------------------------------------------------
# The form nginx's secure_link module checks: ``st`` is the unpadded base64url MD5 of
# ``"{e}/{video_id} {secret}"`` and ``e`` the expiry in Unix seconds, so a token is scoped to
# one video and the same token is valid at the edge and at the origin. MD5 is what
# secure_link offers; the secret is a key derived for playback only (never the secret key).

def playback_secret(secret_key: str) -> str:
    """The secret that signs playback URLs, derived from the platform's secret key: what
    the edge's config holds."""
    return hmac.new(secret_key.encode(), b"chunkcast playback", hashlib.sha256).hexdigest()


def playback_signature(secret: str, video_id: str, expires: int) -> str:
    digest = hashlib.md5(f"{expires}/{video_id} {secret}".encode()).digest()  # noqa: S324
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def playback_expiry(now: float, ttl_s: int, step_s: int = 300) -> int:
    """An expiry at least ``ttl_s`` away, rounded up to ``step_s``: every viewer within one
    step shares the same URLs, which keeps them cacheable."""
    return (int(now + ttl_s) // step_s + 1) * step_s


def playback_check(secret: str, video_id: str, expires: str | None, given: str | None,
                   now: float | None = None) -> str:
    """``"ok"``, ``"expired"`` or ``"invalid"`` (missing, malformed, tampered, or made for
    another video)."""
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if expires is None or given is None or not re.fullmatch(r"[0-9]{1,12}", expires):
        return "invalid"
    wanted = playback_signature(secret, video_id, int(expires)).encode()
    if not hmac.compare_digest(wanted, given.encode(errors="replace")):
        return "invalid"
    return "ok" if (now if now is not None else time.time()) <= int(expires) else "expired"
