"""Which errors mean a dependency is unreachable (a 503 and a cached playlist), which do not
(a bug or bad input), the bounds of the playlists kept for those moments, and retry loops
that end when cancelled."""

import asyncio
import logging
from typing import Any

import pytest
import redis.exceptions
import sqlalchemy.exc
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from chunkcast.adapters.db.repository import SqlVideoRepository, make_engine
from chunkcast.domain.errors import NotFound, Unavailable
from chunkcast.services.outages import OutageLog, failed_dependency, outage_message
from chunkcast.services.playback import LastGood, Playlist
from chunkcast.testing import free_port


def client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetObject")


async def test_a_refused_connection_is_the_catalogue_s_when_it_comes_from_there() -> None:
    """asyncpg raises a plain ConnectionRefusedError: the adapter it came through tells."""
    repo = SqlVideoRepository(make_engine(
        f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"))
    try:
        with pytest.raises(ConnectionRefusedError) as raised:
            await repo.get_video("a" * 16)
        assert failed_dependency(raised.value) == "catalogue"
    finally:
        await repo.close()


@pytest.mark.parametrize(("exc", "dependency"), [
    (sqlalchemy.exc.OperationalError("SELECT 1", {}, OSError("gone")), "catalogue"),
    (sqlalchemy.exc.InterfaceError("SELECT 1", {}, OSError("closed")), "catalogue"),
    (sqlalchemy.exc.DBAPIError("SELECT 1", {}, OSError("x"), connection_invalidated=True),
     "catalogue"),
    (EndpointConnectionError(endpoint_url="http://10.0.0.5:8333/b"), "storage"),
    (ReadTimeoutError(endpoint_url="http://10.0.0.5:8333/b"), "storage"),
    (client_error("SlowDown", 503), "storage"),
    (redis.exceptions.ConnectionError("Error 111 connecting to 10.0.0.5:6379"), "bus"),
    (redis.exceptions.TimeoutError("Timeout reading from socket"), "bus"),
    (Unavailable("the bucket does not exist", dependency="storage"), "storage"),
    (TimeoutError(), ""),
])
def test_outages_name_their_dependency(exc: Exception, dependency: str) -> None:
    assert failed_dependency(exc) == dependency


def test_a_cause_counts() -> None:
    try:
        try:
            raise redis.exceptions.ConnectionError("lost")
        except redis.exceptions.ConnectionError as inner:
            raise RuntimeError("could not publish") from inner
    except RuntimeError as outer:
        assert failed_dependency(outer) == "bus"


@pytest.mark.parametrize("exc", [
    sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
    sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("syntax")),
    client_error("AccessDenied", 403),
    FileNotFoundError(2, "No such file"),
    NotFound("no such video"),
    ValueError("bug"),
    KeyError("bug"),
])
def test_what_is_not_an_outage(exc: Exception) -> None:
    assert failed_dependency(exc) is None


def test_messages_name_no_host() -> None:
    for dependency in ("catalogue", "storage", "bus", "", "unknown"):
        message = outage_message(dependency)
        assert message.endswith("try again shortly") and "://" not in message
    assert outage_message("catalogue") == ("the catalogue is unreachable just now; "
                                           "try again shortly")


def test_last_good_playlists_are_bounded() -> None:
    kept = LastGood(entries=3, size=1000)
    for n in range(5):
        kept.put((f"video{n}", "240p", False, None, None), Playlist("x" * 100, growing=True))
    assert len(kept) == 3
    assert kept.get(("video0", "240p", False, None, None)) is None
    assert kept.get(("video4", "240p", False, None, None)) is not None
    kept.put(("big", "240p", False, None, None), Playlist("x" * 200, growing=False))
    assert kept.get(("big", "240p", False, None, None)) is None  # over an eighth: not kept
    for n in range(10):  # by size: 9 of 100 bytes fit in 1000
        kept = LastGood(entries=100, size=1000) if n == 0 else kept
        kept.put((f"v{n}", "", False, None, None), Playlist("y" * 120, growing=False))
    assert len(kept) == 8
    kept.forget("v9")
    assert kept.get(("v9", "", False, None, None)) is None and len(kept) == 7


@pytest.mark.parametrize("outcome", ["returns", "fails"])
async def test_a_loop_ends_when_cancelled_even_if_a_driver_lost_the_cancellation(
    outcome: str,
) -> None:
    """redis-py can lose a cancellation that arrives while a command is in flight: the
    command returns (or fails) as usual. A loop that notes each round in an OutageLog still
    ends, whether that round then succeeded or failed, and is not retried."""
    outage = OutageLog(logging.getLogger("test"), "a loop")
    in_flight = asyncio.Event()
    rounds = 0

    async def command() -> None:
        in_flight.set()
        if rounds > 1:
            await asyncio.sleep(30)  # a later round (the loop went on) loses nothing
            return
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # lost, as the driver does
            if outcome == "fails":
                raise ConnectionError("connection closed") from None

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            await outage.attempt(command())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    await in_flight.wait()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    if not done:  # the loop went on: stop it for good before failing
        task.cancel()
        await asyncio.wait([task])
    assert done and task.cancelled()
    assert rounds == 1
