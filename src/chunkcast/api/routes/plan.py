"""The capacity plan: ``GET /api/v1/plan`` (the model of ``chunkcast plan``) and its page."""

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from chunkcast.api.routes.web import templates
from chunkcast.services.planning import OPTIONS, make_plan, to_json


def router(results: Path) -> APIRouter:
    """The plan's routes, with the capacities measured in ``results`` (capacity files) for
    those a request does not give."""
    routes = APIRouter()

    @routes.get("/api/v1/plan", tags=["plan"])
    async def plan(request: Request) -> dict[str, Any]:
        """The plan for the options of ``chunkcast plan`` given as query parameters (their
        names with ``_``: ``viewers=65.2e6&ladder_mix=240p=0.5,720p=0.5&...``; empty ones
        are ignored): every figure with its inputs and their sources, and ``growth``, the
        machines at ten audiences up to ``viewers``. 422 names what is missing or wrong."""
        given = {name: value for name, value in request.query_params.items() if value}
        made, growth = make_plan(given, results)
        return {**to_json(made), "growth": growth}

    @routes.get("/plan", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "plan.html", {"options": OPTIONS})

    return routes
