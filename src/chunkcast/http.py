"""The one HTTP client with retries, for every caller of the API and of pre-signed storage
URLs: the CLI (uploads, streams) and the broadcaster (chunks).

An attempt that got no answer, a 5xx or a 429 is tried again after a backoff (the server's
``Retry-After`` wins when longer), a fixed number of times or, given a deadline, for as long as
the deadline allows (the broadcaster: a chunk is worth retrying while it is still useful); any
other refusal is final and raised with the server's own explanation. Refusals by the API about
the thing itself (401, 403, 404, 409) are marked fatal: a broadcaster stops, where a refused
chunk only loses that chunk.
"""

import contextlib
import enum
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from chunkcast.domain.errors import ChunkcastError

ATTEMPTS = 5
MIN_ATTEMPT_S = 2.0  # with a deadline, an attempt's timeout is cut to the time left, not below


class Verdict(enum.Enum):
    """What to do after one HTTP attempt."""

    DONE = "done"
    RETRY = "retry"  # network error, 5xx, 429: try again after a backoff
    SKIP = "skip"  # this request was refused: report it and go on with the next
    FATAL = "fatal"  # the API refuses the thing itself (bad key, no such stream, ended)


def verdict(status: int | None, *, api: bool = True) -> Verdict:
    """Classify an HTTP status (None: no answer at all). Refusals from the API about the
    resource itself are fatal; storage refusals and other 4xx are not."""
    if status is None or status == 429 or status >= 500:
        return Verdict.RETRY
    if status < 400:
        return Verdict.DONE
    if api and status in (401, 403, 404, 409):
        return Verdict.FATAL
    return Verdict.SKIP


def backoff_s(attempt: int, *, retry_after: float | None = None, base: float = 0.25,
              cap: float = 4.0) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0): doubling
    from ``base``, at most ``cap``; a server's ``Retry-After`` wins when longer."""
    delay = min(cap, base * 2.0**attempt)
    if retry_after is not None:
        delay = max(delay, min(cap, retry_after))
    return delay


def error_message(response: httpx.Response) -> str:
    """The server's ``{"error": {"message"}}``, else the body or the reason."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    return f"{response.status_code}: {message}"


class RequestFailed(ChunkcastError):
    """A request was refused or got no answer; ``fatal`` when the API refused the resource
    itself, ``http_status`` the last HTTP status (None: no answer)."""

    def __init__(self, message: str, *, fatal: bool = False, status: int | None = None
                 ) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.http_status = status


class HttpClient:
    """A pooled client (thread-safe) whose :meth:`request` retries. Setting ``aborted``
    cuts retries short; ``on_retry`` is told of every failed attempt that will be retried.
    Backoffs double up to ``backoff_cap``; ``clock`` is the monotonic clock deadlines are
    counted on."""

    def __init__(self, base_url: str = "", *, headers: dict[str, str] | None = None,
                 timeout: float = 30.0, attempts: int = ATTEMPTS, backoff_cap: float = 4.0,
                 on_retry: Callable[[], None] = lambda: None,
                 transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers or {},
                                  timeout=timeout, transport=transport)
        self._timeout = timeout
        self._attempts = attempts
        self._backoff_cap = backoff_cap
        self._on_retry = on_retry
        self._clock = clock
        self.aborted = threading.Event()

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, url: str, *, what: str = "", api: bool = True,
                attempts: int | None = None, deadline: float | None = None,
                **kwargs: Any) -> httpx.Response:
        """One call, tried up to ``attempts`` times (a streamed body can be sent only once:
        pass 1) or, with a ``deadline`` (on ``clock``), retried while a backoff still ends
        before it, each attempt's timeout cut to the time left. It is always tried once.
        ``what`` prefixes the error message; ``api`` False for storage URLs."""
        prefix = f"{what}: " if what else ""
        problem, status = "", None
        tries = attempts or self._attempts
        attempt = 0
        while True:
            retry_after = None
            try:
                response = self._http.request(
                    method, url, timeout=self._attempt_timeout(deadline), **kwargs)
            except httpx.HTTPError as exc:
                status, problem = None, f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if response.is_error:
                    problem = error_message(response)
                    with contextlib.suppress(ValueError):
                        retry_after = float(response.headers.get("Retry-After", ""))
            decision = verdict(status, api=api)
            if decision is Verdict.DONE:
                return response
            if decision is not Verdict.RETRY:
                raise RequestFailed(f"{prefix}{problem}", fatal=decision is Verdict.FATAL,
                                    status=status)
            delay = backoff_s(attempt, retry_after=retry_after, cap=self._backoff_cap)
            attempt += 1
            out_of_tries = (attempt >= tries if deadline is None
                            else self._clock() + delay >= deadline)
            if out_of_tries or self.aborted.is_set():
                break
            self._on_retry()
            if self.aborted.wait(delay):
                break
        suffix = " (gave up)" if tries > 1 or deadline is not None else ""
        raise RequestFailed(f"{prefix}{problem}{suffix}", status=status)

    def _attempt_timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self._timeout
        return min(self._timeout, max(MIN_ATTEMPT_S, deadline - self._clock()))
