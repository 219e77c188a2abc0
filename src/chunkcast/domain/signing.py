"""HMAC signatures for pre-signed object URLs (method, key, expiry)."""

import hashlib
import hmac
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
