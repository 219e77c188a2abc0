"""Pre-signed URL signatures and stored token digests."""

import pytest

from chunkcast.domain.signing import signature, token_digest, token_matches, verify

SECRET = b"s" * 32
KEY = "media/abcdefghijklmnop/720p/00000001.m4s"
EXPIRES = 1_700_000_000
BEFORE = EXPIRES - 60.0


def good() -> str:
    return signature(SECRET, "GET", KEY, EXPIRES)


def test_signature_is_hex_sha256_and_stable() -> None:
    sig = good()
    assert len(sig) == 64
    assert set(sig) <= set("0123456789abcdef")
    assert sig == signature(SECRET, "GET", KEY, EXPIRES)


def test_valid_signature_verifies() -> None:
    assert verify(SECRET, "GET", KEY, EXPIRES, good(), now=BEFORE)


def test_method_case_does_not_matter() -> None:
    assert verify(SECRET, "get", KEY, EXPIRES, good(), now=BEFORE)


def test_valid_until_the_expiry_second() -> None:
    assert verify(SECRET, "GET", KEY, EXPIRES, good(), now=float(EXPIRES))


@pytest.mark.parametrize("now", [EXPIRES + 0.001, EXPIRES + 1.0, EXPIRES + 86_400.0])
def test_expired(now: float) -> None:
    assert not verify(SECRET, "GET", KEY, EXPIRES, good(), now=now)


def test_expired_by_the_clock_when_now_is_not_given() -> None:
    past = 1_000_000_000  # 2001: long gone
    assert not verify(SECRET, "GET", KEY, past, signature(SECRET, "GET", KEY, past))


def test_valid_by_the_clock_when_now_is_not_given() -> None:
    future = 4_000_000_000  # 2096
    assert verify(SECRET, "PUT", KEY, future, signature(SECRET, "PUT", KEY, future))


def flip_first(sig: str) -> str:
    return ("0" if sig[0] != "0" else "1") + sig[1:]


@pytest.mark.parametrize(
    "given",
    [flip_first(good()), good()[:-1], good() + "0", good().upper(), "", "0" * 64],
    ids=["flipped", "short", "long", "upper-case", "empty", "zeros"],
)
def test_tampered_signature(given: str) -> None:
    assert not verify(SECRET, "GET", KEY, EXPIRES, given, now=BEFORE)


@pytest.mark.parametrize(
    "key",
    ["media/abcdefghijklmnop/720p/00000002.m4s", "media/abcdefghijklmnop/1080p/00000001.m4s",
     "media/bbcdefghijklmnop/720p/00000001.m4s", KEY + "x"],
)
def test_tampered_key(key: str) -> None:
    assert not verify(SECRET, "GET", key, EXPIRES, good(), now=BEFORE)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "HEAD", "POST"])
def test_tampered_method(method: str) -> None:
    assert not verify(SECRET, method, KEY, EXPIRES, good(), now=BEFORE)


def test_tampered_expiry() -> None:
    assert not verify(SECRET, "GET", KEY, EXPIRES + 3600, good(), now=BEFORE)


def test_other_secret() -> None:
    assert not verify(b"t" * 32, "GET", KEY, EXPIRES, good(), now=BEFORE)


@pytest.mark.parametrize("given", ["\u00e9" * 64, "sig\u00e9", "\u2603"],
                         ids=["64-non-ascii", "mixed", "snowman"])
def test_non_ascii_signature_is_rejected_not_an_error(given: str) -> None:
    # The signature arrives in a URL query string: any text must yield False, not raise.
    assert not verify(SECRET, "GET", KEY, EXPIRES, given, now=BEFORE)


def test_token_digest_is_not_the_token() -> None:
    digest = token_digest("stream-key-123")
    assert len(digest) == 64
    assert "stream-key-123" not in digest
    assert digest == token_digest("stream-key-123")
    assert digest != token_digest("stream-key-124")


@pytest.mark.parametrize("token", ["t0ken", "", "\u00e9t\u00e9", "a" * 1000],
                         ids=["ascii", "empty", "non-ascii", "long"])
def test_token_matches_its_digest(token: str) -> None:
    assert token_matches(token, token_digest(token))


@pytest.mark.parametrize("other", ["t0ken ", "T0KEN", "t0ke", "", "\u00e9"],
                         ids=["space", "upper", "prefix", "empty", "non-ascii"])
def test_token_does_not_match_another_digest(other: str) -> None:
    assert not token_matches(other, token_digest("t0ken"))
    assert not token_matches("t0ken", token_digest(other))


def test_token_does_not_match_the_raw_token_or_empty_digest() -> None:
    assert not token_matches("t0ken", "t0ken")
    assert not token_matches("t0ken", "")


def test_an_expiry_in_other_digits_is_invalid_not_an_error() -> None:
    from chunkcast.domain.signing import playback_check

    for expires in ("²", "١٢٣", "12 ", "-1", "1" * 13):
        assert playback_check("secret", "a" * 16, expires, "x") == "invalid"
