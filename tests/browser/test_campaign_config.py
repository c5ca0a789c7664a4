"""A giving day configured on phones: a reviewer creates a campaign, adds a sponsor and a pool
with a 1:1 rule capped at ¥999 per donor per day, an organization applies with its project,
the reviewer approves it and sets the campaign live."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from shanju.accounts.models import Role
from shanju.campaigns.models import MatchPool, PoolRule
from shanju.ledger import service as ledger
from tests.browser.conftest import LiveServer, another_person
from tests.browser.helpers import check_fits_phone, zh
from tests.factories import PASSWORD, make_org, make_project

pytestmark = pytest.mark.browser


@pytest.fixture
def staff_page(browser: Browser, js_errors: list[str]) -> Iterator[Page]:
    """A second phone (its own cookies) for the organization's staff."""
    with another_person(browser, js_errors, "staff") as page:
        yield page


def test_reviewer_sets_up_a_giving_day_and_an_organization_joins(
    page: Page,
    staff_page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
    tmp_path: Path,
) -> None:
    with live_server.database.transaction() as session:
        org = make_org(session, name="云南山花助学基金会", province="云南")
        project = make_project(session, org=org, title="山区小学营养午餐")
        org_id, project_id = org.id, project.id
    reviewer = live_server.create_user(role=Role.REVIEWER, display_name="平台审核员")
    staff = live_server.create_user(role=Role.ORG_STAFF, organization_id=org_id,
                                    display_name="李老师")

    # The reviewer creates the campaign from the reviewer console.
    sign_in(page, reviewer.email, PASSWORD)
    page.goto(live_server("/review"))
    page.locator("#review-campaigns").click()
    expect(page).to_have_url(live_server("/review/campaigns"))
    form = page.locator('form[action="/review/campaigns"]')
    form.locator('[name="name"]').fill("99公益日")
    form.locator('[name="name_en"]').fill("99 Giving Day")
    form.locator('[name="slug"]').fill("Giving Day")  # refused: not a slug
    form.locator('[name="opens_at"]').fill("00:00")
    form.locator('[type="submit"]').click()
    error = page.locator('.form-error[data-form="create"]')
    expect(error).to_have_attribute("data-code", "invalid_slug")
    expect(page.locator('#create-slug')).to_have_attribute("aria-invalid", "true")
    check_fits_phone(page, js_errors)
    screenshot("campaign-01-form-error")
    form = page.locator('form[action="/review/campaigns"]')
    expect(form.locator('[name="name"]')).to_have_value("99公益日")  # what was typed stays
    form.locator('[name="slug"]').fill("day99")
    form.locator('[type="submit"]').click()
    expect(page.locator("h1")).to_have_text("99公益日")
    expect(page.locator("[data-campaign-status]").first).to_have_attribute(
        "data-campaign-status", "draft")
    campaign_url = page.url

    # A sponsor, and its pool: 1:1, at most ¥999 per donor per day.
    sponsor_form = page.locator("#sponsors form")
    sponsor_form.locator('[name="name"]').fill("爱心科技有限公司")
    sponsor_form.locator('[type="submit"]').click()
    expect(page.locator("#sponsors")).to_contain_text("爱心科技有限公司")
    pool_form = page.locator("#new-pool form")
    pool_form.locator('[name="name"]').fill("一比一配捐")
    pool_form.locator('[name="budget"]').fill("100000")
    pool_form.locator('[name="ratio"]').fill("1:1")
    pool_form.locator('[name="donor_daily_cap"]').fill("999")
    check_fits_phone(page, js_errors)
    screenshot("campaign-02-new-pool")
    pool_form.locator('[type="submit"]').click()
    pool = page.locator("[data-pool-id]").first
    expect(pool).to_contain_text("一比一配捐")
    expect(pool.locator("[data-remaining]")).to_have_attribute("data-remaining", "10000000")
    expect(pool.locator("[data-rule-version]")).to_have_attribute("data-rule-version", "1")
    expect(pool.locator(".rule-summary")).to_contain_text("¥999")
    page.locator('button[data-action="publish"]').click()
    expect(page.locator("[data-campaign-status]").first).to_have_attribute(
        "data-campaign-status", "scheduled")
    # Not yet: no project is approved.
    page.locator('button[data-action="start"]').click()
    expect(page.locator('.form-error[data-form="status"]')).to_have_attribute(
        "data-code", "no_enrolled_projects")
    expect(page.locator('.form-error[data-form="status"]')).to_have_text(
        zh("A campaign needs at least one approved project to go live."))

    # The organization applies with its project from its console.
    sign_in(staff_page, staff.email, PASSWORD)
    staff_page.goto(live_server("/console"))
    staff_page.locator("#org-campaigns").click()
    expect(staff_page).to_have_url(live_server("/org/campaigns"))
    card = staff_page.locator("[data-campaign-id]").first
    expect(card).to_contain_text("99公益日")
    card.locator('select[name="project_id"]').select_option(str(project_id))
    card.locator('form.apply-form [type="submit"]').click()
    expect(staff_page.locator("[data-enrolment-status]").first).to_have_attribute(
        "data-enrolment-status", "applied")
    check_fits_phone(staff_page, js_errors)
    staff_page.screenshot(path=str(tmp_path / "campaign-03-applied.png"), full_page=True)

    # The reviewer approves the project and sets the campaign live.
    page.goto(campaign_url)
    enrolment = page.locator("[data-enrolment-id]").first
    expect(enrolment).to_contain_text("山区小学营养午餐")
    enrolment.locator('button[data-action="approve"]').click()
    expect(page.locator("[data-enrolment-status]").first).to_have_attribute(
        "data-enrolment-status", "approved")
    page.locator('button[data-action="start"]').click()
    expect(page.locator("[data-campaign-status]").first).to_have_attribute(
        "data-campaign-status", "live")
    check_fits_phone(page, js_errors)
    screenshot("campaign-04-live")

    staff_page.reload()
    expect(staff_page.locator("[data-enrolment-status]").first).to_have_attribute(
        "data-enrolment-status", "approved")

    with live_server.database.transaction(write=False) as session:
        pool_row = session.query(MatchPool).one()
        rule = session.query(PoolRule).one()
        assert rule.params["ratio_num"] == rule.params["ratio_den"] == 1
        assert rule.params["per_donor_daily_cap_fen"] == 999_00
        assert ledger.balance(session, ledger.match_pool(pool_row.id)) == 100_000_00
        assert ledger.check(session).ok
