"""Request dependencies: the platform of this app, and admin authentication."""

from typing import Annotated

from fastapi import Depends, Request

from chunkcast.domain.errors import Unauthorized
from chunkcast.domain.signing import token_matches
from chunkcast.metrics import Metrics
from chunkcast.runtime import Platform
from chunkcast.services.live import LiveFeed
from chunkcast.services.operations import Operations
from chunkcast.services.playback import Playback, Token
from chunkcast.services.streams import Streams
from chunkcast.services.videos import Videos


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform




# Each route depends on the services it uses, not on the whole platform.
def get_videos(request: Request) -> Videos:
    return get_platform(request).videos


def get_streams(request: Request) -> Streams:
    return get_platform(request).streams


def get_playback(request: Request) -> Playback:
    return get_platform(request).playback


def get_operations(request: Request) -> Operations:
    return get_platform(request).operations


def get_feed(request: Request) -> LiveFeed:
    return get_platform(request).feed


def get_metrics(request: Request) -> Metrics:
    return get_platform(request).metrics


VideosDep = Annotated[Videos, Depends(get_videos)]
StreamsDep = Annotated[Streams, Depends(get_streams)]
PlaybackDep = Annotated[Playback, Depends(get_playback)]
OperationsDep = Annotated[Operations, Depends(get_operations)]
FeedDep = Annotated[LiveFeed, Depends(get_feed)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def is_admin(request: Request) -> bool:
    """Whether the request carries ``Authorization: Bearer <admin token>``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and token_matches(token.strip(),
                                                        request.app.state.admin_digest)


def require_admin(request: Request) -> None:
    """Write endpoints need ``Authorization: Bearer <admin token>``; only its digest is kept."""
    if not is_admin(request):
        raise Unauthorized("a valid admin token is required (Authorization: Bearer …)")


def playback_token(e: str | None = None, st: str | None = None) -> Token:
    """The ``e`` and ``st`` query parameters of a signed playback URL, if any."""
    return e, st


TokenDep = Annotated[Token, Depends(playback_token)]


AdminDep = Depends(require_admin)
