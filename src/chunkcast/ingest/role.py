"""The ingest role: the RTMP and SRT front-ends of one process, until it is stopped. Run by
``chunkcast ingest`` and inside ``chunkcast up``; stateless apart from its connections, so
any number run side by side behind a TCP balancer. Its publishers' figures go to the API
processes on the bus (:mod:`chunkcast.services.ingest_stats`)."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chunkcast.ingest.registry import Ingest
from chunkcast.ports.bus import EventBus
from chunkcast.services.ingest_stats import IngestReporter, leave, report_publishers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listen:
    host: str
    rtmp_port: int  # 0: off
    srt_port: int  # 0: off


@dataclass(frozen=True)
class Reporting:
    """Where the role reports its publishers (the platform's bus), and as which process."""

    bus: EventBus
    reporter: IngestReporter


class IngestRole:
    """Listens while it runs, reporting its publishers' figures every second (with
    ``reporting``); on :meth:`stop` it stops accepting and lets every publication close and
    deliver its last chunk, then says it is leaving."""

    def __init__(self, ingest: Ingest, listen: Listen, reporting: Reporting | None = None
                 ) -> None:
        self._ingest = ingest
        self._listen = listen
        self._reporting = reporting
        self._stop = asyncio.Event()
        self.listening: dict[str, int] = {}  # protocol -> bound port, once listening

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        closers: list[Callable[[], Awaitable[None]]] = []
        reports = None
        if self._reporting is not None:
            reports = asyncio.create_task(report_publishers(
                self._reporting.bus, self._reporting.reporter, self._ingest.stats),
                name="ingest-reports")
        try:
            if self._listen.rtmp_port:
                closers += await self._start("rtmp", self._start_rtmp)
            if self._listen.srt_port:
                closers += await self._start("srt", self._start_srt)
            await self._stop.wait()
        finally:
            for close in closers:
                with contextlib.suppress(Exception):
                    await close()
            try:
                await self._ingest.stop()  # reported meanwhile: the last chunks go out
            finally:
                if reports is not None and self._reporting is not None:
                    reports.cancel()
                    await asyncio.gather(reports, return_exceptions=True)
                    await leave(self._reporting.bus, self._reporting.reporter)

    async def _start(self, protocol: str,
                     start: Callable[[], Awaitable[tuple[int, Callable[[], Awaitable[None]]]]]
                     ) -> list[Callable[[], Awaitable[None]]]:
        """A front-end that cannot listen (port taken, library missing) is logged and left
        out; the process goes on with the others."""
        try:
            port, close = await start()
        except (OSError, ImportError) as exc:
            log.error("ingest: %s is off: %s", protocol.upper(), exc)
            return []
        self.listening[protocol] = port
        log.info("ingest: %s publishers on %s:%d", protocol.upper(), self._listen.host, port)
        return [close]

    async def _start_rtmp(self) -> tuple[int, Callable[[], Awaitable[None]]]:
        from chunkcast.ingest.rtmp import serve_rtmp

        server = await serve_rtmp(self._ingest, self._listen.host, self._listen.rtmp_port)

        async def close() -> None:
            server.close()
            await server.wait_closed()

        port: int = server.sockets[0].getsockname()[1]
        return port, close

    async def _start_srt(self) -> tuple[int, Callable[[], Awaitable[None]]]:
        from chunkcast.ingest.srt import serve_srt

        return await serve_srt(self._ingest, self._listen.host, self._listen.srt_port)
