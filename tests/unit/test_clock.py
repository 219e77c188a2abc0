"""Times on the wire: UTC, milliseconds, Z."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from chunkcast.domain.clock import as_utc, iso_from_epoch, iso_ms, parse_iso
from chunkcast.domain.errors import InvalidInput

PARIS = timezone(timedelta(hours=1))


def test_every_form_is_utc_with_milliseconds() -> None:
    moment = datetime(2026, 11, 24, 11, 0, 0, 123456, tzinfo=PARIS)
    assert iso_ms(moment) == "2026-11-24T10:00:00.123Z"
    assert iso_ms(datetime(2026, 11, 24, 10, 0)) == "2026-11-24T10:00:00.000Z"  # naive: UTC
    assert iso_from_epoch(moment.timestamp()) == "2026-11-24T10:00:00.123Z"
    assert as_utc(moment).tzinfo is UTC


@pytest.mark.parametrize(("given", "wire"), [
    ("2026-11-24T10:00:00.123Z", "2026-11-24T10:00:00.123Z"),
    ("2026-11-24T11:00:00.123+01:00", "2026-11-24T10:00:00.123Z"),
    ("2026-11-24T10:00:00", "2026-11-24T10:00:00.000Z"),
])
def test_times_from_outside_are_normalised(given: str, wire: str) -> None:
    assert parse_iso(given) == wire


@pytest.mark.parametrize("given", ["yesterday", "", "2026-13-01T00:00:00Z"])
def test_other_text_is_refused(given: str) -> None:
    with pytest.raises(InvalidInput, match="captured_at is not an ISO 8601 time"):
        parse_iso(given, "captured_at")


@pytest.mark.parametrize("given", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                   "1969-12-31T23:59:59Z", "2999-01-01T00:00:00Z"])
def test_times_out_of_range_are_refused(given: str) -> None:
    with pytest.raises(InvalidInput, match="captured_at"):
        parse_iso(given, "captured_at")
