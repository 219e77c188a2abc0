"""Server-rendered pages of the web app and its static files."""

from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from chunkcast.api.deps import StreamsDep, VideosDep
from chunkcast.domain.errors import InvalidInput, NotFound
from chunkcast.domain.videos import VideoKind, VideoStatus
from chunkcast.web import STATIC_DIR, TEMPLATES_DIR

router = APIRouter(tags=["web"], include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATES_DIR)

LIBRARY_PAGE = 24
LIVE_NOW = 24
WATCHABLE = VideoStatus.complete_ones()  # the library: what plays from the start


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, videos: VideosDep,
               offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> HTMLResponse:
    """What is live now, then the public library (videos ready to play, and streams that
    have ended), newest first, a page at a time."""
    page = await videos.list(limit=LIBRARY_PAGE + 1, offset=offset, public_only=True,
                             statuses=WATCHABLE)
    live = await videos.list(limit=LIVE_NOW, offset=0, public_only=True,
                             statuses=(VideoStatus.LIVE,), kind=VideoKind.LIVE)
    return templates.TemplateResponse(request, "home.html", {
        "live": live,
        "videos": page[:LIBRARY_PAGE],
        "newer": max(offset - LIBRARY_PAGE, 0) if offset > 0 else None,
        "older": offset + LIBRARY_PAGE if len(page) > LIBRARY_PAGE else None,
    })


@router.get("/watch/{video_id}", response_class=HTMLResponse)
async def watch(request: Request, video_id: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "watch.html", {"video_id": video_id})


@router.get("/upload", response_class=HTMLResponse)
async def upload(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "upload.html", {})


# Declared before /streams/{video_id}, which would otherwise take "new" for an id.
@router.get("/streams/new", response_class=HTMLResponse)
async def new_stream(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "stream_new.html", {})


@router.get("/streams/{video_id}", response_class=HTMLResponse)
async def stream_dashboard(request: Request, video_id: str, streams: StreamsDep
                           ) -> HTMLResponse:
    """The broadcaster's dashboard of one stream. A private stream's page is rendered
    without its title and status: its script asks for them with the admin token."""
    try:
        video = await streams.get(video_id)
    except (InvalidInput, NotFound):
        return templates.TemplateResponse(request, "not_found.html", {"what": "stream"},
                                          status_code=404)
    return templates.TemplateResponse(request, "stream.html", {
        "stream_id": video.id, "private": video.private,
        "video": None if video.private else video,
        "server": streams.public_url})


def install(app: FastAPI) -> None:
    """Add the pages and mount ``/static``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
