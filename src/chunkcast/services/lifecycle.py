"""Status changes of a video, recorded in the catalogue and announced on the bus."""

import logging
from collections.abc import Sequence

from chunkcast.domain import events
from chunkcast.domain.errors import public_text
from chunkcast.domain.videos import VideoStatus, check_move, sources_of
from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import Announcement, VideoRepository
from chunkcast.services.outbox import publish_recorded

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(self, repo: VideoRepository, bus: EventBus) -> None:
        self._repo = repo
        self._bus = bus

    async def move(
        self, video_id: str, status: VideoStatus, *, only_from: tuple[VideoStatus, ...],
        error: str | None = None, also: Sequence[Announcement] = (),
    ) -> bool:
        """Change the status if it is one of ``only_from`` (each a move the state machine
        allows) and announce it when it changed, with the events of ``also`` after it. The
        change and its events are committed together (the outbox): once this returns True,
        they reach the bus even if it is down just now."""
        for current in only_from:
            check_move(current, status)
        changed = events.VideoStatusChanged(video_id, status.value, error)
        recorded = await self._repo.move_status(
            video_id, status, [(events.VIDEOS, changed), *also], only_from=only_from,
            error=error)
        await publish_recorded(self._repo, self._bus, recorded)
        return bool(recorded)

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
