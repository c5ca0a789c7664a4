"""On a phone: the receiving organization's staff refund a giving-day gift from its page, and
an administrator distributes an ended campaign's quadratic round and sees the shares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shanju.accounts.models import Role
from shanju.campaigns.engine import apply_batch
from shanju.campaigns.models import CampaignStatus, PoolKind
from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone, zh
from tests.factories import (
    PASSWORD,
    make_campaign,
    make_campaign_gift,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)

pytestmark = pytest.mark.browser


def test_staff_refund_a_gift_on_a_phone(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    with live_server.database.transaction() as session:
        org = make_org(session, name="北京春苗公益基金会")
        project = make_project(session, org=org, title="山区孩子过冬棉衣")
        campaign = make_campaign(session, projects=[project])
        make_pool(session, campaign=campaign, budget_fen=100_000_00)
        gift = apply_batch(session, [make_paid_gift(campaign_id=campaign.id,
                                                    project_id=project.id, amount_fen=50_00)])[0]
        org_id = org.id
    staff = live_server.create_user(role=Role.ORG_STAFF, organization_id=org_id)
    sign_in(page, staff.email, PASSWORD)
    page.goto(live_server(f"/campaigns/gifts/{gift.order_id}"))
    card = page.locator("#refund")
    card.locator('input[name="reason"]').fill("捐赠人重复支付")
    check_fits_phone(page, js_errors)
    screenshot("gift-refund-form")
    card.get_by_role("button", name=zh("Refund the gift")).click()
    expect(page.locator("#refunded")).to_be_visible()
    expect(page.locator('button[data-action="refund"]')).to_have_count(0)
    check_fits_phone(page, js_errors)


def test_admin_distributes_a_quadratic_round_on_a_phone(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    with live_server.database.transaction() as session:
        org = make_org(session)
        p1 = make_project(session, org=org, title="乡村图书角")
        p2 = make_project(session, org=org, title="流动儿童课后班")
        campaign = make_campaign(session, projects=[p1, p2], status=CampaignStatus.ENDED)
        pool = make_pool(session, campaign=campaign, budget_fen=10_000_00,
                         kind=PoolKind.QUADRATIC)
        for amount, project in ((100, p1), (400, p1), (900, p1), (10_000, p2)):
            make_campaign_gift(session, campaign=campaign, project=project, amount_fen=amount,
                               donor_id=make_user(session).id)
        campaign_id, pool_id = campaign.id, pool.id
    admin = live_server.create_user(role=Role.ADMIN)
    sign_in(page, admin.email, PASSWORD)
    page.goto(live_server(f"/review/campaigns/{campaign_id}"))
    page.locator(f'#pool-{pool_id} button[data-action="distribute"]').click()
    shares = page.locator(f"#pool-{pool_id} table.shares tbody tr")
    expect(shares).to_have_count(2)
    expect(page.locator(f'#pool-{pool_id} button[data-action="distribute"]')).to_have_count(0)
    page.locator(f"#pool-{pool_id}").scroll_into_view_if_needed()
    check_fits_phone(page, js_errors)
    screenshot("quadratic-shares")
