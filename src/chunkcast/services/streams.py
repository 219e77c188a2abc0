"""Live streams: creation and stream keys, chunk uploads, the end of a broadcast."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chunkcast.domain import events, keys
from chunkcast.domain.clock import iso_now, parse_iso
from chunkcast.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TooLarge,
    Unauthorized,
)
from chunkcast.domain.ids import check_video_id, new_secret, new_video_id
from chunkcast.domain.ladder import busy_groups
from chunkcast.domain.signing import token_digest, token_matches
from chunkcast.domain.videos import Chunk, Video, VideoKind, VideoStatus, sources_of
from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import VideoRepository
from chunkcast.ports.storage import ObjectStore, PresignedRequest
from chunkcast.services.lifecycle import Lifecycle
from chunkcast.services.outbox import publish_recorded
from chunkcast.services.playback import Playback
from chunkcast.services.transcoding import finish_if_complete
from chunkcast.services.videos import clean_title

MAX_CHUNK_SECONDS = 10.0


def new_stream_key(video_id: str) -> str:
    """The stream's id, a dot and 256 random bits; only its digest is stored. The id in front
    lets an ingest, which is given nothing but the key (OBS's "stream key", an SRT streamid),
    find the stream to check it against."""
    return f"{video_id}.{new_secret(32)}"


def stream_of_key(stream_key: str) -> str | None:
    """The stream id a key names (see :func:`new_stream_key`), None if it names none."""
    video_id, sep, secret = stream_key.partition(".")
    try:
        return check_video_id(video_id) if sep and secret else None
    except InvalidInput:
        return None


class Streams:
    def __init__(self, repo: VideoRepository, store: ObjectStore, bus: EventBus,
                 lifecycle: Lifecycle, playback: Playback, groups: dict[str, tuple[str, ...]],
                 *, chunk_url_seconds: int, idle_timeout_s: float, seq_window: int = 300,
                 max_chunk_bytes: int = 64 * 1024**2,
                 public_url: str = "http://127.0.0.1:8000") -> None:
        self._repo = repo
        self._store = store
        self._bus = bus
        self._lifecycle = lifecycle
        self._playback = playback
        self._groups = groups
        self._url_ttl = chunk_url_seconds
        self._idle_timeout = timedelta(seconds=idle_timeout_s)
        self._seq_window = seq_window
        self._max_chunk_bytes = max_chunk_bytes
        self._public_url = public_url.rstrip("/")

    async def create(self, title: str, *, private: bool = False) -> tuple[Video, str]:
        """A new live stream (status idle) and its stream key, shown this once."""
        video_id = new_video_id()
        key = new_stream_key(video_id)
        video = Video(id=video_id, kind=VideoKind.LIVE, title=clean_title(title),
                      status=VideoStatus.IDLE, created_at=datetime.now(UTC),
                      stream_key_digest=token_digest(key), private=private)
        await self._repo.add_video(video)
        return video, key

    @property
    def public_url(self) -> str:
        """Where broadcasters reach the API."""
        return self._public_url

    def broadcast_command(self, video_id: str, key: str) -> str:
        """The command line that goes live on this stream with a test pattern."""
        return (f"chunkcast broadcast testsrc --stream {video_id} --key {key} "
                f"--server {self._public_url}")

    async def rotate_key(self, video_id: str) -> str:
        video = await self._stream(video_id)
        key = new_stream_key(video.id)
        await self._repo.set_stream_key(video.id, token_digest(key))
        return key

    async def get(self, video_id: str) -> Video:
        """The stream; NotFound for an unknown id or a video that is not a stream."""
        return await self._stream(video_id)

    async def _stream(self, video_id: str) -> Video:
        video = await self._repo.get_video(check_video_id(video_id))
        if video is None or video.kind is not VideoKind.LIVE:
            raise NotFound("no such stream")
        return video

    async def authenticate(self, video_id: str, stream_key: str | None) -> Video:
        """The stream, if ``stream_key`` is its key; 401 without a key, 403 with a wrong one."""
        video = await self._stream(video_id)
        if not stream_key:
            raise Unauthorized("the X-Stream-Key header is required")
        if not video.stream_key_digest or not token_matches(stream_key, video.stream_key_digest):
            raise Forbidden("wrong stream key")
        return video

    @staticmethod
    def _check_open(video: Video) -> None:
        if not video.status.is_broadcasting:
            raise Conflict(f"the stream is {video.status.value}; create a new one to go live")

    async def _check_seq(self, video: Video, seq: int) -> None:
        """A chunk seq must lie within the window around the last one accepted: everything
        built per seq (gap markers, playlist entries) then stays proportional to what the
        broadcaster really sent, however far it tries to jump."""
        last = await self._repo.last_chunk_seq(video.id)
        low, high = (0, self._seq_window) if last is None else (
            max(0, last - self._seq_window), last + self._seq_window)
        if not low <= seq <= high:
            raise InvalidInput(f"chunk seq {seq} is out of range: this stream takes seqs "
                               f"{low} to {high} now (at most {self._seq_window} chunks "
                               "ahead of the last one)")

    async def chunk_upload(self, video_id: str, stream_key: str | None, seq: int
                           ) -> PresignedRequest:
        """Where the broadcaster PUTs chunk ``seq``. A chunk already recorded is never
        written again (a restarted broadcaster would overwrite what viewers were sent):
        Conflict, saying where the stream goes on."""
        video = await self._writable(video_id, stream_key, seq)
        return self._store.presign_put(keys.chunk(video.id, seq), self._url_ttl)

    async def _writable(self, video_id: str, stream_key: str | None, seq: int) -> Video:
        """The stream, if chunk ``seq`` may be written to it now."""
        video = await self.authenticate(video_id, stream_key)
        self._check_open(video)
        await self._check_seq(video, seq)
        if await self._repo.get_chunk(video.id, seq) is not None:
            next_seq, _ = await self._resume_point(video.id)
            raise Conflict(f"chunk {seq} is already stored; this stream continues at seq "
                           f"{next_seq}: GET /api/v1/streams/{video.id}/resume")
        return video

    async def store_chunk(self, video_id: str, stream_key: str, seq: int, path: Path, *,
                          duration: float, pts_start: float, captured_at: str | None) -> bool:
        """An ingest's chunk: the rules of :meth:`chunk_upload` and :meth:`complete_chunk`
        (key, open stream, seq window, never overwritten, size cap), with the file written
        by this process instead of PUT through a pre-signed URL."""
        video = await self._writable(video_id, stream_key, seq)
        if not 0 < duration <= MAX_CHUNK_SECONDS:
            raise InvalidInput(f"chunk {seq} lasts {duration:.1f} s; a chunk lasts at most "
                               f"{MAX_CHUNK_SECONDS:g} s (keyframes further apart than that "
                               "cannot be cut)")
        size = (await asyncio.to_thread(path.stat)).st_size
        if size > self._max_chunk_bytes:  # refused before anything is stored
            raise TooLarge(f"chunk {seq} is {size} bytes; the limit is "
                           f"{self._max_chunk_bytes}")
        await self._store.put_file(keys.chunk(video.id, seq), path)
        return await self.complete_chunk(video.id, stream_key, seq, duration=duration,
                                         pts_start=pts_start, captured_at=captured_at)

    async def resume(self, video_id: str, stream_key: str | None) -> tuple[int, float, Video]:
        """Where a broadcaster (re)starting on this stream goes on: the seq after the last
        chunk recorded and the end of the latest chunk on its clock (0 and 0.0 before the
        first), and the stream. Conflict once the stream has ended or failed."""
        video = await self.authenticate(video_id, stream_key)
        self._check_open(video)
        next_seq, next_pts = await self._resume_point(video.id)
        return next_seq, next_pts, video

    async def _resume_point(self, video_id: str) -> tuple[int, float]:
        extent = await self._repo.chunk_extent(video_id)
        if extent is None:
            return 0, 0.0
        last_seq, end = extent
        return last_seq + 1, end

    async def complete_chunk(self, video_id: str, stream_key: str | None, seq: int, *,
                             duration: float, pts_start: float, captured_at: str | None) -> bool:
        """Chunk ``seq`` is stored: verify it and hand it to the transcoders. The chunk and
        its event are committed together (the outbox), so once this returns the transcoders
        get it even if the bus is down just now. Reporting the same chunk again changes
        nothing (returns False), except that its event is published if it still waits."""
        video = await self.authenticate(video_id, stream_key)
        self._check_open(video)
        if not 0 < duration <= MAX_CHUNK_SECONDS:
            raise InvalidInput(f"duration must be within (0, {MAX_CHUNK_SECONDS}] seconds")
        await self._check_seq(video, seq)
        key = keys.chunk(video.id, seq)
        stored = await self._store.stat(key)
        if stored is None or stored.size == 0:
            raise Conflict(f"chunk {seq} was not uploaded: PUT it to its upload URL first")
        if stored.size > self._max_chunk_bytes:
            # Not accepted, so not kept: it would only hold storage (viewers get a gap).
            await self._store.delete_prefix(key)
            raise TooLarge(f"chunk {seq} is {stored.size} bytes; the limit is "
                           f"{self._max_chunk_bytes}")
        chunk = Chunk(video.id, seq, key, pts_start, duration,
                      None if captured_at is None else parse_iso(captured_at, "captured_at"))
        uploaded = events.ChunkUploaded(video.id, "live", seq, key, pts_start, duration,
                                        chunk.captured_at, reported_at=iso_now())
        went_live = events.VideoStatusChanged(video.id, VideoStatus.LIVE.value)
        recorded = await self._repo.record_chunk(chunk, (events.CHUNKS, uploaded),
                                                 at=datetime.now(UTC),
                                                 went_live=(events.VIDEOS, went_live))
        if recorded:
            await publish_recorded(self._repo, self._bus, recorded)
            return True
        # Reported again: its event may still wait for the bus. It goes now, after what the
        # stream recorded before it.
        waiting = await self._repo.pending(video.id)
        for i, pending in enumerate(waiting):
            if isinstance(pending.event, events.ChunkUploaded) and pending.event.seq == seq:
                await publish_recorded(self._repo, self._bus, waiting[:i + 1])
                break
        return False

    async def end(self, video_id: str) -> Video:
        """End the broadcast; once its last chunks are transcoded it plays as VOD."""
        video = await self._stream(video_id)
        if video.status.is_broadcasting:
            chunks = await self._repo.chunks(video.id)
            ladder = [i.rendition for i in await self._repo.renditions(video.id)]
            busy = busy_groups(ladder, self._groups)
            await self._repo.set_jobs_total(video.id, len(chunks) * len(busy))
            # Announced (VideoStatusChanged) only once its last chunks are transcoded, so a
            # viewer told "ended" has already been sent every segment.
            await self._repo.set_status(video.id, VideoStatus.ENDED,
                                        only_from=sources_of(VideoStatus.ENDED))
            await finish_if_complete(self._repo, self._lifecycle, self._playback, video.id,
                                     self._groups)
        return await self._stream(video_id)

    async def end_quiet(self) -> Sequence[str]:
        """End every stream that has sent no chunk for the idle timeout."""
        quiet = await self._repo.quiet_streams(datetime.now(UTC) - self._idle_timeout)
        for video_id in quiet:
            await self.end(video_id)
        return quiet
