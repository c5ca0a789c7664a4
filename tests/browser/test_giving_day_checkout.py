"""A donor on a phone gives to a project of a live giving day: the project page's form goes to
the giving-day checkout, the sandbox cashier pays the order, and the thank-you page shows the
sponsors' match and links to the gift's page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from shanju.campaigns.models import CampaignGift
from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone, zh
from tests.factories import make_campaign, make_org, make_pool, make_project

pytestmark = pytest.mark.browser


def test_donor_gives_on_the_giving_day_and_sees_the_match(
    page: Page,
    live_server: LiveServer,
    screenshot: Callable[[str], Path],
    js_errors: list[str],
    sign_in: Callable[[Page, str, str], None],
) -> None:
    with live_server.database.transaction() as s:
        org = make_org(s, name="北京春苗公益基金会")
        project = make_project(s, org=org, title="山区孩子过冬棉衣")
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=1_000_000)
        project_id, campaign_id = project.id, campaign.id
    live_server.create_user(email="donor@browser.test", display_name="张小明")
    sign_in(page, "donor@browser.test")

    page.goto(live_server(f"/projects/{project_id}"))
    expect(page.locator(".giving-day-banner")).to_contain_text(zh("Giving day"))
    form = page.locator("form#donate")
    expect(form).to_have_attribute(
        "action", f"/campaigns/{campaign_id}/projects/{project_id}/donate")
    check_fits_phone(page, js_errors)
    screenshot("01-project")
    form.locator('input[name="amount"][value="50"]').check()
    form.locator('input[name="message"]').fill("加油！")
    form.locator('[type="submit"]').click()

    # The sandbox cashier for the order; nothing is written yet.
    expect(page.locator("h1")).to_have_text(zh("Confirm your donation"))
    check_fits_phone(page, js_errors)
    screenshot("02-cashier")
    with live_server.database.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(CampaignGift)) == 0
    page.locator('button[name="action"][value="pay"]').click()

    # Thank-you page: paid, matched 1:1, a link to the gift's own page.
    result = page.locator("#gift-result")
    expect(result).to_have_attribute("data-match-status", "matched")
    expect(result).to_contain_text("¥50.00")
    expect(result.locator('a[href^="/campaigns/gifts/o_"]')).to_have_count(1)
    check_fits_phone(page, js_errors)
    screenshot("03-thanks")
