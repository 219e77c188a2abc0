"""The live feed of one API process: ``segments`` events put in seq order per channel (video,
rendition) and handed to the viewers who joined it; ``videos`` events for status and privacy.

Bounded: each channel keeps a window of its latest items (:class:`Channel`), older history is
read from the catalogue, and channels nobody needs are evicted. What is kept, and when it
goes, is stated where each structure is declared in :class:`LiveFeed`.

Segments finished out of order by parallel workers are held until the ones before them arrive;
a seq of a live stream that does not arrive within the gap timeout (a chunk that failed for
good) is skipped with a ``gap`` message so viewers never stall forever.
"""

import asyncio
import bisect
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from chunkcast.domain import events
from chunkcast.domain.errors import NotFound
from chunkcast.domain.videos import RenditionInfo, Segment, Video, VideoKind, VideoStatus
from chunkcast.ports.repository import VideoRepository
from chunkcast.services.channels import Channel, Listener
from chunkcast.services.live_messages import Messages
from chunkcast.services.playback import Recent

COMPLETE = frozenset(s.value for s in (VideoStatus.READY, VideoStatus.ENDED,
                                       VideoStatus.FAILED))
UPLOADING = frozenset(s.value for s in (VideoStatus.CREATED, VideoStatus.UPLOADED,
                                        VideoStatus.PROCESSING))
WINDOW_SEGMENTS = 120  # items a channel keeps in memory: 2 minutes of 1 s segments
CATALOGUE_PAGE = 1000  # segments read from the catalogue at once for an old ``since`` replay
IDLE_TIMEOUT_S = 60.0  # a channel nobody holds and nothing reaches is evicted after this
IGNORED_VIDEOS = 4096  # videos remembered as not followed
VIEWERS_INTERVAL_S = 1.0  # at most one viewers message per video per interval

Key = tuple[str, str]  # (video_id, rendition)


def _seq(segment: Segment) -> int:
    return segment.seq


@dataclass
class _Video:
    """What the feed knows of a video it holds channels of."""

    kind: VideoKind
    private: bool
    status: str
    channels: dict[str, Channel] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.status in COMPLETE


class LiveFeed:
    def __init__(self, repo: VideoRepository, base_url: str, *, gap_timeout_s: float,
                 window_segments: int = WINDOW_SEGMENTS, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 on_privacy: Callable[[str, bool], None] | None = None,
                 elsewhere: Callable[[str], int] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``window_segments``: items each channel keeps in memory (older ones come from
        the catalogue); ``on_privacy``: told of every privacy change (the origin's memory of
        privacy); ``elsewhere``: a video's viewers on the other API processes (the cluster's
        audience, :class:`~chunkcast.services.audience.Audience`)."""
        self._repo = repo
        self.messages = Messages(base_url)
        self._gap_timeout = gap_timeout_s
        self._window = max(1, window_segments)
        self._idle_timeout = idle_timeout_s
        self._on_privacy = on_privacy
        self._elsewhere = elsewhere
        self._clock = clock
        # Channels by (video, rendition). Created for a live video's segments (its viewers
        # and playlists are served from memory), for anything else only when a viewer joins.
        # Eviction: a complete video's (ready, ended, failed) as soon as nobody holds it;
        # any other once nobody has held it nor been sent anything for the idle timeout.
        self._channels: dict[Key, Channel] = {}
        # What is known of the videos that have channels. Eviction: with their last channel.
        self._videos: dict[str, _Video] = {}
        # Channels nobody holds, least recently active first: the idle eviction's queue.
        # Eviction: when evicted, or held again.
        self._idle: OrderedDict[Key, float] = OrderedDict()
        # Channels of live videos with segments waiting for a missing seq: all that the gap
        # sweeper visits. Eviction: when nothing waits (an upload's wait for the end).
        self._waiting: set[Channel] = set()
        # Videos whose segment events are dropped: uploads nobody watches, complete videos.
        # Eviction: least recently used beyond IGNORED_VIDEOS (one forgotten costs one
        # catalogue read at its next event).
        self._ignored: OrderedDict[str, None] = OrderedDict()
        # Videos whose audience changed (here or elsewhere: :meth:`recount`), with when it
        # first did. Eviction: when their viewers message goes out (at most one per
        # VIEWERS_INTERVAL_S), or with the video's last channel.
        self._recount: dict[str, float] = {}
        # When each channel took its newest live segment: (its version then, clock). Eviction:
        # with the channel.
        self._arrived: dict[Key, tuple[int, float]] = {}

    # -- viewers ---------------------------------------------------------------------------

    async def join(self, video_id: str, rendition: str) -> "Membership":
        """A place in a rendition's channel (raise NotFound for an unknown video or
        rendition). The channel is kept while the place is held; the viewer gets nothing
        until it has caught up (:meth:`Membership.catch_up`)."""
        info = None
        if (video_id, rendition) not in self._channels:
            info = await self._rendition(video_id, rendition)
            if info is None:
                raise NotFound("no such video or rendition")
        # A channel already here needs nothing from the catalogue: viewers still join it
        # while the catalogue is unreachable.
        channel = await self._open(video_id, rendition, hold=True, info=info)
        return Membership(self, channel)

    def viewers(self, video_id: str) -> int:
        """How many viewers ``video_id`` has (any rendition): here, and on the other API
        processes as last reported."""
        here = self.viewers_here(video_id)
        return here + self._elsewhere(video_id) if self._elsewhere is not None else here

    def viewers_here(self, video_id: str) -> int:
        """How many viewers of ``video_id`` this process serves (any rendition)."""
        state = self._videos.get(video_id)
        return sum(len(c.members) for c in state.channels.values()) if state else 0

    def audience(self) -> dict[str, int]:
        """Viewers per video on this process, for the videos that have some (what this
        process reports to the others)."""
        counts = {video_id: self.viewers_here(video_id) for video_id in self._videos}
        return {video_id: n for video_id, n in counts.items() if n}

    def recount(self, video_ids: Iterable[str]) -> None:
        """The viewers of ``video_ids`` elsewhere changed: their viewers here are told the
        new total (at most once per VIEWERS_INTERVAL_S)."""
        now = self._clock()
        for video_id in video_ids:
            if video_id in self._videos:
                self._recount.setdefault(video_id, now)

    def recent(self, video_id: str, rendition: str) -> Recent | None:
        """The segments held in memory for a rendition, None when it has no channel."""
        channel = self._channels.get((video_id, rendition))
        if channel is None or not channel.loaded.is_set():
            return None
        arrived = self._arrived.get((video_id, rendition))
        age = self._clock() - arrived[1] if arrived is not None and \
            arrived[0] == channel.version else None
        return Recent(channel.first_seq, channel.segments(), channel.version, age)

    def renditions(self, video_id: str) -> list[str]:
        """The renditions of ``video_id`` this process holds channels of."""
        state = self._videos.get(video_id)
        return list(state.channels) if state is not None else []

    async def changed(self, video_id: str, rendition: str, version: int,
                      timeout_s: float) -> None:
        """Return once the rendition's channel is past ``version`` (a new item, or the
        video's status changed), or after ``timeout_s``: what a blocking playlist request
        waits for. The channel is opened if this process has none (raise NotFound for an
        unknown video)."""
        channel = self._channels.get((video_id, rendition))
        if channel is None:
            channel = await self._open(video_id, rendition, hold=False)
            if channel.version != version:
                return
        await channel.wait_changed(version, timeout_s)

    async def _rendition(self, video_id: str, rendition: str) -> RenditionInfo | None:
        """A rendition of the video as the catalogue has it (None: no such rendition)."""
        infos = await self._repo.renditions(video_id)
        return next((i for i in infos if i.rendition.name == rendition), None)

    def _render(self, state: _Video) -> Callable[[Segment, str | None], str]:
        def render(segment: Segment, ready_at: str | None) -> str:
            return self.messages.segment(segment, ready_at, private=state.private)
        return render

    async def _catch_up(self, seat: "Membership", listener: Listener, since: int | None,
                        start: int, signed: bool) -> AsyncGenerator[str, None]:
        channel = seat.channel
        cursor = max(-1, channel.next_seq - 1 - start if since is None else since)
        while True:
            first = channel.first_seq
            if cursor + 1 < first:  # older than the window: from the catalogue
                async for text in self._from_catalogue(channel, cursor, first):
                    yield text
                cursor = first - 1
                continue
            batch = channel.after(cursor)
            if not batch:
                # No await between this check and going live: the viewer misses nothing
                # and gets nothing twice.
                self._go_live(seat, listener, signed)
                return
            for item in batch:
                yield item.text
            cursor = batch[-1].seq

    async def _from_catalogue(self, channel: Channel, after: int, before: int
                              ) -> AsyncIterator[str]:
        """Messages for the seqs in ``(after, before)``, read from the catalogue a page at a
        time; its holes are gaps (the feed skipped them: everything before the window was
        delivered)."""
        state = self._videos[channel.video_id]
        expected = after + 1
        while expected < before:
            page = await self._repo.segments(channel.video_id, channel.rendition,
                                             after=expected - 1, before=before,
                                             first=CATALOGUE_PAGE)
            for segment in page:
                for missing in range(expected, segment.seq):
                    yield Messages.gap(missing)
                yield self.messages.segment(segment, None, private=state.private)
                expected = segment.seq + 1
            if len(page) < CATALOGUE_PAGE:
                break
        for missing in range(expected, before):
            yield Messages.gap(missing)

    def _go_live(self, seat: "Membership", listener: Listener, signed: bool) -> None:
        channel = seat.channel
        state = self._videos[channel.video_id]
        if state.private and not signed:  # made private while it was catching up
            listener.revoke()
            return
        if state.status:  # after the replay: "ended" means every segment has been sent
            listener.deliver(Messages.status(state.status))
        channel.members[listener] = signed
        seat.listener = listener
        self._recount.setdefault(channel.video_id, self._clock())

    def _leave(self, seat: "Membership") -> None:
        channel = seat.channel
        if seat.listener is not None and channel.members.pop(seat.listener, None) is not None:
            self._recount.setdefault(channel.video_id, self._clock())
        channel.seats -= 1
        if channel.seats == 0 and self._channels.get(self._key(channel)) is channel:
            self._release(channel)

    # -- channels --------------------------------------------------------------------------

    @staticmethod
    def _key(channel: Channel) -> Key:
        return channel.video_id, channel.rendition

    async def _open(self, video_id: str, rendition: str, *, hold: bool,
                    video: Video | None = None, info: RenditionInfo | None = None
                    ) -> Channel:
        """The channel, created and loaded from the catalogue the first time it is needed
        (``video`` and ``info``: what is already known of it); with ``hold`` it is held (one
        more seat) from before the load."""
        key = (video_id, rendition)
        while True:
            channel = self._channels.get(key)
            if channel is None and video_id not in self._videos and video is None:
                video = await self._repo.get_video(video_id)
                if video is None:
                    raise NotFound("no such video")
                continue  # the channel may have been created meanwhile
            if channel is None:
                state = self._videos.get(video_id)
                if state is None:
                    assert video is not None
                    state = self._videos[video_id] = _Video(video.kind, video.private,
                                                            video.status.value)
                channel = Channel(video_id, rendition, window=self._window,
                                  render=self._render(state))
                channel.info = info if info is not None and info.codecs is not None else None
                self._channels[key] = state.channels[rendition] = channel
                channel.seats += hold
                try:
                    await self._load(channel, state)
                except BaseException:
                    self._evict(channel)
                    raise
                finally:
                    channel.loaded.set()
                if channel.seats == 0:
                    self._release(channel)
                return channel
            if hold:
                channel.seats += 1
                self._idle.pop(key, None)
            await channel.loaded.wait()
            if self._channels.get(key) is channel:
                return channel
            channel.seats -= hold  # its load failed: try again

    async def _load(self, channel: Channel, state: _Video) -> None:
        """The channel's latest segments from the catalogue. Segments after a hole wait like
        live ones (parallel workers may still be filling it); once a video is complete, holes
        are gaps at once. An upload still processing is delivered from its first seq (its
        chunks finish in any order and may take their time)."""
        if state.kind is VideoKind.VOD and not state.complete:
            # An upload's history is bounded by its length.
            segments = await self._repo.segments(channel.video_id, channel.rendition)
            start = 0
        else:  # only the window: a 24/7 stream's history is not read at all
            segments = await self._repo.segments(channel.video_id, channel.rendition,
                                                 last=self._window)
            start = segments[0].seq if segments else 0
        channel.start_at(start)
        now = self._clock()
        for index in range(bisect.bisect_left(segments, start, key=_seq), len(segments)):
            channel.hold(segments[index], now, None)
        channel.flush()
        if state.complete:
            channel.skip_gaps(now, self._gap_timeout, force=True)
        if channel.info is None:  # what viewers are sent first (see Membership.rendition)
            info = await self._rendition(channel.video_id, channel.rendition)
            channel.info = info if info is not None and info.codecs is not None else None
        self._touch(channel)

    def _release(self, channel: Channel) -> None:
        """Nobody holds the channel any more."""
        state = self._videos[channel.video_id]
        if state.complete:
            self._evict(channel)
        else:
            self._idle[self._key(channel)] = self._clock()

    def _evict(self, channel: Channel) -> None:
        key = self._key(channel)
        if self._channels.get(key) is not channel:
            return
        del self._channels[key]
        self._arrived.pop(key, None)
        self._idle.pop(key, None)
        self._waiting.discard(channel)
        state = self._videos[channel.video_id]
        del state.channels[channel.rendition]
        if not state.channels:
            del self._videos[channel.video_id]
            self._recount.pop(channel.video_id, None)
            if state.complete or state.kind is VideoKind.VOD:
                self._ignore(channel.video_id)

    def _touch(self, channel: Channel) -> None:
        """After the channel changed: is it waiting for a seq, and it is active."""
        if channel.pending and self._videos[channel.video_id].kind is VideoKind.LIVE:
            self._waiting.add(channel)
        else:
            self._waiting.discard(channel)
        key = self._key(channel)
        if key in self._idle:
            self._idle[key] = self._clock()
            self._idle.move_to_end(key)

    def _ignore(self, video_id: str) -> None:
        self._ignored[video_id] = None
        self._ignored.move_to_end(video_id)
        if len(self._ignored) > IGNORED_VIDEOS:
            self._ignored.popitem(last=False)

    # -- events ----------------------------------------------------------------------------

    async def on_segment(self, event: events.SegmentReady) -> None:
        channel = self._channels.get((event.video_id, event.rendition))
        if channel is None:
            channel = await self._follow(event.video_id, event.rendition)
            if channel is None:
                return
        segment = Segment(event.video_id, event.rendition, event.seq, event.key,
                          event.pts_start, event.duration, event.captured_at, event.parts)
        now = self._clock()
        if channel.hold(segment, now, event.ready_at) and channel.loaded.is_set():
            channel.flush()
            self._arrived[(event.video_id, event.rendition)] = (channel.version, now)
            self._touch(channel)

    async def _follow(self, video_id: str, rendition: str) -> Channel | None:
        """The channel for the segment event of a channel that does not exist: created for
        a live video; an upload's only when someone watches it."""
        state = self._videos.get(video_id)
        if state is not None:
            if state.kind is VideoKind.VOD or state.complete:
                return None
            return await self._open(video_id, rendition, hold=False)
        if video_id in self._ignored:
            self._ignored.move_to_end(video_id)
            return None
        video = await self._repo.get_video(video_id)
        if video is None or video.kind is VideoKind.VOD or video.status.value in COMPLETE:
            self._ignore(video_id)
            return None
        return await self._open(video_id, rendition, hold=False, video=video)

    async def on_status(self, event: events.VideoStatusChanged) -> None:
        state = self._videos.get(event.video_id)
        if state is None:
            if event.status in COMPLETE or event.status in UPLOADING:
                self._ignore(event.video_id)
            else:
                self._ignored.pop(event.video_id, None)
            return
        if event.status in COMPLETE:
            # Nothing more will come: deliver what is held or stored, skipping what is
            # missing, before viewers hear the video is complete.
            for channel in [c for c in state.channels.values() if c.loaded.is_set()]:
                await self._recover(channel, always=True)
                channel.skip_gaps(self._clock(), self._gap_timeout, force=True)
        state.status = event.status
        text = Messages.status(event.status)
        for channel in list(state.channels.values()):
            channel.broadcast(text)
            channel.notify()
            if channel.loaded.is_set():
                self._touch(channel)
                if state.complete and channel.seats == 0:
                    self._evict(channel)

    def on_privacy(self, event: events.VideoPrivacyChanged) -> None:
        """Applied at once: the window's messages are serialised again with or without the
        slot for each viewer's token, and viewers without a link are revoked."""
        if self._on_privacy is not None:
            self._on_privacy(event.video_id, event.private)
        state = self._videos.get(event.video_id)
        if state is None or state.private == event.private:
            return
        state.private = event.private
        for channel in state.channels.values():
            channel.rerender()
            if event.private:
                for listener in [m for m, signed in channel.members.items() if not signed]:
                    del channel.members[listener]
                    listener.revoke()
                    self._recount.setdefault(event.video_id, self._clock())

    async def sweep(self) -> None:
        """Skip seqs that have been missing for longer than the gap timeout, unless the
        catalogue has them (their event was lost, e.g. while the bus reconnected); evict idle
        channels; tell viewers of a changed audience. Visits only what has something due."""
        now = self._clock()
        for channel in [c for c in self._waiting if c.overdue(now, self._gap_timeout)]:
            await self._recover(channel)
            if self._channels.get(self._key(channel)) is channel:
                channel.skip_gaps(self._clock(), self._gap_timeout, force=False)
                self._touch(channel)
        while self._idle:
            key, since = next(iter(self._idle.items()))
            if now - since < self._idle_timeout:
                break
            self._evict(self._channels[key])
        for video_id in [v for v, t in self._recount.items() if now - t >= VIEWERS_INTERVAL_S]:
            del self._recount[video_id]
            text = Messages.viewers(self.viewers(video_id))
            for channel in self._videos[video_id].channels.values():
                channel.broadcast(text)

    async def _recover(self, channel: Channel, *, always: bool = False) -> None:
        """Take the segments that are missing from the catalogue: when something waits for
        them, or ``always`` (the video is complete: its last events may have been lost)."""
        if not channel.pending and not always:
            return
        segments = await self._repo.segments(channel.video_id, channel.rendition,
                                             after=channel.next_seq - 1)
        now = self._clock()
        for segment in segments:
            channel.hold(segment, now, None)
        channel.flush()

    async def resync(self, topic: str) -> None:
        """After events of ``topic`` were lost (the subscription broke, or fell behind and
        was cut off): what they would have said is read from the catalogue, for the videos
        followed."""
        for video_id in list(self._videos):
            if topic == events.VIDEOS:
                video = await self._repo.get_video(video_id)
                state = self._videos.get(video_id)
                if video is None or state is None:
                    continue
                if video.private != state.private:
                    self.on_privacy(events.VideoPrivacyChanged(video_id, video.private))
                if video.status.value != state.status:
                    await self.on_status(events.VideoStatusChanged(video_id,
                                                                   video.status.value))
            else:
                state = self._videos.get(video_id)
                for channel in list(state.channels.values()) if state else []:
                    if channel.loaded.is_set() and self._channels.get(self._key(channel)) \
                            is channel:
                        await self._recover(channel, always=True)
                        self._touch(channel)

    @property
    def sweep_interval_s(self) -> float:
        """How often :meth:`sweep` should run: soon enough after a gap timeout."""
        return min(0.25, self._gap_timeout / 4)

    def sizes(self) -> dict[str, int]:
        """What the feed holds, by structure (every one of them is bounded)."""
        channels = list(self._channels.values())
        return {"channels": len(channels), "videos": len(self._videos),
                "items": sum(len(c.items) for c in channels),
                "pending": sum(len(c.pending) for c in channels),
                "members": sum(len(c.members) for c in channels), "idle": len(self._idle),
                "waiting": len(self._waiting), "ignored": len(self._ignored),
                "recount": len(self._recount)}


class Membership:
    """A viewer's place in one channel, from :meth:`LiveFeed.join` to :meth:`leave`."""

    def __init__(self, feed: LiveFeed, channel: Channel) -> None:
        self._feed = feed
        self.channel = channel
        self.listener: Listener | None = None  # once it receives new items
        self._left = False

    @property
    def private(self) -> bool:
        """Whether the video is private now (its viewers need a signed link)."""
        return self._feed._videos[self.channel.video_id].private

    async def rendition(self) -> RenditionInfo | None:
        """The rendition (codecs, size): from the catalogue until its codecs are known."""
        channel = self.channel
        if channel.info is not None:
            return channel.info
        info = await self._feed._rendition(channel.video_id, channel.rendition)
        if info is not None and info.codecs is not None:
            channel.info = info
        return info

    async def first_segment(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until the channel has delivered something."""
        if not self.channel.started.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.channel.started.wait(), timeout_s)

    def init_message(self, info: RenditionInfo) -> str:
        r = info.rendition
        return self._feed.messages.init(self.channel.video_id, self.channel.rendition,
                                        info.codecs, r.width, r.height, private=self.private)

    def catch_up(self, listener: Listener, since: int | None, start: int, *,
                 signed: bool) -> AsyncGenerator[str, None]:
        """The messages a viewer missed: everything after ``since``, or without it the last
        ``start`` items (the live edge), from the catalogue and then from memory. When they
        are all out, ``listener`` gets every new message (first the status), unless the video
        is private and it holds no link (it is then revoked)."""
        return self._feed._catch_up(self, listener, since, start, signed)

    def leave(self) -> None:
        """Give the place up (once)."""
        if not self._left:
            self._left = True
            self._feed._leave(self)

