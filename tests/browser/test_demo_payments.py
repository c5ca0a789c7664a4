"""In the demo, on a phone (390 px): the demo donor gives on the live giving day through the
donate form, pays on WeChat Pay's H5 page and on Alipay's wap cashier — the emulators the demo
serves itself, on its own origin — and lands on the thank-you page, paid and matched.

No Content-Security-Policy violation anywhere, the emulators' pages included: they are served
by the demo under their own policies, which the site's middleware leaves alone, and their
forms may send the phone back to the platform.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from shanju.campaigns.models import Enrolment
from shanju.demo import payments as demo_payments
from shanju.demo.seed import DEMO_PASSWORD
from shanju.ledger import service as ledger
from shanju.projects.models import Project, ProjectStatus
from shanju.transparency.check import check as transparency_check
from tests.browser.conftest import horizontal_overflow, phone_browser
from tests.browser.helpers import confirm_past_goal_if_asked
from tests.demo.helpers import Demo, serve_demo

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with serve_demo(tmp_path) as served:
        yield served
        served.payments.wechatpay.outbox.wait_idle()
        served.payments.alipay.outbox.wait_idle()


@pytest.fixture
def phone(browser: Browser, csp_violations: list[str]) -> Iterator[Page]:
    with phone_browser(browser, csp_violations) as page:
        yield page
    assert csp_violations == [], f"Content-Security-Policy violations: {csp_violations}"


def _giving_day_projects(demo: Demo) -> list[int]:
    with demo.db.transaction(write=False) as session:
        return list(session.scalars(
            select(Project.id).join(Enrolment, Enrolment.project_id == Project.id)
            .where(Project.status == ProjectStatus.FUNDRAISING).order_by(Project.id)))


def _give(page: Page, demo: Demo, project_id: int, method: str) -> None:
    page.goto(f"{demo.url}/projects/{project_id}")
    form = page.locator("#donate")
    expect(form).to_have_attribute("action", "/gifts/give")
    expect(form.locator("input[name=campaign_id]")).to_have_count(1)
    form.locator("label", has_text=re.compile(r"^¥20$")).click()
    form.locator("label.pay-method", has_text=method).click()
    confirm_past_goal_if_asked(form)
    form.locator("button[type=submit]").click()


def _thanked(page: Page) -> None:
    expect(page).to_have_url(re.compile(r"/gifts/orders/pi_[A-Za-z0-9]+"))
    status = page.locator("#order-status")
    expect(status).to_have_attribute("data-status", "paid")
    expect(status).to_contain_text("¥20.00")
    expect(status.locator(".match-result")).to_have_count(1)
    assert horizontal_overflow(page) == 0


def test_the_demo_donor_gives_through_both_emulators_on_the_live_giving_day(
    phone: Page, demo: Demo,
) -> None:
    projects = _giving_day_projects(demo)
    assert len(projects) >= 2
    phone.goto(f"{demo.url}/login")
    phone.fill('input[name="email"]', "donor@demo.shanju.org")
    phone.fill('input[name="password"]', DEMO_PASSWORD)
    phone.locator('form[action="/login"] [type="submit"]').click()
    phone.wait_for_load_state()

    _give(phone, demo, projects[0], "微信支付")
    expect(phone).to_have_url(re.compile(
        "^" + re.escape(f"{demo.url}{demo_payments.WECHATPAY_PATH}/emulator/pay/")))
    expect(phone.locator("main")).to_contain_text("¥20.00")
    assert horizontal_overflow(phone) == 0
    phone.get_by_role("button", name="确认支付").click()
    _thanked(phone)

    _give(phone, demo, projects[1], "支付宝")
    expect(phone).to_have_url(re.compile(
        "^" + re.escape(f"{demo.url}{demo_payments.ALIPAY_PATH}/emulator/pay/")))
    expect(phone.locator("main")).to_contain_text("20.00")
    assert horizontal_overflow(phone) == 0
    phone.get_by_role("button", name="确认付款").click()
    _thanked(phone)

    with demo.db.transaction(write=False) as session:
        assert ledger.check(session).ok
        assert transparency_check(session).ok
