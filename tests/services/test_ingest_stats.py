"""Publishers across the cluster: each ingest process's reports of its publishers kept by
every API process per stream and ingest process, replaced whole, expired when the process
goes silent, bounded, parsed as outside input; and shown by ``GET /api/v1/streams/{id}`` to
the admin, from an app on the memory bus as ``chunkcast up`` wires it."""

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkcast.adapters.bus.memory import MemoryBus
from chunkcast.api.app import create_app
from chunkcast.config import load_settings, prepare
from chunkcast.domain import events
from chunkcast.domain.events import IngestReported
from chunkcast.ingest.publication import KEYFRAME_WARN_S, PublisherFigures
from chunkcast.runtime import Platform, open_platform
from chunkcast.services.ingest_stats import (
    EXPIRE_INTERVALS,
    MAX_CHUNKS,
    MAX_KBPS,
    IngestReporter,
    IngestStats,
    PublisherStats,
    follow_publishers,
    leave,
    report_publishers,
)

V1, V2, V3 = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"
AT = "2026-11-24T10:00:00.000Z"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def figures(protocol: str = "rtmp", *, kbps: float = 2500.0, keyframes: float | None = 2.0,
            cut: int = 10, skipped: int = 0, warning: str | None = None,
            connected: str | None = AT) -> dict[str, Any]:
    return PublisherStats(protocol, kbps, keyframes, warning, cut, skipped, connected).wire()


def said(process: str, streams: Any, *, every_s: float = 1.0,
         leaving: bool = False) -> IngestReported:
    return IngestReported(process, streams, AT, every_s, leaving)


def test_the_latest_report_of_each_ingest_process_is_kept_per_stream() -> None:
    clock = Clock()
    stats = IngestStats(clock=clock)
    assert stats.of(V1) is None
    stats.heard(said("ingest-a", {V1: figures(cut=10), V2: figures("srt", kbps=900.0)}))
    seen = stats.of(V1)
    assert seen is not None and (seen.process, seen.publishers) == ("ingest-a", 1)
    assert seen.stats == PublisherStats("rtmp", 2500.0, 2.0, None, 10, 0, AT)
    assert seen.reported_at == AT
    other = stats.of(V2)
    assert other is not None and other.stats.protocol == "srt"

    # The next report is a's whole table: V2 left out has no publisher there any more.
    clock.now += 0.5
    stats.heard(said("ingest-a", {V1: figures(cut=11)}))
    seen = stats.of(V1)
    assert seen is not None and seen.stats.chunks_cut == 11
    assert stats.of(V2) is None

    # A second publisher on V1 through another ingest process: the latest heard is shown,
    # with how many there are.
    clock.now += 0.5
    stats.heard(said("ingest-b", {V1: figures("srt", cut=3)}))
    seen = stats.of(V1)
    assert seen is not None and (seen.process, seen.publishers) == ("ingest-b", 2)
    assert stats.sizes() == {"processes": 2, "streams": 1, "publishers": 2}


def test_a_silent_ingest_expires_and_a_leaving_one_goes_at_once() -> None:
    clock = Clock()
    stats = IngestStats(clock=clock)
    stats.heard(said("a", {V1: figures()}))
    stats.heard(said("b", {V2: figures()}, every_s=2.0))
    stats.heard(said("c", {V3: figures()}))
    stats.heard(said("c", {}, leaving=True))  # a clean stop: gone now
    assert stats.of(V3) is None
    clock.now += EXPIRE_INTERVALS * 1.0 - 0.01
    assert stats.of(V1) is not None
    clock.now += 0.01
    assert stats.of(V1) is None  # a's three intervals are up, not b's (2 s each)
    assert stats.of(V2) is not None
    stats.expire()
    assert stats.sizes() == {"processes": 1, "streams": 1, "publishers": 1}
    clock.now += EXPIRE_INTERVALS * 1.0
    assert stats.of(V2) is None
    stats.heard(said("d", {}))  # a report sweeps the silent ones out
    assert stats.sizes() == {"processes": 0, "streams": 0, "publishers": 0}


def test_an_ingest_reports_while_it_has_publishers_then_once_without() -> None:
    reporter = IngestReporter("ingest-1")
    assert reporter.report({}) is None
    stats = PublisherStats("rtmp", 1000.0, 1.0, None, 4, 0, AT)
    first = reporter.report({V1: stats})
    assert first is not None and first.process == "ingest-1"
    assert first.streams == {V1: stats.wire()} and not first.leaving
    again = reporter.report({V1: stats})
    assert again is not None and again.streams == {V1: stats.wire()}  # alive: every interval
    last = reporter.report({})
    assert last is not None and last.streams == {}
    assert reporter.report({}) is None
    gone = reporter.leave()
    assert gone.leaving and gone.streams == {}
    # Through the bus and back: a report is plain JSON.
    assert events.decode(events.encode(first)) == first


def test_reports_are_bounded_in_streams_and_processes() -> None:
    made = IngestReporter("i", max_streams=2).report({
        V1: PublisherStats("rtmp", 1.0, 1.0, None, 1, 0, "2026-11-24T10:00:03.000Z"),
        V2: PublisherStats("rtmp", 1.0, 1.0, None, 1, 0, "2026-11-24T10:00:01.000Z"),
        V3: PublisherStats("rtmp", 1.0, 1.0, None, 1, 0, "2026-11-24T10:00:02.000Z")})
    assert made is not None and sorted(made.streams) == [V2, V3]  # the longest connected

    stats = IngestStats(max_processes=2, max_streams=2, clock=Clock())
    stats.heard(said("a", {V1: figures(), V2: figures(), V3: figures()}))
    assert stats.sizes()["publishers"] == 2
    stats.heard(said("b", {V1: figures()}))
    stats.heard(said("c", {V1: figures()}))  # one too many: the least recently heard goes
    seen = stats.of(V1)
    assert seen is not None and seen.publishers == 2
    assert stats.sizes()["processes"] == 2


@pytest.mark.parametrize("streams", [
    {"../etc": figures(), V1: figures("http"), V2: "fast", V3: {"bitrate_kbps": 5}},
    ["not", "a", "table"],
])
def test_malformed_reports_show_nothing(streams: Any) -> None:
    stats = IngestStats(clock=Clock())
    stats.heard(said("a", streams))
    assert stats.sizes()["processes"] == 0
    stats.heard(said("x" * 201, {V1: figures()}))
    assert stats.of(V1) is None


def test_figures_from_outside_are_clamped_or_dropped() -> None:
    clock = Clock()
    stats = IngestStats(clock=clock)
    stats.heard(IngestReported("a", {V1: {
        "protocol": "srt", "bitrate_kbps": 1e300, "keyframe_interval_s": float("nan"),
        "keyframe_warning": "w" * 5000, "chunks_cut": 10**20, "chunks_skipped": True,
        "connected_at": "yesterday"}}, "not a time", float("inf")))
    seen = stats.of(V1)
    assert seen is not None
    assert seen.stats == PublisherStats("srt", MAX_KBPS, None, "w" * 300, MAX_CHUNKS, 0, None)
    assert seen.reported_at.endswith("Z")  # when it was received
    clock.now += EXPIRE_INTERVALS * 1.0  # inf: the default interval
    assert stats.of(V1) is None


def test_a_publishers_figures_are_what_its_ingest_reports() -> None:
    figures = PublisherFigures("rtmp", "127.0.0.1:50000", V1)
    for size in (125_000, 125_000, 125_000):
        figures.received(size)
    figures.recent[0] = (figures.recent[-1][0] - 1.0, figures.recent[0][1])  # 2 Mb in 1 s
    figures.keyframe_interval_s = 2.0
    figures.chunks_cut, figures.chunks_skipped = 7, 1
    stats = figures.stats()
    assert (stats.protocol, stats.bitrate_kbps, stats.keyframe_interval_s) == \
        ("rtmp", 2000.0, 2.0)
    assert (stats.chunks_cut, stats.chunks_skipped, stats.keyframe_warning) == (7, 1, None)
    assert stats.connected_at == figures.connected_at
    figures.keyframe_interval_s = KEYFRAME_WARN_S + 1.5
    warning = figures.stats().keyframe_warning
    assert warning is not None and "4.0 s apart" in warning and "1 or 2 s" in warning


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def _stopped(task: "asyncio.Task[None]") -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_ingest_processes_on_one_bus_are_seen_until_silent_or_gone() -> None:
    """Two ingest processes reporting on the memory bus and an API process following it:
    each one's publisher is seen; one that goes silent expires, one that leaves goes."""
    bus = MemoryBus()
    stats = IngestStats()
    follower = asyncio.create_task(follow_publishers(bus, stats))
    here = {"a": {V1: PublisherStats("rtmp", 3000.0, 2.0, None, 5, 0, AT)},
            "b": {V2: PublisherStats("srt", 800.0, 1.0, None, 9, 1, AT)}}
    reporters = {name: IngestReporter(name, every_s=0.05) for name in here}

    def publishers(name: str) -> Callable[[], dict[str, PublisherStats]]:
        return lambda: here[name]

    running = {name: asyncio.create_task(report_publishers(bus, reporters[name],
                                                          publishers(name)))
               for name in here}
    try:
        await _until(lambda: stats.of(V1) is not None and stats.of(V2) is not None)
        seen = stats.of(V1)
        assert seen is not None and (seen.process, seen.stats.bitrate_kbps) == ("a", 3000.0)

        here["a"][V1] = PublisherStats("rtmp", 3100.0, 2.0, None, 6, 0, AT)
        await _until(lambda: (s := stats.of(V1)) is not None and s.stats.chunks_cut == 6)

        await _stopped(running["a"])  # killed: no goodbye, its report expires
        loop = asyncio.get_running_loop()
        silent = loop.time()
        await _until(lambda: stats.of(V1) is None)
        assert loop.time() - silent < EXPIRE_INTERVALS * 0.05 + 1.0

        await _stopped(running["b"])
        await leave(bus, reporters["b"])
        await _until(lambda: stats.of(V2) is None, timeout_s=1.0)  # at once, not expired
        stats.expire()
        assert stats.sizes()["processes"] == 0
    finally:
        for task in (*running.values(), follower):
            await _stopped(task)
        await bus.close()


# -- the stream resource ---------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _api(migrated_db: Path, root: Path) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    """An embedded platform's app (memory bus, SQLite, local objects), started as uvicorn
    starts it (its lifespan), and a client of it."""
    shutil.copy(migrated_db, root / "catalogue.db")
    settings = prepare(load_settings(
        data_dir=root, database_url=f"sqlite+aiosqlite:///{root / 'catalogue.db'}",
        bus_url="memory://?journal=0", rtmp_port=0, srt_port=0))
    platform = open_platform(settings)
    app = create_app(platform)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield platform, client


async def test_the_stream_resource_shows_its_publisher_to_the_admin(
    migrated_db: Path, tmp_path: Path,
) -> None:
    async with _api(migrated_db, tmp_path) as (platform, client):
        admin = {"Authorization": f"Bearer {platform.settings.admin_token}"}
        created = await client.post("/api/v1/streams", json={"title": "obs"}, headers=admin)
        assert created.status_code == 201, created.text
        stream_id = created.json()["id"]

        async def ingest(headers: dict[str, str]) -> Any:
            answer = await client.get(f"/api/v1/streams/{stream_id}", headers=headers)
            assert answer.status_code == 200, answer.text
            return answer.json()["ingest"]

        assert await ingest(admin) is None
        reporter = IngestReporter("ingest-x", every_s=0.05)
        warning = "keyframes arrive 4.0 s apart"
        publisher = {stream_id: PublisherStats("rtmp", 2345.6, 4.0, warning, 12, 1, AT)}
        reports = asyncio.create_task(report_publishers(platform.bus, reporter,
                                                        lambda: publisher))
        try:
            async with asyncio.timeout(10):
                while (shown := await ingest(admin)) is None:
                    await asyncio.sleep(0.05)
            reported_at = shown.pop("reported_at")
            assert reported_at.startswith("20")
            assert shown == {
                "protocol": "rtmp", "bitrate_kbps": 2345.6, "keyframe_interval_s": 4.0,
                "keyframe_warning": warning, "chunks_cut": 12, "chunks_skipped": 1,
                "connected_at": "2026-11-24T10:00:00Z", "ingest_process": "ingest-x",
                "publishers": 1}
            assert await ingest({}) is None  # not to viewers
            assert await ingest({"Authorization": "Bearer not-the-token"}) is None
        finally:
            await _stopped(reports)
        await leave(platform.bus, reporter)
        async with asyncio.timeout(5):
            while await ingest(admin) is not None:
                await asyncio.sleep(0.05)
