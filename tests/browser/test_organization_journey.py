"""A charity on a phone: a new staff member signs up and registers the organization, a reviewer
approves it, the staff creates and submits a project, the reviewer approves it, the staff starts
fundraising, and the public project page shows the donate form and the legal disclosures."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from shanju.accounts.models import Role
from shanju.core.clock import today_cn
from shanju.organizations import uscc
from tests.browser.conftest import LiveServer, another_person, confirm_signup
from tests.browser.helpers import check_fits_phone
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser

ORG_NAME = "四川蓝天助学基金会"
ORG_USCC = uscc.make("53510000MJ000123")
CERT_NO = "川民公募证字第2025008号"
FILING_NO = "53510000MJ0001234A2026000071"
PLAN = "募集善款20万元,为凉山州30所乡村小学购置图书和书架,预算明细见项目说明。"
PHONE_NO = "028-86001234"


@pytest.fixture
def reviewer_page(browser: Browser, js_errors: list[str]) -> Iterator[Page]:
    """A second phone (its own cookies) for the platform reviewer."""
    with another_person(browser, js_errors, "reviewer") as page:
        yield page


def shot(page: Page, tmp_path: Path, name: str) -> None:
    """A screenshot of the reviewer's page (the ``screenshot`` fixture shoots the staff's)."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("live_server", ["sqlite", "postgresql"], indirect=True)
def test_organization_registers_and_starts_fundraising(
    page: Page,
    reviewer_page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
    tmp_path: Path,
) -> None:
    today = today_cn()
    reviewer = live_server.create_user(role=Role.REVIEWER, display_name="平台审核员")

    # A new user signs up as a charity's staff member.
    page.goto(live_server("/"))
    page.locator('header a[href^="/signup"]').click()
    page.fill('input[name="email"]', "wang.fang@lantian.org.cn")
    page.fill('input[name="display_name"]', "王芳")
    page.fill('input[name="password"]', PASSWORD)
    page.locator('input[name="role"][value="org_staff"]').check()
    page.locator('form[action="/signup"] [type="submit"]').click()
    # "Check your email": the link in it creates the account and signs in.
    confirm_signup(page, live_server, "wang.fang@lantian.org.cn")
    expect(page).to_have_url(re.compile(r"/me"))

    # The console is where staff work; without an organization yet it leads to registration.
    page.locator('header a[href="/console"]').click()
    expect(page).to_have_url(live_server("/organizations/register"))
    check_fits_phone(page, js_errors)
    form = page.locator('form[action="/organizations/register"]')
    form.locator('[name="name"]').fill(ORG_NAME)
    form.locator('[name="short_name"]').fill("蓝天助学")
    form.locator('[name="uscc"]').fill(ORG_USCC)
    form.locator('[name="org_type"]').select_option("foundation")
    form.locator('[name="registering_authority"]').fill("四川省民政厅")
    form.locator('[name="fundraising_cert_no"]').fill(CERT_NO)
    form.locator('[name="fundraising_valid_from"]').fill(
        (today - dt.timedelta(days=200)).isoformat())
    form.locator('[name="fundraising_valid_until"]').fill(
        (today + dt.timedelta(days=800)).isoformat())
    form.locator('[name="province"]').select_option("四川")
    form.locator('[name="city"]').fill("成都")
    form.locator('[name="address"]').fill("武侯区人民南路四段12号")
    form.locator('[name="contact_name"]').fill("王芳")
    form.locator('[name="contact_phone"]').fill(PHONE_NO)
    form.locator('[name="contact_email"]').fill("contact@lantian.org.cn")
    screenshot("org-01-register")
    form.locator('[type="submit"]').click()
    expect(page).to_have_url(re.compile(r"/organizations/\d+\?registered=1"))
    org_id = int(re.findall(r"/organizations/(\d+)", page.url)[0])
    expect(page.locator("h1")).to_have_text(ORG_NAME)
    check_fits_phone(page, js_errors)
    screenshot("org-02-registered")

    # The reviewer signs in on another phone and approves the organization.
    sign_in(reviewer_page, reviewer.email, PASSWORD)
    reviewer_page.locator('header a[href="/review"]').click()
    expect(reviewer_page.locator("#pending-organizations .count")).to_have_text("1")
    reviewer_page.locator("#pending-organizations").click()
    reviewer_page.locator(f'a[href="/review/organizations/{org_id}"]').click()
    expect(reviewer_page.locator("body")).to_contain_text(ORG_USCC)
    check_fits_phone(reviewer_page, js_errors)
    shot(reviewer_page, tmp_path, "org-03-review-org")
    reviewer_page.locator(f'form[action="/review/organizations/{org_id}/approve"] '
                          '[type="submit"]').click()
    expect(reviewer_page).to_have_url(re.compile(r"done=approve"))

    # The staff creates a project in the console.
    page.locator('header a[href="/console"]').click()
    expect(page.locator("[data-org-status]")).to_have_attribute("data-org-status", "approved")
    check_fits_phone(page, js_errors)
    screenshot("org-04-console")
    page.locator('a[href="/console/projects/new"]').click()
    form = page.locator('form[action="/console/projects/new"]')
    form.locator('[name="title"]').fill("凉山乡村小学图书角")
    form.locator('[name="summary"]').fill("为凉山州30所乡村小学建图书角")
    form.locator('[name="category"]').select_option("education")
    form.locator('[name="province"]').select_option("四川")
    form.locator('[name="goal"]').fill("200000")
    form.locator('[name="description"]').fill("每所学校配置300册适龄图书和两个书架。")
    form.locator('[name="fundraising_plan"]').fill(PLAN)
    form.locator('[name="filing_number"]').fill(FILING_NO)
    form.locator('[name="filing_valid_from"]').fill((today - dt.timedelta(days=1)).isoformat())
    form.locator('[name="filing_valid_until"]').fill((today + dt.timedelta(days=90)).isoformat())
    check_fits_phone(page, js_errors)
    screenshot("org-05-new-project")
    form.locator('[type="submit"]').click()
    expect(page).to_have_url(re.compile(r"/console/projects/\d+$"))
    project_id = int(re.findall(r"/console/projects/(\d+)", page.url)[0])
    expect(page.locator("[data-status]").first).to_have_attribute("data-status", "draft")
    page.locator('button[data-action="submit"]').click()
    expect(page.locator("[data-status]").first).to_have_attribute("data-status", "submitted")
    check_fits_phone(page, js_errors)
    screenshot("org-06-submitted")

    # The reviewer approves the project.
    reviewer_page.locator('header a[href="/review"]').click()
    expect(reviewer_page.locator("#pending-projects .count")).to_have_text("1")
    reviewer_page.locator("#pending-projects").click()
    reviewer_page.locator(f'a[href="/review/projects/{project_id}"]').click()
    expect(reviewer_page.locator("body")).to_contain_text(FILING_NO)
    check_fits_phone(reviewer_page, js_errors)
    shot(reviewer_page, tmp_path, "org-07-review-project")
    # On a phone a decision's reason box takes the whole row, not a squeezed half.
    reason = reviewer_page.locator(f'form[action$="/{project_id}/actions/reject"] '
                                   'input[name="reason"]').bounding_box()
    assert reason is not None and reason["width"] >= 300
    reviewer_page.locator('button[data-action="approve"]').click()
    expect(reviewer_page.locator("[data-status]").first).to_have_attribute(
        "data-status", "approved")

    # The staff starts fundraising and opens the public page.
    page.reload()
    expect(page.locator("[data-status]").first).to_have_attribute("data-status", "approved")
    page.locator('button[data-action="start"]').click()
    expect(page.locator("[data-status]").first).to_have_attribute("data-status", "fundraising")
    screenshot("org-08-fundraising")
    page.locator(f'a[href="/projects/{project_id}"]').click()
    expect(page).to_have_url(live_server(f"/projects/{project_id}"))

    # Anyone (the reviewer's phone, signed out, stands in for the public) sees the page with
    # the donate form, the disclosures the Charity Law requires and the report button.
    public = reviewer_page
    public.context.clear_cookies()
    public.goto(live_server(f"/projects/{project_id}"))
    expect(public.locator("h1")).to_have_text("凉山乡村小学图书角")
    expect(public.locator("form#donate")).to_be_visible()
    disclosures = public.locator("#disclosures")
    expect(disclosures).to_contain_text(ORG_NAME)
    expect(disclosures.locator(".uscc")).to_have_text(ORG_USCC)
    expect(disclosures).to_contain_text(CERT_NO)
    expect(disclosures.locator(".filing")).to_have_text(FILING_NO)
    expect(disclosures.locator(".plan")).to_have_text(PLAN)
    expect(disclosures).to_contain_text(PHONE_NO)
    report = public.locator("a.report-link")
    expect(report).to_be_visible()
    expect(report).to_have_attribute("href", re.compile(rf"project_id={project_id}\b"))
    expect(public.locator('[role="progressbar"]').first).to_have_attribute("aria-valuenow", "0")
    check_fits_phone(public, js_errors)
    shot(public, tmp_path, "org-09-public-project")

    # The report button opens the complaint form about this project.
    report.click()
    expect(public).to_have_url(re.compile(r"/complaints/new\?"))
    assert public.locator("form").count() >= 1
    check_fits_phone(public, js_errors)
