"""The Plan page in a real browser: the form, the table of figures and the chart."""

from playwright.sync_api import Page, expect

from chunkcast.testing import Server
from tests.unit.test_plan import FINAL

FIELDS = {"viewers": "Viewers at once", "ladder_mix": "Ladder mix",
          "chunk_seconds": "Chunk length (s)", "dvr_hours": "DVR hours", "streams": "Streams"}


def test_the_plan_page_plans_the_final(page: Page, server: Server) -> None:
    page.goto(server.url + "/plan")
    page.get_by_role("link", name="Plan").click()  # the nav link leads here
    for name, label in FIELDS.items():
        page.get_by_label(label).fill(FINAL[name])
    page.get_by_text("Capacities and machines").click()
    for name in FINAL.keys() - FIELDS.keys():
        page.locator(f"#plan-{name}").fill(FINAL[name])
    page.get_by_role("button", name="Plan", exact=True).click()

    table = page.locator("#plan-table")
    expect(table.locator("tr[data-key=edge_nodes] td.value")).to_have_text("1,574 nodes")
    expect(table.locator("tr[data-key=egress_gbps] td.value")).to_have_text("93.1 Tbps")
    expect(table.locator("tr[data-key=api_processes]")).to_contain_text(
        "option --api-viewers-per-process")
    expect(table.locator("tr[data-key=egress_gbps]")).to_contain_text("ladder: 400k video")
    expect(page.locator("#plan-chart polyline")).to_have_count(2)
    expect(page.locator("#plan-chart-legend")).to_contain_text("edge nodes (blue): 1,574")
    expect(page.locator("#plan-error")).to_be_hidden()
    assert "viewers=65.2e6" in page.url  # the plan can be shared by its URL

    page.locator("#plan-ladder_mix").fill("240p=0.5,720p=0.4")
    page.get_by_role("button", name="Plan", exact=True).click()
    expect(page.locator("#plan-error")).to_contain_text("add up to 0.9")
    expect(page.locator("#plan-result")).to_be_hidden()
