"""In the demo: the demo donor gives (an ordinary donation, and a giving-day gift on the live
99公益日), opens the receipt and sees it verified in the browser; the demo's log holds every
money movement of the demo, the new ones included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from shanju.campaigns.models import Enrolment
from shanju.demo import seed as demo_seed
from shanju.ledger.models import JournalEntry
from shanju.projects.models import Project, ProjectStatus
from shanju.transparency.check import check as transparency_check
from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone, confirm_past_goal_if_asked, donate_in_sandbox

pytestmark = pytest.mark.browser


def _verified(page: Page) -> None:
    expect(page.locator("#verify")).to_have_attribute("data-verify-status", "ok",
                                                      timeout=15_000)
    for step in ("signature", "leaf", "inclusion", "opening"):
        expect(page.locator(f'#verify-steps li[data-step="{step}"]').first).to_have_attribute(
            "data-ok", "true")


def test_the_demo_donor_pays_and_sees_the_receipts_verified(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    with live_server.database.transaction() as session:
        # Today: with the live giving day.
        demo_seed.seed(session, scale=0.1, upload_dir=live_server.settings.upload_dir)
    with live_server.database.transaction(write=False) as session:
        enrolled = select(Enrolment.project_id)
        plain = session.scalar(
            select(Project.id).where(Project.status == ProjectStatus.FUNDRAISING,
                                     Project.id.not_in(enrolled)).order_by(Project.id).limit(1))
        giving_day = session.scalar(select(Enrolment.project_id).order_by(Enrolment.id).limit(1))
        assert plain is not None and giving_day is not None
    email, _role, _name = demo_seed.DEMO_ACCOUNTS[0]
    sign_in(page, email, demo_seed.DEMO_PASSWORD)

    # An ordinary donation: pay in the sandbox, then the receipt from the thank-you page.
    donate_in_sandbox(page, live_server, plain)
    page.locator("a#receipt-link").click()
    _verified(page)
    expect(page.locator("#what")).to_contain_text("¥50.00")
    check_fits_phone(page, js_errors)
    screenshot("demo-donation-receipt")

    # A giving-day gift: the engine credits it and its match; its receipt holds both leaves.
    page.goto(live_server(f"/projects/{giving_day}"))
    form = page.locator("form#donate")
    form.locator('input[name="amount"][value="50"]').check()
    confirm_past_goal_if_asked(form)
    form.locator('[type="submit"]').click()
    page.locator('button[name="action"][value="pay"]').click()
    result = page.locator("#gift-result")
    expect(result).to_contain_text("¥50.00")
    result.locator('a[href^="/campaigns/gifts/o_"]').click()
    page.locator("a#receipt-link").click()
    _verified(page)
    check_fits_phone(page, js_errors)
    screenshot("demo-gift-receipt")

    # "你的名字,我们记得" lists both.
    page.goto(live_server("/remember"))
    expect(page.locator('#my-receipts li[data-ref^="donation:"]').first).to_be_visible()
    expect(page.locator('#my-receipts li[data-ref^="gift:"]').first).to_be_visible()

    # The log still holds every movement of the demo, the two new ones included.
    with live_server.database.transaction(write=False) as session:
        report = transparency_check(session)
        assert report.ok, dict(report.problems)
        assert report.entries == session.scalar(select(func.count()).select_from(JournalEntry))
