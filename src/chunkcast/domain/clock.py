"""Times, in one place: every time the platform writes or exchanges is UTC, and on the wire
it is ISO 8601 with milliseconds and a ``Z`` (``2026-11-24T10:00:00.123Z``)."""

from datetime import UTC, datetime, timedelta

from chunkcast.domain.errors import InvalidInput


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive time is taken to be UTC already."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso_ms(moment: datetime) -> str:
    """``moment`` on the wire: UTC, milliseconds, ``Z`` (sub-millisecond digits dropped)."""
    utc = as_utc(moment)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def iso_now() -> str:
    return iso_ms(utc_now())


def iso_from_epoch(seconds: float) -> str:
    """A Unix time on the wire, rounded to the millisecond."""
    return iso_ms(datetime.fromtimestamp(round(seconds, 3), UTC))


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LEEWAY = timedelta(days=1)  # clocks of broadcasters run ahead, but not by days


def parse_iso(value: str, what: str = "time") -> str:
    """Validate an ISO 8601 time from outside (between 1970 and a day from now) and
    normalise it for the wire."""
    try:
        parsed = as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(f"{what} is not an ISO 8601 time") from exc
    if not EARLIEST <= parsed <= utc_now() + LEEWAY:
        raise InvalidInput(f"{what} is not a plausible time (1970 to now)")
    return iso_ms(parsed)
