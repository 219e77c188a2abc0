"""The web app's pages load in a real browser."""

from playwright.sync_api import Page

from chunkcast.testing import Server


def test_home_page_loads(page: Page, server: Server) -> None:
    response = page.goto(server.url + "/")
    assert response is not None and response.status == 200
    assert page.title() == "chunkcast"
