"""Creating, uploading, reading and deleting videos."""

import math
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from chunkcast.domain import events, keys
from chunkcast.domain.errors import Conflict, InvalidInput, NotFound, TooLarge
from chunkcast.domain.ids import check_video_id, new_video_id
from chunkcast.domain.videos import RenditionInfo, Video, VideoKind, VideoStatus
from chunkcast.metrics import Metrics
from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import VideoRepository
from chunkcast.ports.storage import (
    MAX_PARTS,
    MultipartUpload,
    ObjectStore,
    PresignedRequest,
)
from chunkcast.services.lifecycle import Lifecycle
from chunkcast.services.outbox import publish_recorded

MAX_TITLE = 200
PART_SIZE = 8 * 1024**2  # preferred; larger when the upload would need too many parts


def clean_title(title: str) -> str:
    """Titles are free text shown to people; control characters are dropped."""
    cleaned = "".join(ch for ch in title if ch.isprintable()).strip()
    if not cleaned:
        raise InvalidInput("the title is empty")
    if len(cleaned) > MAX_TITLE:
        raise InvalidInput(f"the title is longer than {MAX_TITLE} characters")
    return cleaned


class Videos:
    def __init__(self, repo: VideoRepository, store: ObjectStore, bus: EventBus,
                 lifecycle: Lifecycle, metrics: Metrics, *, upload_url_seconds: int,
                 max_upload_bytes: int = 20 * 1024**3) -> None:
        self._repo = repo
        self._store = store
        self._bus = bus
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._upload_ttl = upload_url_seconds
        self._max_bytes = max_upload_bytes

    async def create(self, title: str, size: int | None = None, *, private: bool = False
                     ) -> tuple[Video, PresignedRequest | MultipartUpload]:
        """A new VOD video and where its source goes: one pre-signed PUT, or, for a source of
        ``size`` bytes above the store's multipart threshold, pre-signed part URLs (a failed
        part is sent again on its own, so a large upload resumes instead of starting over).
        A pre-signed PUT does not bind the length: the size is checked again at ``complete``."""
        if size is not None and size > self._max_bytes:
            raise TooLarge(f"the upload is larger than the limit of {self._max_bytes} bytes")
        video = Video(id=new_video_id(), kind=VideoKind.VOD, title=clean_title(title),
                      status=VideoStatus.CREATED, created_at=datetime.now(UTC),
                      private=private)
        await self._repo.add_video(video)
        store = self._store.multipart
        if store is not None and size is not None and size > store.multipart_threshold:
            part_size = max(PART_SIZE, math.ceil(size / MAX_PARTS))
            upload = await store.start_multipart(keys.source(video.id), size, part_size,
                                                 self._upload_ttl)
            return video, upload
        return video, self.upload_url(video)


    def upload_url(self, video: Video) -> PresignedRequest:
        return self._store.presign_put(keys.source(video.id), self._upload_ttl)

    async def get(self, video_id: str) -> Video:
        video = await self._repo.get_video(check_video_id(video_id))
        if video is None:
            raise NotFound("no such video")
        return video

    async def renditions(self, video_id: str) -> Sequence[RenditionInfo]:
        """The video's renditions (empty until its ladder is chosen), codecs once known."""
        return await self._repo.renditions(video_id)

    async def list(self, *, limit: int, offset: int, public_only: bool = False,
                   statuses: Collection[VideoStatus] = (), kind: VideoKind | None = None
                   ) -> Sequence[Video]:
        return await self._repo.list_videos(limit=limit, offset=offset,
                                            public_only=public_only, statuses=statuses,
                                            kind=kind)

    async def set_private(self, video_id: str, private: bool) -> Video:
        """Make a video private (playback needs a signed URL) or public again. Every API
        process hears of it at once (its viewers without a link are closed)."""
        video = await self.get(video_id)
        await self._repo.set_private(video.id, private)
        await self._bus.publish(events.VIDEOS, events.VideoPrivacyChanged(video.id, private))
        return replace(video, private=private)

    async def complete(self, video_id: str,
                       multipart: tuple[str, Sequence[tuple[int, str]]] | None = None) -> Video:
        """The client says the source is uploaded (for a multipart upload: its id and the
        parts' ETags): check it is there and start processing. Saying it again once
        processing has started changes nothing, but publishes what the first call could not
        (the bus was down) and is still waiting."""
        video = await self.get(video_id)
        if video.kind is not VideoKind.VOD:
            raise Conflict("only uploaded videos are completed; streams are ended")
        if video.status is VideoStatus.UPLOADED:
            await publish_recorded(self._repo, self._bus, await self._repo.pending(video.id))
        if video.status is not VideoStatus.CREATED:
            return video
        if multipart is not None:
            store = self._store.multipart
            if store is None:
                raise InvalidInput("this storage does not take multipart uploads")
            upload_id, parts = multipart
            await store.complete_multipart(keys.source(video.id), upload_id, [*parts])
        info = await self._store.stat(keys.source(video.id))
        if info is None:
            self._metrics.uploads.labels("missing").inc()
            raise Conflict("nothing was uploaded yet: PUT the file to the upload URL first")
        if info.size == 0:
            self._metrics.uploads.labels("empty").inc()
            await self._lifecycle.fail(video.id, "the uploaded file is empty")
            return await self.get(video_id)
        if info.size > self._max_bytes:
            # Never accepted, so not kept: an object over the limit only holds storage.
            self._metrics.uploads.labels("too_large").inc()
            await self._store.delete_prefix(keys.source(video.id))
            await self._lifecycle.fail(video.id, f"the uploaded file is larger than the limit "
                                                 f"of {self._max_bytes} bytes")
            return await self.get(video_id)
        # The splitter's event is committed with the status: it cannot be lost in between.
        source = events.SourceUploaded(video.id, keys.source(video.id))
        if await self._lifecycle.move(video.id, VideoStatus.UPLOADED,
                                      only_from=(VideoStatus.CREATED,),
                                      also=[(events.SOURCES, source)]):
            self._metrics.uploads.labels("ok").inc()
        return await self.get(video_id)

    async def progress(self, video: Video) -> int:
        """0-100: transcodes done over transcodes needed."""
        if video.status.is_complete:
            return 100
        if video.status is not VideoStatus.PROCESSING or video.jobs_total == 0:
            return 0
        done = await self._repo.jobs_done(video.id)
        return min(99, math.floor(100 * done / video.jobs_total))

    async def delete(self, video_id: str) -> None:
        """Delete the video's objects, then its records."""
        video = await self.get(video_id)
        for prefix in keys.video_prefixes(video.id):
            await self._store.delete_prefix(prefix)
        await self._repo.delete_video(video.id)
