"""Which dependency an exception says is unreachable: the catalogue, storage or the bus.

An outage is an error that the same call may not raise a moment later: the driver lost its
connection, got no answer in time, or the server refused to work just now. The drivers'
classes are recognised by their module and name, never imported, so an optional driver
stays optional (and the services stay free of driver imports). Which dependency failed is
read from the driver's package, or else from the adapter the error came through: a refused
connection is a plain ``ConnectionRefusedError`` whichever server refused it.
"""

import errno
import logging
import socket
from collections.abc import Awaitable
from types import TracebackType

from chunkcast.cancellation import reraise_cancellation
from chunkcast.domain.errors import Unavailable

CATALOGUE, STORAGE, BUS = "catalogue", "storage", "bus"

# Driver packages and the dependency each one talks to.
_PACKAGES = {"sqlalchemy": CATALOGUE, "asyncpg": CATALOGUE, "aiosqlite": CATALOGUE,
             "sqlite3": CATALOGUE, "botocore": STORAGE, "boto3": STORAGE,
             "s3transfer": STORAGE, "urllib3": STORAGE, "redis": BUS}
# Adapter packages of this project, for errors that do not name their driver.
_ADAPTERS = {"chunkcast.adapters.db": CATALOGUE, "chunkcast.adapters.storage": STORAGE,
             "chunkcast.adapters.bus": BUS}
# Driver errors that mean "not reachable just now", by the name of the class or of a base.
_TRANSIENT = {
    "sqlalchemy.exc.OperationalError", "sqlalchemy.exc.InterfaceError",
    "sqlalchemy.exc.DisconnectionError", "sqlalchemy.exc.TimeoutError",
    "asyncpg.exceptions._base.InterfaceError",
    "asyncpg.exceptions.CannotConnectNowError", "asyncpg.exceptions.ConnectionFailureError",
    "asyncpg.exceptions.AdminShutdownError", "asyncpg.exceptions.CrashShutdownError",
    "asyncpg.exceptions.TooManyConnectionsError",
    "sqlite3.OperationalError",
    "botocore.exceptions.HTTPClientError",  # EndpointConnectionError, ReadTimeoutError, …
    "botocore.exceptions.ConnectionError", "botocore.exceptions.ConnectionClosedError",
    "botocore.exceptions.EndpointConnectionError", "botocore.exceptions.ReadTimeoutError",
    "botocore.exceptions.ConnectTimeoutError",
    "urllib3.exceptions.HTTPError",
    "redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError",
    "redis.exceptions.BusyLoadingError",
}
# OS errors of a server or a disk that is not there just now (not of a missing object).
_OS_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
              errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EPIPE,
              errno.EIO, errno.ENOSPC, errno.EROFS, errno.EDQUOT}

MESSAGES = {CATALOGUE: "the catalogue is unreachable just now; try again shortly",
            STORAGE: "storage is unreachable just now; try again shortly",
            BUS: "the event bus is unreachable just now; try again shortly",
            "": "a service this needs is unreachable just now; try again shortly"}


def _names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, Unavailable | TimeoutError | ConnectionError | socket.gaierror):
        return True
    names = _names(exc)
    if names & _TRANSIENT:
        return True
    if "sqlalchemy.exc.DBAPIError" in names:  # a statement that failed on a lost connection
        return bool(getattr(exc, "connection_invalidated", False))
    if "botocore.exceptions.ClientError" in names:  # 500 InternalError, 503 SlowDown, …
        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        return isinstance(status, int) and status >= 500
    return isinstance(exc, OSError) and exc.errno in _OS_ERRNOS


def _package_dependency(exc: BaseException) -> str | None:
    for cls in type(exc).__mro__:
        found = _PACKAGES.get(cls.__module__.split(".", 1)[0])
        if found is not None:
            return found
    return None


def _adapter_dependency(trace: TracebackType | None) -> str | None:
    """The dependency of the deepest adapter frame the exception went through."""
    found = None
    while trace is not None:
        module = str(trace.tb_frame.f_globals.get("__name__", ""))
        for package, dependency in _ADAPTERS.items():
            if module == package or module.startswith(package + "."):
                found = dependency
        trace = trace.tb_next
    return found


def failed_dependency(exc: BaseException) -> str | None:
    """The dependency that ``exc`` says is unreachable (:data:`CATALOGUE`, :data:`STORAGE`,
    :data:`BUS`, or ``""`` when it cannot tell which), or None when ``exc`` is no outage.
    The chain of causes is followed: a driver error re-raised by an adapter counts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Unavailable):
            return current.dependency
        if _transient(current):
            return (_package_dependency(current) or _adapter_dependency(current.__traceback__)
                    or _adapter_dependency(exc.__traceback__) or "")
        current = current.__cause__ or current.__context__
    return None


def outage_message(dependency: str) -> str:
    """What a client is told while ``dependency`` is unreachable: no host, URL or detail."""
    return MESSAGES.get(dependency, MESSAGES[""])


class OutageLog:
    """For a loop that runs every second or so (a watchdog, a sweep, a follower): an outage
    is logged once when it starts, without a traceback, and once when it ends; any other
    error is logged each time, with its traceback. Each round's :meth:`ok` or
    :meth:`failed` is also where a cancelled loop ends (:func:`reraise_cancellation`)."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._down: str | None = None

    def failed(self, exc: BaseException) -> None:
        """Note ``exc``; raises ``CancelledError`` instead if the task is being cancelled
        (:func:`reraise_cancellation`): a retry loop must not outlive its cancellation."""
        reraise_cancellation()
        dependency = failed_dependency(exc)
        if dependency is None:
            self._log.error("%s failed", self._what, exc_info=exc)
        elif self._down is None:
            self._down = dependency or "a dependency"
            self._log.warning("%s: %s is unreachable, retrying (%s: %s)", self._what,
                              self._down, type(exc).__name__, exc)

    def ok(self) -> None:
        """Note a success (raises ``CancelledError`` instead, like :meth:`failed`)."""
        reraise_cancellation()
        if self._down is not None:
            self._log.info("%s: %s is back", self._what, self._down)
            self._down = None

    async def attempt(self, step: Awaitable[object]) -> None:
        """Await ``step``, noting its failure (never raised) or success as above."""
        try:
            await step
        except Exception as exc:
            self.failed(exc)
        else:
            self.ok()
