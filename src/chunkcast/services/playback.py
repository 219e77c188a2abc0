"""Playlists and playback URLs: rendered from the catalogue, and written as static files
when a video is complete."""

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from chunkcast.domain import keys
from chunkcast.domain.errors import BadRequest, Expired, Forbidden, NotFound, NotYet
from chunkcast.domain.ids import check_rendition
from chunkcast.domain.ladder import fallback_codecs
from chunkcast.domain.playlists import (
    LiveControl,
    PlaylistPart,
    PlaylistSegment,
    RenditionReport,
    Variant,
    render_master,
    render_media,
)
from chunkcast.domain.signing import playback_check, playback_expiry, playback_signature
from chunkcast.domain.videos import RenditionInfo, Segment, Video, VideoKind, VideoStatus
from chunkcast.ports.repository import VideoRepository
from chunkcast.ports.storage import ObjectStore
from chunkcast.services.outages import failed_dependency

PRIVACY_MEMORY_S = 2.0
LAST_GOOD_ENTRIES = 4096  # playlists whose last good answer is kept
LAST_GOOD_BYTES = 64 * 1024**2  # and at most this much text in all
# A segment's Media Sequence Number is its seq plus one: hls.js never sends a blocking
# request for a playlist whose sequence is 0.
MSN_OFFSET = 1
BLOCK_TARGETS = 3  # a blocking request waits at most this many target durations
AHEAD_MSN = 2  # a blocking request further ahead than this is refused (RFC 8216bis 6.2.5.2)
# A live playlist asked for without directives is answered at once when its newest segment
# arrived at most this long ago, else when the next one does (see Playback.serve_media): a
# player takes that segment's end for the live edge of the moment, and plays as much
# further behind as the segment was old, for the whole session.
FRESH_S = 0.1
FRESH_WAIT_S = 2.0  # ...but never waits longer than this (long segments: a slow start)


@dataclass(frozen=True)
class Recent:
    """The latest segments of a rendition that an API process holds in memory: from seq
    ``first`` on (which may be a gap), in seq order, gaps left out."""

    first: int
    segments: Sequence[Segment]
    version: int = 0  # changes with each item the channel takes (see LiveWindow.changed)
    age_s: float | None = None  # since the newest item arrived (None: not known)


@dataclass(frozen=True)
class Blocking:
    """A blocking playlist request (``_HLS_msn``, ``_HLS_part``; RFC 8216bis 6.2.5.2): held
    until the playlist has part ``part`` of the segment with Media Sequence Number ``msn``,
    or a later segment. Safari asks for a segment without a part: part 0."""

    msn: int
    part: int = 0


@dataclass(frozen=True)
class Playlist:
    """A playlist as served: ``growing`` when it can still change (a live stream's);
    ``stale`` when it is the last good answer, given while a dependency is down."""

    text: str
    growing: bool
    stale: bool = False


PlaylistKey = tuple[str, str, bool, str | None, str | None]  # video, rendition, dvr, e, st


class LastGood:
    """The last good answer of each playlist, served while making a fresh one fails because
    the catalogue (or another dependency) is unreachable. Eviction: least recently used
    beyond ``entries`` playlists or ``size`` bytes of text (a playlist larger than an
    eighth of that is not kept); a video's playlists when its privacy changes."""

    def __init__(self, entries: int = LAST_GOOD_ENTRIES, size: int = LAST_GOOD_BYTES) -> None:
        self._entries = entries
        self._size = size
        self._bytes = 0
        self._kept: OrderedDict[PlaylistKey, Playlist] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def put(self, key: PlaylistKey, playlist: Playlist) -> None:
        self._drop(key)
        if len(playlist.text) > self._size // 8:
            return
        self._kept[key] = playlist
        self._bytes += len(playlist.text)
        while len(self._kept) > self._entries or self._bytes > self._size:
            self._drop(next(iter(self._kept)))

    def get(self, key: PlaylistKey) -> Playlist | None:
        playlist = self._kept.get(key)
        if playlist is not None:
            self._kept.move_to_end(key)
        return playlist

    def forget(self, video_id: str) -> None:
        for key in [k for k in self._kept if k[0] == video_id]:
            self._drop(key)

    def _drop(self, key: PlaylistKey) -> None:
        dropped = self._kept.pop(key, None)
        if dropped is not None:
            self._bytes -= len(dropped.text)


class LiveWindow(Protocol):
    def recent(self, video_id: str, rendition: str) -> Recent | None:
        """What this process holds in memory of a rendition (None: nothing)."""

    def renditions(self, video_id: str) -> list[str]:
        """The renditions of a video this process holds in memory."""

    async def changed(self, video_id: str, rendition: str, version: int,
                      timeout_s: float) -> None:
        """Return once the rendition's items differ from ``version`` (a new segment or gap,
        or the video's status changed), or after ``timeout_s``."""


def _seq(segment: Segment) -> int:
    return segment.seq


def media_url(base_url: str, key: str) -> str:
    """Public URL of an object key: ``{CDN or API}/media/{key}``."""
    return f"{base_url}/media/{key}"


@dataclass(frozen=True)
class PlaybackUrls:
    hls: str
    ws: str
    watch: str
    token: str | None


Token = tuple[str | None, str | None]  # the ``e`` and ``st`` query parameters, as given


class Signer:
    """Signed playback of private videos. Their objects are served under ``/private/{key}``
    (never ``/media/``) with ``?e=EXPIRY&st=SIGNATURE``, a token scoped to one video that
    the edge (nginx ``secure_link``) and the origin both check. Expiries are rounded so that
    viewers of a video share URLs for a few minutes, which keeps them cacheable.

    A link never renews itself: whatever is derived from a signed link (playlists, socket
    messages, the video resource) is signed with that link's own expiry. Only
    :meth:`fresh_expiry` starts a new lifetime, and only the admin is given links made
    with it."""

    def __init__(self, secret: str, ttl_s: int, clock: Callable[[], float] = time.time
                 ) -> None:
        self._secret = secret
        self._ttl = ttl_s
        self._clock = clock

    def fresh_expiry(self) -> int:
        """The expiry of links minted now (for the admin)."""
        return playback_expiry(self._clock(), self._ttl)

    def query(self, video_id: str, expires: int) -> str:
        """The token ``e=EXPIRY&st=SIGNATURE`` of a video for this expiry: for a token that
        was checked, the same one."""
        return f"e={expires}&st={playback_signature(self._secret, video_id, expires)}"

    def check(self, video_id: str, token: Token) -> int:
        """The expiry of ``token``; raise unless it is a valid, unexpired signature for this
        video."""
        verdict = playback_check(self._secret, video_id, token[0], token[1], self._clock())
        if verdict == "expired":
            raise Expired("this playback link has expired")
        if verdict != "ok" or token[0] is None:
            raise Forbidden("this video is private: a valid signed link is needed")
        return int(token[0])


def object_url(base_url: str, key: str, query: str | None) -> str:
    """Where a viewer fetches an object: ``/media/{key}``, or for a private video (``query``
    is then the viewer's token) ``/private/{key}?{query}``."""
    return media_url(base_url, key) if query is None else f"{base_url}/private/{key}?{query}"


def _variants(
    renditions: Sequence[RenditionInfo], uri: Callable[[str], str], has_audio: bool
) -> list[Variant]:
    out = []
    for info in renditions:
        r = info.rendition
        out.append(Variant(
            uri=uri(r.name), bandwidth=r.bandwidth(has_audio),
            average_bandwidth=r.average_bandwidth(has_audio), width=r.width, height=r.height,
            codecs=info.codecs or fallback_codecs(has_audio), frame_rate=r.fps,
        ))
    return out


def _media(segments: Sequence[Segment], init_uri: str, uri: Callable[[str], str],
           *, ended: bool, vod: bool, target: float | None, event: bool = False,
           live: LiveControl | None = None) -> str:
    """A rendition's media playlist; ``uri`` makes the URI of an object key."""
    items = [PlaylistSegment(s.seq + MSN_OFFSET, s.duration, uri(s.key), s.captured_at,
                             tuple(PlaylistPart(p.duration, p.offset, p.length, p.independent)
                                   for p in s.parts))
             for s in segments]

    def gap_uri(msn: int) -> str:  # where the segment of a lost chunk would have been
        return uri(keys.segment(segments[0].video_id, segments[0].rendition, msn - MSN_OFFSET))

    return render_media(items, init_uri, ended=ended, vod=vod, target_duration=target,
                        event=event, gap_uri=gap_uri, live=live)


@dataclass(frozen=True)
class _View:
    """A media playlist as rendered, with what a blocking request is checked against."""

    text: str
    growing: bool
    last: Segment | None = None  # the newest segment listed (a live playlist's)
    version: int = 0
    target: float = 1.0
    age_s: float | None = None  # since the newest segment listed arrived (live, from memory)


def _satisfies(last: Segment, block: Blocking) -> bool:
    msn = last.seq + MSN_OFFSET
    return msn > block.msn or (msn == block.msn and len(last.parts) > block.part) \
        or (msn == block.msn and not last.parts)


class Playback:
    def __init__(self, repo: VideoRepository, store: ObjectStore, signer: Signer, base_url: str,
                 public_url: str, segment_seconds: int, *, live_window: int = 6,
                 part_seconds: float = 0.334) -> None:
        """``segment_seconds``: the length of an upload's segments (the least target
        duration of its playlists); ``part_seconds``: the longest part of a live segment."""
        self._repo = repo
        self.signer = signer
        self._store = store
        self._base = base_url
        self._public = public_url.rstrip("/")
        self._target = float(segment_seconds)
        self._window = live_window
        self._part = part_seconds
        # Privacy of the videos whose objects were asked for, with when it was read.
        # Eviction: an entry is read again after PRIVACY_MEMORY_S (or replaced at once by
        # :meth:`privacy_changed`); everything is dropped beyond 10,000 videos.
        self._private: dict[str, tuple[bool | None, float]] = {}
        self._last_good = LastGood()

    async def is_private(self, video_id: str) -> bool:
        """Whether a video is private; remembered for a few seconds (this is asked for every
        object an origin serves)."""
        return await self._privacy(video_id) is True

    async def is_public(self, video_id: str) -> bool:
        """Whether a video exists and is public (what the edge asks before ``/media/``)."""
        return await self._privacy(video_id) is False

    async def _privacy(self, video_id: str) -> bool | None:
        """True private, False public, None no such video; remembered for a few seconds
        (at most 10,000 videos, then forgotten all at once)."""
        known = self._private.get(video_id)
        now = time.monotonic()
        if known is not None and now - known[1] < PRIVACY_MEMORY_S:
            return known[0]
        video = await self._repo.get_video(video_id)
        private = None if video is None else video.private
        if len(self._private) > 10_000:
            self._private.clear()
        self._private[video_id] = (private, now)
        return private

    def privacy_changed(self, video_id: str, private: bool) -> None:
        """A video was made private or public (an event every API process hears): its
        objects are served accordingly from now on."""
        self._last_good.forget(video_id)  # none of its playlists may be served as it was
        if video_id in self._private:
            self._private[video_id] = (private, time.monotonic())

    async def check_object(self, key: str, token: Token | None) -> None:
        """May a viewer fetch this published object? Under ``/media/`` (``token`` None) only
        when its video is public; under ``/private/`` only with a valid token for its
        video."""
        video_id = keys.published_video_id(key)
        if video_id is None:
            raise Forbidden("only published media is served here")
        if token is not None:
            self.signer.check(video_id, token)
        elif await self.is_private(video_id):
            raise Forbidden("this video is private: a valid signed link is needed")

    def urls(self, video: Video, *, expires: int | None) -> PlaybackUrls:
        """The ``playback`` block of the video resource. For a private video the links are
        signed, and ``token`` is the query string that the WebSocket and the playlists of
        the video need. ``expires`` is the expiry of the link the resource was read with,
        which these links keep; None mints links with a fresh expiry, which only the admin
        may be given."""
        token = None
        if video.private:
            token = self.signer.query(
                video.id, self.signer.fresh_expiry() if expires is None else expires)
        query = f"?{token}" if token else ""
        return PlaybackUrls(
            hls=f"{self._base}/play/{video.id}/master.m3u8{query}",
            ws=self._public.replace("http", "ws", 1) + f"/ws/{video.id}",
            watch=f"{self._public}/watch/{video.id}{query}",
            token=token,
        )

    async def _playable(self, video_id: str, token: Token) -> tuple[Video, str | None]:
        """The video, and for a private one the query that signs what a playlist lists:
        the caller's own token, so that the URLs expire with the link it came with."""
        video = await self._repo.get_video(video_id)
        if video is None:
            raise NotFound("no such video")
        query = None
        if video.private:
            query = self.signer.query(video.id, self.signer.check(video.id, token))
        if video.status not in (VideoStatus.READY, VideoStatus.LIVE, VideoStatus.ENDED):
            raise NotFound(f"video is not playable yet (status {video.status.value})")
        return video, query

    async def master(self, video_id: str, token: Token = (None, None)) -> str:
        video, query = await self._playable(video_id, token)
        renditions = await self._repo.renditions(video_id)
        if not renditions:  # a live stream before its first segment: players retry a 404
            raise NotFound("no rendition yet")
        suffix = f"?{query}" if query is not None else ""
        return render_master(_variants(renditions, lambda name: f"{name}/index.m3u8{suffix}",
                                       bool(video.has_audio)))

    async def media(self, video_id: str, rendition: str, *, dvr: bool = False,
                    token: Token = (None, None), live: LiveWindow | None = None,
                    skip: bool = False) -> tuple[str, bool]:
        """The media playlist and whether it can still change (a live stream's does).

        Live: a sliding window of the latest segments, served from what ``live`` (the API
        process's live feed) holds in memory, as a Low-Latency HLS playlist (``skip``: a
        delta update); with ``dvr`` everything so far, the older part from the catalogue.
        VOD and ended streams: from the catalogue."""
        view = await self._view(video_id, rendition, dvr=dvr, token=token, live=live,
                                skip=skip)
        return view.text, view.growing

    async def _view(self, video_id: str, rendition: str, *, dvr: bool, token: Token,
                    live: LiveWindow | None, skip: bool) -> _View:
        video, query = await self._playable(video_id, token)
        check_rendition(rendition)
        growing = video.status is VideoStatus.LIVE
        recent = live.recent(video_id, rendition) if live is not None and growing else None
        segments: Sequence[Segment]
        if recent is not None and not dvr:
            segments = recent.segments
        elif recent is not None:  # the catalogue up to what is in memory: what viewers got
            older = await self._repo.segments(video_id, rendition, before=recent.first)
            segments = [*older, *recent.segments]
        else:
            segments = await self._repo.segments(video_id, rendition)
        if not segments:
            raise NotFound("no such rendition, or no segment yet")

        def url(key: str) -> str:
            return object_url(self._base, key, query)

        init = url(keys.init_segment(video_id, rendition))
        if growing and not dvr:
            # The window is counted in seqs, not in segments: with the gaps of lost chunks
            # listed, a live playlist never has more than ``window`` entries.
            newest = segments[-1].seq
            segments = [s for s in segments[-self._window:] if s.seq > newest - self._window]
        control = None
        if growing:
            suffix = f"?{query}" if query is not None else ""
            others = [r for r in live.renditions(video_id) if r != rendition] if live else []
            reports = []
            for other in sorted(others):
                theirs = live.recent(video_id, other) if live is not None else None
                if theirs is not None and theirs.segments:
                    newest_of = theirs.segments[-1]
                    reports.append(RenditionReport(
                        f"../{other}/index.m3u8{suffix}", newest_of.seq + MSN_OFFSET,
                        len(newest_of.parts) - 1 if newest_of.parts else None))
            control = LiveControl(
                self._part, url(keys.segment(video_id, rendition, segments[-1].seq + 1)),
                reports, skip)
        vod = video.kind is not VideoKind.LIVE
        text = _media(segments, init, url, ended=not growing, vod=vod,
                      event=growing and dvr, target=self._target if vod else None,
                      live=control)
        longest = max(s.duration for s in segments)
        return _View(text, growing, segments[-1] if growing else None,
                     recent.version if recent is not None else 0,
                     max(1.0, float(round(longest))),
                     recent.age_s if recent is not None and not dvr else None)

    async def _blocking(self, video_id: str, rendition: str, block: Blocking, *, dvr: bool,
                        token: Token, live: LiveWindow, skip: bool) -> _View:
        """The playlist once it holds what ``block`` asks for, at most BLOCK_TARGETS target
        durations later (then NotYet); at once when the video is no longer live, or the
        request is too far ahead (BadRequest)."""
        deadline: float | None = None
        while True:
            view = await self._view(video_id, rendition, dvr=dvr, token=token, live=live,
                                    skip=skip)
            if not view.growing or view.last is None or _satisfies(view.last, block):
                return view
            if block.msn > view.last.seq + MSN_OFFSET + AHEAD_MSN:
                raise BadRequest(f"segment {block.msn} is too far ahead of the live edge")
            now = time.monotonic()
            if deadline is None:
                deadline = now + BLOCK_TARGETS * view.target
            if now >= deadline:
                raise NotYet(f"segment {block.msn} part {block.part} is not available yet")
            await live.changed(video_id, rendition, view.version, deadline - now)

    async def _next(self, video_id: str, rendition: str, view: _View, *, token: Token,
                    live: LiveWindow, skip: bool) -> _View:
        """The live playlist once its next segment arrives (at most a target duration and a
        half, and FRESH_WAIT_S, later; else ``view``). A player takes the newest segment of
        the playlist it starts from as the live edge of that moment, and stays as far behind
        it as it was told to (hold-back) plus how old that segment already was: up to a
        whole segment more, for good (hls.js does not catch up by default). Players without blocking
        reload, which poll, are answered when there is something new to them."""
        await live.changed(video_id, rendition, view.version,
                           min(1.5 * view.target, FRESH_WAIT_S))
        later = await self._view(video_id, rendition, dvr=False, token=token, live=live,
                                 skip=skip)
        return later if later.version != view.version else view

    async def serve_master(self, video_id: str, token: Token = (None, None)) -> Playlist:
        """:meth:`master`, or while a dependency is down its last good answer."""
        async def fresh() -> Playlist:
            return Playlist(await self.master(video_id, token), growing=False)
        return await self._serve((video_id, "", False, *token), fresh)

    async def serve_media(self, video_id: str, rendition: str, *, dvr: bool = False,
                          token: Token = (None, None), live: LiveWindow | None = None,
                          block: Blocking | None = None, skip: bool = False) -> Playlist:
        """:meth:`media`, or while a dependency is down its last good answer. ``block``: a
        blocking request, answered once the playlist holds what it asks for."""
        async def fresh() -> Playlist:
            if block is not None and live is not None:
                view = await self._blocking(video_id, rendition, block, dvr=dvr, token=token,
                                            live=live, skip=skip)
            else:
                view = await self._view(video_id, rendition, dvr=dvr, token=token, live=live,
                                        skip=skip)
                if live is not None and view.age_s is not None and view.age_s > FRESH_S:
                    view = await self._next(video_id, rendition, view, token=token, live=live,
                                            skip=skip)
            return Playlist(view.text, view.growing)
        # A delta update is kept apart: it must never stand in for a whole playlist.
        return await self._serve((video_id, f"{rendition}/skip" if skip else rendition, dvr,
                                  *token), fresh)

    async def _serve(self, key: PlaylistKey, fresh: Callable[[], Awaitable[Playlist]]
                     ) -> Playlist:
        try:
            playlist = await fresh()
        except Exception as exc:
            last = self._last_good.get(key)
            if last is None or failed_dependency(exc) is None:
                raise
            if key[4] is not None:  # a signed link still has to be valid: it may expire
                self.signer.check(key[0], (key[3], key[4]))
            return replace(last, stale=True)
        self._last_good.put(key, playlist)
        return playlist

    async def write_static(self, video: Video) -> float:
        """Write ``master.m3u8`` and each ``{rendition}/index.m3u8`` next to the segments,
        with relative URIs, so the media folder plays from any plain web server or CDN.
        Returns how long the longest rendition plays, gaps included."""
        renditions = await self._repo.renditions(video.id)
        played = 0.0
        for info in renditions:
            name = info.rendition.name
            segments = await self._repo.segments(video.id, name)
            if not segments:
                continue
            # Timestamps run on across a gap, so the span is what a player shows.
            played = max(played, segments[-1].pts_start + segments[-1].duration
                          - segments[0].pts_start)
            text = _media(segments, "init.mp4", lambda key: key.rsplit("/", 1)[1], ended=True,
                          vod=True,
                          target=self._target if video.kind is not VideoKind.LIVE else None)
            await self._store.put_bytes(keys.media_playlist(video.id, name), text.encode())
        master = render_master(_variants(renditions, lambda name: f"{name}/index.m3u8",
                                         bool(video.has_audio)))
        await self._store.put_bytes(keys.master_playlist(video.id), master.encode())
        return round(played, 3)
