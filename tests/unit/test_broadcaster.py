"""The broadcaster's pure parts: segment-list lines, capture times, retry decisions."""

from datetime import UTC, datetime

import httpx
import pytest

from chunkcast.broadcaster import (
    CaptureClock,
    ClosedChunk,
    Verdict,
    backoff_s,
    chunk_report,
    error_message,
    parse_out_time,
    parse_segment_line,
    verdict,
)
from chunkcast.domain.clock import iso_from_epoch as format_utc  # what chunk reports carry

NOON = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC).timestamp()


# --- the CSV segment list ---------------------------------------------------------------

def test_segment_line_gives_the_closed_chunk_and_its_times() -> None:
    chunk = parse_segment_line("00000003.ts,3.021333,4.021333\n")
    assert chunk == ClosedChunk("00000003.ts", 3.021333, 4.021333)
    assert chunk.duration == pytest.approx(1.0)


def test_segment_line_with_a_quoted_name() -> None:
    chunk = parse_segment_line('"a,b.ts",0.000000,1.021333')
    assert chunk == ClosedChunk("a,b.ts", 0.0, 1.021333)


@pytest.mark.parametrize("line", ["", "\n", "out_time_us=100", "x.ts,1.0", "x.ts,a,b",
                                  "x.ts,1,2,3"])
def test_other_lines_are_not_chunks(line: str) -> None:
    assert parse_segment_line(line) is None


# --- -progress reports ----------------------------------------------------------------

def test_out_time_in_seconds() -> None:
    assert parse_out_time("out_time_us=1021333\n") == pytest.approx(1.021333)


@pytest.mark.parametrize("line", ["out_time_us=N/A", "out_time=00:00:01.000000",
                                  "frame=30", "progress=continue", "[mpegts] error"])
def test_other_progress_lines_have_no_out_time(line: str) -> None:
    assert parse_out_time(line) is None


# --- captured_at ------------------------------------------------------------------------

def test_utc_with_milliseconds() -> None:
    assert format_utc(NOON + 0.123) == "2026-11-24T10:00:00.123Z"
    assert format_utc(NOON) == "2026-11-24T10:00:00.000Z"
    assert format_utc(NOON + 59.9996) == "2026-11-24T10:01:00.000Z"  # rounded, not cut


def test_paced_clock_keeps_the_least_delayed_report() -> None:
    clock = CaptureClock()
    assert clock.anchor is None
    clock.observe(NOON + 0.530, 0.500)  # seen 30 ms late
    clock.observe(NOON + 0.608, 0.600)  # 8 ms late: the best estimate so far
    clock.observe(NOON + 0.750, 0.700)  # a stall
    assert clock.anchor == pytest.approx(NOON + 0.008)
    # the chunk starting at stream time 3.021333 was captured 3.021333 s after stream time 0
    assert clock.captured_at(3.021333, fallback=0.0) == pytest.approx(NOON + 3.029333)


def test_live_clock_follows_the_arrival_time_within_its_window() -> None:
    clock = CaptureClock(window_s=2.0)
    clock.observe(NOON + 1.0, 1.0)
    clock.observe(NOON + 2.0, 2.0)
    # the source now arrives 300 ms later than its timestamps say (drift, a stall)
    clock.observe(NOON + 3.3, 3.0)
    clock.observe(NOON + 4.3, 4.0)
    assert clock.anchor == pytest.approx(NOON + 0.3)
    assert clock.captured_at(4.0, fallback=0.0) == pytest.approx(NOON + 4.3)


def test_captured_at_falls_back_before_any_report() -> None:
    assert CaptureClock().captured_at(1.0, fallback=NOON) == NOON
    assert CaptureClock(window_s=2.0).captured_at(1.0, fallback=NOON) == NOON


def test_chunk_report_body() -> None:
    chunk = ClosedChunk("00000002.ts", 2.021333, 3.021333)
    assert chunk_report(2, chunk, NOON + 2.0291, 1.0) == {
        "seq": 2, "duration": 1.0, "captured_at": "2026-11-24T10:00:02.029Z",
        "pts_start": 3.021333,
    }


# --- retries ----------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "api", "expected"), [
    (200, True, Verdict.DONE), (201, True, Verdict.DONE), (202, True, Verdict.DONE),
    (None, True, Verdict.RETRY), (None, False, Verdict.RETRY),
    (500, True, Verdict.RETRY), (503, False, Verdict.RETRY), (429, True, Verdict.RETRY),
    (401, True, Verdict.FATAL), (404, True, Verdict.FATAL), (409, True, Verdict.FATAL),
    (422, True, Verdict.SKIP), (400, True, Verdict.SKIP),
    (403, False, Verdict.SKIP), (404, False, Verdict.SKIP),  # storage: lose this chunk only
])
def test_verdict(status: int | None, api: bool, expected: Verdict) -> None:
    assert verdict(status, api=api) is expected


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff_s(a) for a in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_backoff_honours_retry_after_within_the_cap() -> None:
    assert backoff_s(0, retry_after=1.5) == 1.5
    assert backoff_s(0, retry_after=60.0) == 4.0
    assert backoff_s(3, retry_after=0.1) == 2.0


def test_error_message_from_the_server_json() -> None:
    response = httpx.Response(409, json={"error": {"code": "conflict",
                                                   "message": "the stream is ended"}})
    assert error_message(response) == "409: the stream is ended"
    assert error_message(httpx.Response(502, text="bad gateway")) == "502: bad gateway"
