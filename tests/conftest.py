"""Fixtures shared by every suite: generated clips and a real embedded server."""

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from chunkcast.testing import Server, make_clip, run_server

# Children the suite stops with Ctrl-C (SIGINT: a broadcaster, `make up`) inherit an ignored
# SIGINT, and then ignore it too, when the suite itself was started with SIGINT ignored (as a
# shell script's background job is): take it back as Python's default for the children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of small generated clips, made once per session."""
    folder = tmp_path_factory.mktemp("clips")
    make_clip(folder / "landscape.mp4", seconds=5, size="640x360")
    make_clip(folder / "silent.mp4", seconds=3, size="320x240", audio=False)
    make_clip(folder / "portrait.mp4", seconds=3, size="480x270", rotation=90)
    make_clip(folder / "odd.mp4", seconds=3, size="322x182", channels=6)
    make_clip(folder / "long.mp4", seconds=12, size="426x240")
    return folder


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One embedded ``chunkcast up`` for the session (its own data dir, free port)."""
    data = tmp_path_factory.mktemp("server")
    with run_server(data, env={"CHUNKCAST_VOD_CHUNK_SECONDS": "4"}) as running:
        yield running


LIVE_ENV = {"CHUNKCAST_LIVE_GAP_TIMEOUT_SECONDS": "2", "CHUNKCAST_LIVE_IDLE_TIMEOUT_SECONDS": "4",
            "CHUNKCAST_X264_PRESET": "ultrafast"}


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server for live tests: short gap and idle timeouts, a fast preset."""
    with run_server(tmp_path_factory.mktemp("live"), env=LIVE_ENV) as running:
        yield running


# Throwaway real servers, shared by the contract and integration suites.
from tests.servers.kafka import kafka_server  # noqa: E402, F401
from tests.servers.postgres import postgres  # noqa: E402, F401
from tests.servers.redis import redis_server  # noqa: E402, F401
from tests.servers.seaweedfs import seaweedfs  # noqa: E402, F401
