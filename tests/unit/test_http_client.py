"""The one retrying HTTP client: what is tried again, what is final, and what it says."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from chunkcast.http import HttpClient, RequestFailed


def answering(*statuses: int | None) -> tuple[httpx.MockTransport, list[int]]:
    """A transport answering with ``statuses`` in turn (None: the connection fails)."""
    seen: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        status = statuses[min(len(seen), len(statuses) - 1)]
        seen.append(len(seen))
        if status is None:
            raise httpx.ConnectError("refused", request=request)
        body = {"error": {"code": "x", "message": f"said {status}"}} if status >= 400 else {}
        return httpx.Response(status, json=body, headers={"Retry-After": "0"})

    return httpx.MockTransport(handle), seen


def client(transport: httpx.MockTransport) -> HttpClient:
    http = HttpClient("http://api", transport=transport)
    http.aborted.wait = lambda timeout=None: False  # type: ignore[method-assign]
    return http


def test_no_answer_5xx_and_429_are_tried_again_until_it_works() -> None:
    transport, seen = answering(None, 503, 429, 200)
    with client(transport) as http:
        assert http.request("GET", "/x").status_code == 200
    assert len(seen) == 4


@pytest.mark.parametrize(("status", "api", "fatal"), [
    (404, True, True), (409, True, True), (422, True, False), (413, True, False),
    (403, False, False),
])
def test_refusals_are_final_with_the_server_s_message(status: int, api: bool,
                                                      fatal: bool) -> None:
    transport, seen = answering(status)
    with client(transport) as http, pytest.raises(RequestFailed) as refused:
        http.request("POST", "/x", what="chunk 3", api=api)
    assert len(seen) == 1
    assert refused.value.message == f"chunk 3: {status}: said {status}"
    assert refused.value.fatal is fatal and refused.value.http_status == status


def test_it_gives_up_after_its_attempts() -> None:
    transport, seen = answering(500)
    with client(transport) as http, pytest.raises(RequestFailed, match="gave up"):
        http.request("GET", "/x", attempts=3)
    assert len(seen) == 3


# --- retrying until a deadline (the broadcaster's chunks) ------------------------------

class FakeTime:
    """A monotonic clock that moves only when the client waits or an attempt times out."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        self.now += timeout
        return False  # never aborted


def timed_client(handle: Callable[[httpx.Request], httpx.Response], fake: FakeTime,
                 **kwargs: Any) -> HttpClient:
    http = HttpClient("http://api", transport=httpx.MockTransport(handle), clock=fake.clock,
                      **kwargs)
    http.aborted.wait = fake.wait  # type: ignore[method-assign]
    return http


def test_with_a_deadline_backoffs_double_to_the_cap_until_the_deadline() -> None:
    fake = FakeTime()
    tried_at: list[float] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        tried_at.append(fake.now)
        return httpx.Response(503, json={"error": {"code": "unavailable", "message": "down"}})

    with timed_client(unavailable, fake, backoff_cap=2.0) as http, \
            pytest.raises(RequestFailed, match="503: down \\(gave up\\)") as failed:
        http.request("POST", "/chunks", deadline=10.0)
    assert fake.waits == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert tried_at[-1] == 9.75 and len(tried_at) == 8  # never waits past the deadline
    assert failed.value.fatal is False and failed.value.http_status == 503


def test_with_a_deadline_an_outage_shorter_than_it_is_ridden_out() -> None:
    fake = FakeTime()

    def down_for_ten_seconds(request: httpx.Request) -> httpx.Response:
        if fake.now < 10.0:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json={"ok": True})

    with timed_client(down_for_ten_seconds, fake, backoff_cap=2.0) as http:
        assert http.request("POST", "/chunks", deadline=30.0).status_code == 201
    assert 10.0 <= fake.now <= 12.0  # noticed within one capped backoff of the end


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    fake = FakeTime()
    answers = iter([("1.5", 503), ("60", 503), ("0", 429), ("", 200)])

    def busy(request: httpx.Request) -> httpx.Response:
        retry_after, status = next(answers)
        return httpx.Response(status, headers={"Retry-After": retry_after} if retry_after
                              else {}, json={})

    with timed_client(busy, fake, backoff_cap=2.0) as http:
        assert http.request("GET", "/x", deadline=30.0).status_code == 200
    assert fake.waits == [1.5, 2.0, 1.0]


def test_each_attempt_s_timeout_is_cut_to_the_time_left() -> None:
    fake = FakeTime()
    timeouts: list[float] = []

    def no_answer(request: httpx.Request) -> httpx.Response:
        timeout = request.extensions["timeout"]["read"]
        timeouts.append(timeout)
        fake.now += timeout  # the attempt waits its whole timeout for an answer
        raise httpx.ReadTimeout("no answer", request=request)

    with timed_client(no_answer, fake, timeout=10.0, backoff_cap=2.0) as http, \
            pytest.raises(RequestFailed, match="ReadTimeout"):
        http.request("GET", "/x", deadline=12.0)
    assert timeouts == [10.0, 2.0]  # 1.75 s were left: an attempt gets at least 2 s


def test_with_a_deadline_refusals_are_still_final_at_once() -> None:
    fake = FakeTime()

    def refused(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"error": {"code": "forbidden", "message": "no"}})

    with timed_client(refused, fake) as http, pytest.raises(RequestFailed) as failed:
        http.request("GET", "/x", deadline=30.0)
    assert failed.value.fatal and fake.waits == []
