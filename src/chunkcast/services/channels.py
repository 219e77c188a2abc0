"""One channel of the live feed: a (video, rendition), its segments put in seq order, a
bounded window of the latest messages, and the viewers who get each new one.

Pure bookkeeping, without I/O: the feed (:mod:`chunkcast.services.live`) creates channels,
loads them from the catalogue, hands them events, replays what is older than the window from
the catalogue and evicts channels nobody needs.
"""

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from chunkcast.domain.videos import RenditionInfo, Segment
from chunkcast.services.live_messages import Messages


class Listener(Protocol):
    """A viewer, as the feed sees it."""

    def deliver(self, text: str) -> None:
        """Take one serialised message. Must not block: a viewer that cannot keep up is
        dropped by its own connection, never waited for."""

    def revoke(self) -> None:
        """The video was made private and this viewer came without a signed link."""


@dataclass(frozen=True, slots=True)
class FeedItem:
    seq: int
    text: str
    segment: Segment | None  # None: a gap marker (the seq was skipped)
    ready_at: str | None = None


@dataclass(frozen=True, slots=True)
class Held:
    """A segment waiting for the seqs before it."""

    segment: Segment
    since: float  # when it started waiting (the feed's monotonic clock)
    ready_at: str | None


Render = Callable[[Segment, str | None], str]  # a segment message, with its ready_at


class Channel:
    """``render`` serialises a segment message as the video's viewers get it now (it follows
    the video's privacy)."""

    def __init__(self, video_id: str, rendition: str, *, window: int, render: Render) -> None:
        self.video_id = video_id
        self.rendition = rendition
        self._render = render
        self.next_seq = 0  # every seq below it was delivered, or skipped as a gap
        # The latest ``window`` items, contiguous seqs, oldest first. Eviction: the oldest
        # drops out as a new one comes; whoever asks for it is served from the catalogue.
        self.items: deque[FeedItem] = deque(maxlen=window)
        # Segments waiting for an earlier seq. Eviction: delivered once the hole is filled,
        # or skipped past (gaps) after the gap timeout or when the video is complete. A live
        # chunk's seq lies within CHUNKCAST_LIVE_SEQ_WINDOW of the last one, so this stays
        # small; an upload's is bounded by the upload.
        self.pending: dict[int, Held] = {}
        # Viewers getting every new item, and whether each holds a signed link. Eviction:
        # they leave, or are revoked when the video is made private.
        self.members: dict[Listener, bool] = {}
        self.seats = 0  # memberships not yet left (joining, receiving or revoked)
        self.info: RenditionInfo | None = None  # from the catalogue, once its codecs are known
        self.started = asyncio.Event()  # set by the first item
        # Changes with every item taken and status heard; blocking playlist requests wait
        # for it (:meth:`wait_changed`). Each change replaces the event its waiters hold.
        self.version = 0
        self._changed = asyncio.Event()
        self.loaded = asyncio.Event()  # set once loaded from the catalogue

    @property
    def first_seq(self) -> int:
        """The oldest seq held in memory (``next_seq`` when none is)."""
        return self.items[0].seq if self.items else self.next_seq

    def hold(self, segment: Segment, now: float, ready_at: str | None) -> bool:
        """Take a segment; False when it was delivered already or is waiting (a redelivered
        event)."""
        if segment.seq < self.next_seq or segment.seq in self.pending:
            return False
        self.pending[segment.seq] = Held(segment, now, ready_at)
        return True

    def flush(self) -> None:
        """Deliver the waiting segments that come next in order."""
        while self.next_seq in self.pending:
            held = self.pending.pop(self.next_seq)
            self._append(FeedItem(held.segment.seq, self._render(held.segment, held.ready_at),
                                  held.segment, held.ready_at))

    def overdue(self, now: float, timeout: float) -> bool:
        """Whether a segment has waited for a missing one for ``timeout`` seconds."""
        return bool(self.pending) and now - min(h.since for h in self.pending.values()) \
            >= timeout

    def skip_gaps(self, now: float, timeout: float, *, force: bool) -> None:
        """Skip the missing seqs that held segments have waited for too long (all of them
        with ``force``), each with a gap message, and deliver what follows."""
        while self.pending and (force or self.overdue(now, timeout)):
            first = min(self.pending)
            while self.next_seq < first:
                self._append(FeedItem(self.next_seq, Messages.gap(self.next_seq), None))
            self.flush()

    def start_at(self, seq: int) -> None:
        """Deliver from ``seq`` on (a channel created mid-stream: what is older is in the
        catalogue)."""
        self.next_seq = seq
        for early in [s for s in self.pending if s < seq]:
            del self.pending[early]

    def after(self, seq: int) -> list[FeedItem]:
        """The items held in memory after ``seq``."""
        return list(itertools.islice(self.items, max(0, seq + 1 - self.first_seq), None))

    def segments(self) -> list[Segment]:
        """The segments held in memory, in seq order (gaps left out)."""
        return [i.segment for i in self.items if i.segment is not None]

    def rerender(self) -> None:
        """Serialise the items held again (the video's privacy changed: its URLs did)."""
        for index, item in enumerate(self.items):
            if item.segment is not None:
                self.items[index] = replace(item, text=self._render(item.segment,
                                                                    item.ready_at))

    def broadcast(self, text: str) -> None:
        """Hand one message to every member."""
        for listener in list(self.members):
            listener.deliver(text)  # the same string for every viewer

    def notify(self) -> None:
        """Wake whoever waits for the channel to change."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, version: int, timeout_s: float) -> None:
        """Return once the channel is past ``version``, or after ``timeout_s``."""
        if self.version == version:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)

    def _append(self, item: FeedItem) -> None:
        self.items.append(item)
        self.next_seq = item.seq + 1
        self.started.set()
        self.broadcast(item.text)
        self.notify()
