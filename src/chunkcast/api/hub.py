"""WebSocket viewers: ``/ws/{video_id}/{rendition}?since=SEQ``, one connection per (video,
rendition), fed by the live feed.

A viewer joins its channel in the feed, is sent ``init`` and what it missed, then every new
message through its :class:`~chunkcast.api.delivery.Outbox`. Messages are strings serialised
once per event by the feed and shared by every viewer; a viewer of a private video gets them
with its own token in the URLs (:class:`SignedViewer`).
"""

import contextlib
import logging

from starlette.types import Send
from starlette.websockets import WebSocket

from chunkcast.api.delivery import EXPIRED, FORBIDDEN, Outbox, Outboxes
from chunkcast.domain.errors import ChunkcastError, NotFound
from chunkcast.domain.ids import check_rendition, check_video_id
from chunkcast.services.live import LiveFeed, Membership
from chunkcast.services.live_messages import SIGNATURE_SLOT, with_token
from chunkcast.services.outages import failed_dependency
from chunkcast.services.playback import Signer, Token

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013  # RFC 6455: the server cannot serve this now
INIT_WAIT_S = 30.0  # how long a viewer of a rendition with no segment yet waits for one
MAX_SEQ = 99_999_999  # as chunk reports


class Viewer:
    """A viewer's outbox as a listener of the feed."""

    __slots__ = ("_outbox",)

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def own(self, text: str) -> str:
        """A shared message as this viewer is sent it."""
        return text

    def deliver(self, text: str) -> None:
        self._outbox.push(text)

    def revoke(self) -> None:
        self._outbox.close(FORBIDDEN, "this video is private now: a signed link is needed")


class TokenFill:
    """Private videos' messages with a viewer's token filled in. The latest one is
    remembered: a fan-out hands the same message to viewer after viewer, and those holding
    the same token (links minted within the same few minutes) then get the same string,
    which the fast outbox frames once for all of them."""

    def __init__(self) -> None:
        self._text = self._query = self._filled = ""

    def fill(self, text: str, query: str) -> str:
        if text is self._text and query == self._query:
            return self._filled
        if SIGNATURE_SLOT not in text:  # status, viewers, gap: nothing to sign
            return text
        self._text, self._query, self._filled = text, query, with_token(text, query)
        return self._filled


class SignedViewer(Viewer):
    """A viewer of a private video: its messages' URLs carry its own token, so they expire
    with the link it came with (however long it stays connected)."""

    __slots__ = ("_query", "_tokens")

    def __init__(self, outbox: Outbox, query: str, tokens: TokenFill) -> None:
        super().__init__(outbox)
        self._query = query
        self._tokens = tokens

    def own(self, text: str) -> str:
        return self._tokens.fill(text, self._query)

    def deliver(self, text: str) -> None:
        self._outbox.push(self._tokens.fill(text, self._query))


class Hub:
    """``outboxes`` picks each connection's outbox; ``start_segments``: what a viewer
    without ``since`` gets first (the live edge)."""

    def __init__(self, feed: LiveFeed, signer: Signer, *, outboxes: Outboxes,
                 start_segments: int) -> None:
        self._feed = feed
        self._signer = signer
        self._outboxes = outboxes
        self._start = start_segments
        self._tokens = TokenFill()

    async def endpoint(self, websocket: WebSocket, send: Send) -> None:
        """``/ws/{video_id}/{rendition}?since=SEQ``: segment-ready pushes for one rendition,
        in seq order (ARCHITECTURE §3). ``send``: the server's own, for the outbox."""
        admitted = await self._admit(websocket, send)
        # What follows lasts as long as the viewer watches, for every viewer: it holds the
        # seat and the outbox, nothing of the handshake.
        del websocket, send
        if admitted is None:
            return
        seat, outbox = admitted
        try:
            await outbox.serve()
        finally:
            seat.leave()

    async def _admit(self, websocket: WebSocket, send: Send
                     ) -> tuple[Membership, Outbox] | None:
        """The viewer's seat in its channel and its outbox, once it has been sent what it
        missed and gets every new message; None if it was turned away or left meanwhile."""
        try:
            video_id = check_video_id(websocket.path_params["video_id"])
            rendition = check_rendition(websocket.path_params["rendition"])
            raw_since = websocket.query_params.get("since")
            since = None if raw_since is None else max(-1, min(int(raw_since), MAX_SEQ))
        except (ChunkcastError, ValueError):
            await websocket.close(1008, "malformed video id, rendition or since")
            return None
        try:
            seat = await self._feed.join(video_id, rendition)
        except NotFound:
            await websocket.close(1008, "no such video or rendition")
            return None
        except Exception as exc:  # a channel not held here needs the catalogue
            if failed_dependency(exc) is None:
                raise
            log.warning("viewer of %s/%s: %s unavailable", video_id, rendition,
                        failed_dependency(exc) or "a dependency")
            await websocket.accept()  # so the close code reaches the player, which retries
            await websocket.close(TRY_AGAIN_LATER, "unavailable just now; try again shortly")
            return None
        try:
            outbox = await self._welcome(websocket, send, seat, since)
        except BaseException:
            seat.leave()
            raise
        if outbox is None:
            seat.leave()
            return None
        return seat, outbox

    def _link(self, video_id: str, token: Token, *, required: bool) -> str | None:
        """The viewer's own token (``e=…&st=…``), which its URLs carry while the video is
        private; None for a viewer without a link. A public video's viewer who came with a
        valid link keeps watching if the video is made private; a bad link only matters
        when one is ``required``."""
        if not required and token[1] is None:
            return None
        try:
            return self._signer.query(video_id, self._signer.check(video_id, token))
        except ChunkcastError:
            if required:
                raise
            return None

    async def _welcome(self, websocket: WebSocket, send: Send, seat: Membership,
                       since: int | None) -> Outbox | None:
        """Accept the viewer, send it ``init`` and what it missed; its outbox (None when the
        viewer was closed instead)."""
        video_id = seat.channel.video_id
        token = websocket.query_params.get("e"), websocket.query_params.get("st")
        try:
            query = self._link(video_id, token, required=seat.private)
        except ChunkcastError as exc:
            # Accepted first: a socket closed during the handshake is an HTTP 403 that
            # browsers do not show; the close code tells expired from forbidden.
            await websocket.accept()
            await websocket.close(FORBIDDEN if exc.status == 403 else EXPIRED, exc.message)
            return None
        info = await seat.rendition()
        if info is not None and info.codecs is None:
            # The ladder is known but no segment of this rendition is stored yet: its codecs
            # come with the first one, which a player needs before it can start.
            await seat.first_segment(INIT_WAIT_S)
            info = await seat.rendition()
        if info is None:
            await websocket.close(1008, "no such video or rendition")
            return None
        await websocket.accept()
        outbox = self._outboxes(websocket, send)
        viewer = Viewer(outbox) if query is None else SignedViewer(outbox, query, self._tokens)
        await outbox.send(viewer.own(seat.init_message(info)))
        replay = seat.catch_up(viewer, since, self._start, signed=query is not None)
        async with contextlib.aclosing(replay):
            async for text in replay:
                if outbox.closed:
                    break
                await outbox.send(viewer.own(text))
        return outbox
