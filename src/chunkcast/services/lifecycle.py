"""Status changes of a video, recorded in the catalogue and announced on the bus."""

import logging

from chunkcast.domain import events
from chunkcast.domain.errors import public_text
from chunkcast.domain.videos import VideoStatus, check_move, sources_of
from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import VideoRepository

log = logging.getLogger(__name__)



class Lifecycle:
    def __init__(self, repo: VideoRepository, bus: EventBus) -> None:
        self._repo = repo
        self._bus = bus

    async def move(
        self, video_id: str, status: VideoStatus, *, only_from: tuple[VideoStatus, ...],
        error: str | None = None,
    ) -> bool:
        """Change the status if it is one of ``only_from`` (each a move the state machine
        allows); announce it when it changed."""
        for current in only_from:
            check_move(current, status)
        changed = await self._repo.set_status(video_id, status, error=error, only_from=only_from)
        if changed:
            await self.announce(video_id, status, error)
        return changed

    async def announce(self, video_id: str, status: VideoStatus, error: str | None = None
                       ) -> None:
        """Tell every API process (and so every viewer) about a status."""
        await self._bus.publish(events.VIDEOS,
                                events.VideoStatusChanged(video_id, status.value, error))

    async def fail(self, video_id: str, reason: str) -> None:
        """Mark a video failed with a reason a person understands. What was already stored
        (the source, finished segments) is kept. The reason is public: no paths or URLs."""
        reason = public_text(reason)
        if await self.move(video_id, VideoStatus.FAILED, only_from=sources_of(VideoStatus.FAILED),
                           error=reason):
            log.warning("video %s failed: %s", video_id, reason)
