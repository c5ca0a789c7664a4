"""On a phone: the donor reads why their giving-day gift's match is held, and a reviewer
releases it from the held-matches queue."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shanju.accounts.models import Role
from shanju.campaigns.engine import apply_batch
from shanju.core.clock import CHINA_TZ
from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone, zh
from tests.factories import (
    PASSWORD,
    make_campaign,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
)

pytestmark = pytest.mark.browser


def test_held_match_explained_and_released_on_a_phone(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    donors = [live_server.create_user(display_name=f"捐赠人{n}") for n in range(3)]
    with live_server.database.transaction() as session:
        org = make_org(session, name="北京春苗公益基金会")
        project = make_project(session, org=org, title="山区孩子过冬棉衣")
        campaign = make_campaign(session, projects=[project])
        at = dt.datetime.combine(campaign.starts_on, dt.time(10, 0), tzinfo=CHINA_TZ)
        make_pool(session, campaign=campaign, budget_fen=100_000_00)
        results = apply_batch(session, [
            make_paid_gift(campaign_id=campaign.id, project_id=project.id, donor_id=d.id,
                           amount_fen=50_00, payer_hash="ab12cd34" + "0" * 24,
                           paid_at=at + dt.timedelta(seconds=n))
            for n, d in enumerate(donors)
        ])
    held = results[2]
    assert held.match_status == "held"

    sign_in(page, donors[2].email, PASSWORD)
    page.goto(live_server(f"/campaigns/gifts/{held.order_id}"))
    expect(page.locator("#match-status")).to_have_text(zh("Match held"))
    expect(page.locator("#why-title")).to_have_text(zh("Payment account shared by many accounts"))
    expect(page.locator("#why-text")).to_contain_text("公示期至")
    expect(page.locator("#review-detail")).to_have_count(0)
    check_fits_phone(page, js_errors)
    screenshot("gift-held-donor")

    reviewer = live_server.create_user(role=Role.REVIEWER, display_name="赵审核")
    page.context.clear_cookies()
    sign_in(page, reviewer.email, PASSWORD)
    page.goto(live_server("/review"))
    page.locator("#held-matches").click()
    row = page.locator(f'tr.hold-row[data-order-id="{held.order_id}"]')
    expect(row).to_contain_text("ab12cd34")
    expect(row).not_to_contain_text("ab12cd340000")
    check_fits_phone(page, js_errors)
    screenshot("held-matches-queue")
    row.locator('input[name="reason"]').fill("同一支付账户的多个新账号")
    row.get_by_role("button", name=zh("Release")).click()
    expect(page.locator("#released")).to_contain_text(held.order_id)
    expect(page.locator(f'tr.hold-row[data-order-id="{held.order_id}"]')).to_have_count(0)
    check_fits_phone(page, js_errors)
