"""A charity's payment account on a phone (390 px): its staff submits the WeChat Pay
sub-merchant number (a typo first, shown as a readable error), a reviewer approves it on
another phone, and the staff sees it in force."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from shanju.accounts.models import Role
from shanju.organizations.models import PaymentRoute, RouteStatus
from tests.browser.conftest import LiveServer, another_person
from tests.browser.helpers import check_fits_phone, zh
from tests.factories import PASSWORD, make_org

pytestmark = pytest.mark.browser


@pytest.fixture
def reviewer_page(browser: Browser, js_errors: list[str]) -> Iterator[Page]:
    """A second phone (its own cookies) for the platform reviewer."""
    with another_person(browser, js_errors, "reviewer") as page:
        yield page


@pytest.mark.parametrize("live_server", ["sqlite", "postgresql"], indirect=True)
def test_staff_submits_a_payment_account_and_a_reviewer_approves_it(
    page: Page,
    reviewer_page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
    tmp_path: Path,
) -> None:
    with live_server.database.transaction() as session:
        org_id = make_org(session, name="北京春苗公益基金会").id
    staff = live_server.create_user(role=Role.ORG_STAFF, organization_id=org_id)
    reviewer = live_server.create_user(role=Role.REVIEWER, display_name="平台审核员")

    # The staff finds the payment accounts from the console.
    sign_in(page, staff.email, PASSWORD)
    page.goto(live_server("/console"))
    page.locator("a#payment-routes").click()
    expect(page).to_have_url(live_server("/console/payment-routes"))
    wechat = page.locator("#route-wechatpay")
    expect(wechat.locator('[data-route-status="none"]')).to_be_visible()
    check_fits_phone(page, js_errors)

    # A digit too many: the error is shown under the field, in Chinese, with the input kept.
    wechat.locator('input[name="merchant_id"]').fill("19000001091")
    wechat.locator('[type="submit"]').click()
    error = page.locator("#wechatpay-merchant_id-error")
    expect(error).to_have_attribute("data-code", "invalid_sub_mchid")
    expect(error).to_contain_text("8 至 10 位数字")
    expect(page.locator("#wechatpay-merchant_id")).to_have_value("19000001091")
    expect(page.locator("#wechatpay-merchant_id")).to_have_attribute("aria-invalid", "true")
    check_fits_phone(page, js_errors)
    screenshot("route-01-error")

    page.locator("#wechatpay-merchant_id").fill("1900000109")
    page.locator("#route-wechatpay [type=submit]").click()
    expect(page.locator("[data-submitted]")).to_have_attribute("data-submitted", "wechatpay")
    expect(page.locator('#route-wechatpay [data-route-status="pending"]')).to_be_visible()
    check_fits_phone(page, js_errors)
    screenshot("route-02-pending")

    # The reviewer approves it from the console's queue.
    sign_in(reviewer_page, reviewer.email, PASSWORD)
    reviewer_page.goto(live_server("/review"))
    expect(reviewer_page.locator("#pending-payment-routes .count")).to_have_text("1")
    reviewer_page.locator("#pending-payment-routes").click()
    with live_server.database.transaction(write=False) as session:
        route_id = session.query(PaymentRoute.id).scalar()
    reviewer_page.locator(f'a[href="/review/payment-routes/{route_id}"]').click()
    expect(reviewer_page.locator(".merchant-id")).to_have_text("1900000109")
    check_fits_phone(reviewer_page, js_errors)
    reviewer_page.screenshot(path=str(tmp_path / "route-03-review.png"), full_page=True)
    # On a phone the reason box takes the whole row.
    box = reviewer_page.locator("textarea#reason").bounding_box()
    assert box is not None and box["width"] >= 300
    reviewer_page.locator('button[data-action="approve"]').click()
    expect(reviewer_page).to_have_url(live_server(f"/review/payment-routes/{route_id}?done=approve"))
    expect(reviewer_page.locator("#status")).to_have_attribute("data-route-status", "approved")

    # The staff sees it in force.
    page.reload()
    in_force = page.locator("#route-wechatpay .in-force")
    expect(in_force.locator('[data-route-status="approved"]')).to_have_text(zh("In force"))
    expect(in_force.locator(".merchant-id")).to_have_text("1900000109")
    check_fits_phone(page, js_errors)
    screenshot("route-04-approved")
    with live_server.database.transaction(write=False) as session:
        assert session.get_one(PaymentRoute, route_id).status == RouteStatus.APPROVED
