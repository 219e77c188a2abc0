"""Helpers for the live feed's unit tests: a clock, a viewer that collects what it is sent,
videos in a real (SQLite) catalogue and segment events."""

import json
from datetime import UTC, datetime
from typing import Any

from chunkcast.adapters.db.repository import SqlVideoRepository
from chunkcast.domain import events, keys
from chunkcast.domain.ids import new_video_id
from chunkcast.domain.ladder import Rendition
from chunkcast.domain.videos import Segment, Video, VideoKind, VideoStatus
from chunkcast.services.live import LiveFeed, Membership

R240 = Rendition("240p", 426, 240, 400, 64, 30.0)
R360 = Rendition("360p", 640, 360, 800, 96, 30.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Collect:
    """A viewer: keeps every message it is sent, and whether it was revoked."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.revoked = False

    def deliver(self, text: str) -> None:
        self.texts.append(text)

    def revoke(self) -> None:
        self.revoked = True

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(t) for t in self.texts]
        return [m for m in found if kind is None or m["type"] == kind]

    def seqs(self) -> list[tuple[str, int]]:
        """``(type, seq)`` of the segment and gap messages, in order."""
        return [(m["type"], m["seq"]) for m in self.messages() if m["type"] in ("segment",
                                                                                "gap")]


async def add_video(repo: SqlVideoRepository, kind: VideoKind = VideoKind.LIVE,
                    status: VideoStatus = VideoStatus.LIVE, *, private: bool = False) -> str:
    """A video with the 240p and 360p rungs (their codecs known)."""
    video_id = new_video_id()
    await repo.add_video(Video(video_id, kind, "t", status, datetime.now(UTC),
                               private=private))
    await repo.set_plan(video_id, [R240, R360], 1)
    for name in ("240p", "360p"):
        await repo.set_codecs(video_id, name, "avc1.64000d,mp4a.40.2")
    return video_id


def ready(video_id: str, seq: int, rendition: str = "240p") -> events.SegmentReady:
    return events.SegmentReady(video_id, rendition, seq, keys.segment(video_id, rendition, seq),
                               keys.init_segment(video_id, rendition), 1.4 + seq, 1.0, None,
                               "2026-11-24T10:00:00.000Z")


def stored(event: events.SegmentReady) -> Segment:
    """The catalogue's record of an event's segment."""
    return Segment(event.video_id, event.rendition, event.seq, event.key, event.pts_start,
                   event.duration, event.captured_at)


async def publish(feed: LiveFeed, repo: SqlVideoRepository, video_id: str, seqs: range | list[int],
                  rendition: str = "240p") -> None:
    """Segments as a transcoder makes them: recorded in the catalogue, then announced."""
    for seq in seqs:
        event = ready(video_id, seq, rendition)
        await repo.upsert_segments([stored(event)])
        await feed.on_segment(event)


async def change_status(feed: LiveFeed, repo: SqlVideoRepository, video_id: str,
                        status: VideoStatus) -> None:
    """As the lifecycle does: recorded, then announced."""
    await repo.set_status(video_id, status)
    await feed.on_status(events.VideoStatusChanged(video_id, status.value))


async def watch(feed: LiveFeed, video_id: str, rendition: str = "240p",
                since: int | None = None, *, start: int = 3, signed: bool = False
                ) -> tuple[Collect, Membership]:
    """A viewer that joined, caught up and now gets every new message."""
    seat = await feed.join(video_id, rendition)
    viewer = Collect()
    async for text in seat.catch_up(viewer, since, start, signed=signed):
        viewer.texts.append(text)
    return viewer, seat
