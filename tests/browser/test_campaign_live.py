"""The giving-day dashboard updates live: gifts applied through the engine while the page is
open show up in its totals, pools and leaderboards without a reload."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shanju.campaigns.engine import apply_batch
from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone, zh
from tests.factories import make_campaign, make_org, make_paid_gift, make_pool, make_project

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("live_server", ["sqlite", "postgresql"], indirect=True)
def test_dashboard_updates_without_a_reload(
    live_server: LiveServer,  # before ``page``: the page (and its stream) closes first
    page: Page,
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    with live_server.database.transaction() as s:
        org = make_org(s, name="云南山区助学促进会")
        project = make_project(s, org=org, title="乡村学校冬季温暖包")
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=100_000, sponsor_name="腾讯公益",
                         params={"per_project_daily_cap_fen": 50_000})
        ids = {"campaign": campaign.id, "project": project.id, "pool": pool.id}
        slug = campaign.slug

    page.goto(live_server(f"/campaigns/{slug}"))
    root = page.locator(".campaign-live")
    raised = page.locator('[data-live="raised"]')
    expect(raised).to_have_text("¥0")
    expect(page.locator('ol[data-board="projects"] li')).to_have_text(zh("No gifts yet."))
    # The stream delivered its first snapshot: the page is listening.
    expect(root).to_have_attribute("data-live-state", "live")
    marker = page.evaluate("window.__notReloaded = true")
    del marker

    with live_server.database.transaction() as s:
        apply_batch(s, [
            make_paid_gift(campaign_id=ids["campaign"], project_id=ids["project"],
                           amount_fen=amount, province="云南")
            for amount in (10_000, 2_345)
        ], worker="browser-test")

    expect(raised).to_have_text("¥123.45")
    expect(page.locator('[data-live="matched"]')).to_have_text("¥123.45")
    expect(page.locator('[data-live="gifts"]')).to_have_text("2")
    pool_row = page.locator(f'[data-pool="{ids["pool"]}"]')
    expect(pool_row.locator('[data-f="remaining"]')).to_have_text("¥876.55")
    expect(pool_row.locator(".progress")).to_have_attribute("aria-valuenow", "87")
    top = page.locator('ol[data-board="projects"] li').first
    expect(top.locator("a")).to_have_text("乡村学校冬季温暖包")
    expect(top.locator(".amt")).to_have_text("¥123.45")
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"

    # Leaderboard tabs: one list at a time.
    expect(page.locator("#board-organizations")).to_be_hidden()
    page.locator('[role="tab"][data-board="provinces"]').click()
    expect(page.locator("#board-provinces")).to_be_visible()
    expect(page.locator("#board-projects")).to_be_hidden()
    expect(page.locator('ol[data-board="provinces"] li').first).to_contain_text("云南")
    check_fits_phone(page, js_errors)
    screenshot("campaign-live-dashboard")

    # The project's page shows its match status and what is left of today's cap.
    page.goto(live_server(f"/projects/{ids['project']}?lang=en"))
    block = page.locator(f"#match-{slug}")
    expect(block).to_contain_text("¥376.55 left of today's ¥500 cap")
    expect(block.locator('[data-match="today"]')).to_have_text("¥123.45")
    check_fits_phone(page, js_errors)
    screenshot("campaign-project-match")
    page.goto("about:blank")  # close the stream before the server stops
