"""What only the nginx edge written by ``chunkcast deploy nginx`` may ask. The edge proves
itself with the edge secret (:func:`chunkcast.domain.signing.edge_secret`) in
``X-Chunkcast-Edge``; anyone else is refused, so these routes tell nothing to others.

``GET /edge/public/{video_id}`` is the edge's ``auth_request`` before it serves an object
under ``/media/`` (from its cache, the origin or a bucket): 204 while the video is public,
403 when it is private, unknown (deleted) or the id is malformed. The edge keeps the answer
about 2 s per video, so a video made private or deleted stops playing there within
seconds, cached objects included."""

from fastapi import APIRouter, Request, Response

from chunkcast.api.deps import PlaybackDep
from chunkcast.domain.errors import Forbidden, InvalidInput
from chunkcast.domain.ids import check_video_id
from chunkcast.domain.signing import edge_secret_matches

EDGE_HEADER = "x-chunkcast-edge"


def is_edge(request: Request, secret: str) -> bool:
    """Whether the request comes from the edge: it carries the edge secret."""
    return edge_secret_matches(secret, request.headers.get(EDGE_HEADER))


def edge_router(secret: str) -> APIRouter:
    """The edge's routes; ``secret`` is the edge secret."""
    router = APIRouter(prefix="/edge", include_in_schema=False)

    @router.get("/public/{video_id}")
    async def public(video_id: str, request: Request, playback: PlaybackDep) -> Response:
        if not is_edge(request, secret):
            raise Forbidden("for the edge only")
        try:
            check_video_id(video_id)
        except InvalidInput as exc:
            raise Forbidden("not a public video") from exc
        if not await playback.is_public(video_id):  # remembered for a moment
            raise Forbidden("not a public video")
        return Response(status_code=204, headers={"Cache-Control": "no-store"})

    return router
