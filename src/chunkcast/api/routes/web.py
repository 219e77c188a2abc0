"""Server-rendered pages of the web app and its static files."""

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from chunkcast.web import STATIC_DIR, TEMPLATES_DIR

router = APIRouter(tags=["web"], include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATES_DIR)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "home.html", {})


@router.get("/watch/{video_id}", response_class=HTMLResponse)
async def watch(request: Request, video_id: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "watch.html", {"video_id": video_id})


@router.get("/upload", response_class=HTMLResponse)
async def upload(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "upload.html", {})


@router.get("/streams/{video_id}", response_class=HTMLResponse)
async def stream_dashboard(request: Request, video_id: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "stream.html", {"video_id": video_id})


def install(app: FastAPI) -> None:
    """Add the pages and mount ``/static``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
