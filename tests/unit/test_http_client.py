"""The one retrying HTTP client: what is tried again, what is final, and what it says."""

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
