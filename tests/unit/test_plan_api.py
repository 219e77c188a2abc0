"""``GET /api/v1/plan``: the same model as ``chunkcast plan``, and the page's form."""

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tests.unit.test_plan import FINAL

from chunkcast.api import errors
from chunkcast.api.routes import plan
from chunkcast.services.planning import make_plan, to_json


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.include_router(plan.router(tmp_path))
    return app


async def get(app: FastAPI, path: str, **params: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, params=params)


async def test_the_api_answers_what_the_cli_prints(app: FastAPI, tmp_path: Path) -> None:
    answer = await get(app, "/api/v1/plan", **FINAL, hls_share="")  # empty fields ignored
    assert answer.status_code == 200
    body = answer.json()
    growth = body.pop("growth")
    assert body == to_json(make_plan(FINAL, tmp_path)[0])
    assert body["edge_nodes"]["value"] == 1574
    assert [round(p["viewers"]) for p in growth] == [round(65.2e6 * i / 10)
                                                     for i in range(1, 11)]


async def test_what_is_missing_or_wrong_is_a_422_saying_so(app: FastAPI) -> None:
    answer = await get(app, "/api/v1/plan", viewers="1e6", ladder_mix="240p=1")
    assert answer.status_code == 422
    assert "bench/fanout.py" in answer.json()["error"]["message"]
    answer = await get(app, "/api/v1/plan", **{**FINAL, "viewers": "Infinity"})
    assert answer.status_code == 422
    assert "--viewers must be" in answer.json()["error"]["message"]


async def test_the_page_has_every_option(app: FastAPI) -> None:
    page = await get(app, "/plan")
    assert page.status_code == 200
    for name in (*FINAL, "utilisation", "bitrate", "hls_share"):
        assert f'name="{name}"' in page.text
    assert "/static/plan.js" in page.text
