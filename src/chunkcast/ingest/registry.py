"""The publishers of one ingest process: at most one per stream, and a bounded number in all.
:class:`Ingest` owns them; front-ends open a publication through it and end it through it."""

import asyncio
import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chunkcast.domain.errors import ChunkcastError, Conflict, Unavailable
from chunkcast.domain.videos import Video
from chunkcast.ingest.cutter import ChunkCutter, cutter_argv
from chunkcast.ingest.publication import Publication, PublisherFigures, Refused
from chunkcast.media.argv import TIMELINE_OFFSET_S
from chunkcast.metrics import Metrics
from chunkcast.services.ingest_stats import PublisherStats
from chunkcast.services.outages import failed_dependency
from chunkcast.services.streams import Streams, stream_of_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConfig:
    ffmpeg: str
    chunk_seconds: int = 1
    retry_s: float = 30.0  # how long a cut chunk is retried through an outage
    max_publishers: int = 64
    work_dir: Path | None = None  # where chunks wait to be stored (default: a temp dir)


class Ingest:
    """Publishers by stream id. A second publisher on a stream that has one is refused (the
    first keeps it): a stream never gets two interleaved timelines. A publisher whose
    connection died silently is dropped by its front-end's read timeout, so one that comes
    back gets in within that time."""

    def __init__(self, streams: Streams, metrics: Metrics, config: IngestConfig) -> None:
        self._streams = streams
        self._metrics = metrics
        self._config = config
        self._live: dict[str, Publication | None] = {}  # None: being opened
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="chunkcast-ingest-",
                                                dir=config.work_dir)

    def figures(self) -> list[PublisherFigures]:
        """The live publishers' figures."""
        return [p.figures for p in self._live.values() if p is not None]

    def stats(self) -> dict[str, PublisherStats]:
        """What this process reports of its live publishers, by stream id."""
        return {p.video_id: p.figures.stats() for p in self._live.values() if p is not None}

    async def open(self, protocol: str, stream_key: str, peer: str, container: str
                   ) -> Publication:
        """Authenticate ``stream_key`` and start a publication on its stream, continuing it
        (seqs and timeline) if it has chunks already. Refused (nothing started, nothing
        stored) for a wrong or rotated key, an ended stream, a stream that already has a
        publisher here, or a full ingest."""
        try:
            return await self._open(protocol, stream_key, peer, container)
        except Refused as exc:
            self._metrics.ingest_refused.labels(exc.reason).inc()
            log.info("%s publisher %s refused: %s", protocol, peer, exc.message)
            raise

    async def check(self, stream_key: str) -> None:
        """What :meth:`open` checks, starting nothing: an SRT handshake is refused with it."""
        try:
            await self._resume(self._admissible(stream_key), stream_key)
        except Refused as exc:
            self._metrics.ingest_refused.labels(exc.reason).inc()
            log.info("publisher refused at the handshake: %s", exc.message)
            raise

    def _admissible(self, stream_key: str) -> str:
        """The stream id of ``stream_key`` if this process can take a publisher on it."""
        video_id = stream_of_key(stream_key)
        if video_id is None:
            raise Refused("not a stream key (it is shown by `chunkcast stream create` and on "
                          "the stream's page)", "key")
        if video_id in self._live:
            raise Refused("this stream already has a publisher", "duplicate")
        if len(self._live) >= self._config.max_publishers:
            raise Refused("this ingest takes no more publishers; try another", "busy")
        return video_id

    async def _open(self, protocol: str, stream_key: str, peer: str, container: str
                    ) -> Publication:
        video_id = self._admissible(stream_key)
        self._live[video_id] = None  # reserved while the catalogue is asked
        try:
            next_seq, next_pts, video = await self._resume(video_id, stream_key)
            out_dir = Path(self._tmp.name) / video.id
            out_dir.mkdir(exist_ok=True)
            timeline = max(TIMELINE_OFFSET_S, next_pts)
            cutter = ChunkCutter(cutter_argv(self._config.ffmpeg, container, out_dir,
                                             chunk_seconds=self._config.chunk_seconds,
                                             timeline_start=timeline), out_dir)
            await cutter.start()
        except BaseException:
            del self._live[video_id]
            raise
        figures = PublisherFigures(protocol, peer, video.id)
        publication = Publication(self._streams, video.id, stream_key, cutter, figures,
                                  self._metrics,
                                  first_seq=next_seq, timeline_start=timeline,
                                  retry_s=self._config.retry_s)
        self._live[video.id] = publication
        self._tasks[video.id] = asyncio.create_task(self._run(protocol, publication),
                                                    name=f"ingest-{video.id}")
        log.info("%s publisher %s live on stream %s from seq %d", protocol, peer, video.id,
                 next_seq)
        return publication

    async def _resume(self, video_id: str, stream_key: str) -> tuple[int, float, Video]:
        try:
            return await self._streams.resume(video_id, stream_key)
        except Unavailable as exc:
            raise Refused("the platform is unavailable just now; try again", "unavailable"
                          ) from exc
        except Conflict as exc:
            raise Refused(exc.message, "ended") from exc
        except ChunkcastError as exc:  # unknown stream, wrong or rotated key
            raise Refused("wrong stream key", "key") from exc
        except Exception as exc:
            if failed_dependency(exc) is None:
                raise
            raise Refused("the platform is unavailable just now; try again", "unavailable"
                          ) from exc

    async def _run(self, protocol: str, publication: Publication) -> None:
        metrics, stream = self._metrics, publication.video_id
        metrics.ingest_publishers.labels(protocol).inc()
        try:
            await publication.run()
        except Exception:
            log.exception("stream %s: ingest failed", stream)
        finally:
            metrics.ingest_publishers.labels(protocol).dec()
            figures = publication.figures
            for gauge in (metrics.ingest_keyframe_interval, metrics.ingest_bitrate):
                with contextlib.suppress(KeyError):
                    gauge.remove(stream)
            if publication.ended is not None:
                metrics.ingest_refused.labels(publication.ended.reason).inc()
            del self._live[stream]
            del self._tasks[stream]
            log.info("%s publisher %s left stream %s: %d chunks stored, %d skipped",
                     protocol, figures.peer, stream, figures.chunks_stored,
                     figures.chunks_skipped)

    async def close(self, publication: Publication) -> None:
        """The publisher left: its last chunk is closed and delivered."""
        await publication.finish()
        task = self._tasks.get(publication.video_id)
        if task is not None:
            await asyncio.wait([task], timeout=30)

    async def stop(self) -> None:
        """Stop taking media: every publication closes its last chunk."""
        tasks = list(self._tasks.values())
        for publication in [p for p in self._live.values() if p is not None]:
            await publication.finish()
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        self._tmp.cleanup()
