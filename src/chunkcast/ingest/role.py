"""The ingest role: the RTMP and SRT front-ends of one process, until it is stopped. Run by
``chunkcast ingest`` and inside ``chunkcast up``; stateless apart from its connections, so
any number run side by side behind a TCP balancer."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chunkcast.ingest.registry import Ingest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listen:
    host: str
    rtmp_port: int  # 0: off
    srt_port: int  # 0: off


class IngestRole:
    """Listens while it runs; on :meth:`stop` it stops accepting and lets every publication
    close and deliver its last chunk."""

    def __init__(self, ingest: Ingest, listen: Listen) -> None:
        self._ingest = ingest
        self._listen = listen
        self._stop = asyncio.Event()
        self.listening: dict[str, int] = {}  # protocol -> bound port, once listening

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        closers: list[Callable[[], Awaitable[None]]] = []
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
            await self._ingest.stop()

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
