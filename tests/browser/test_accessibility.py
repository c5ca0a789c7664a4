"""The main pages pass axe-core's automated accessibility check on a phone (390×844, zh-CN,
and English for four of them): no serious or critical violation of WCAG 2.1 A/AA or of axe's
best practices — and none is wider than the phone.

axe-core (tests/browser/vendor/axe-core, never served by the app) is evaluated into each page
by Playwright (DevTools' evaluate, which the page's Content-Security-Policy does not govern), so
no context needs ``bypass_csp``: the policy stays in force, and the ``page`` fixture still fails
a test on a violation of it.

One server and one set of data serve the whole module (the checks only read it, but for one
failed sign-in). A sandbox gift, a giving-day gift, a password reset link and a signed-in
donor's cookies are made once, in the browser, before the pages are checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from shanju.core import files
from shanju.demo import covers
from shanju.projects import service as projects
from tests.browser.conftest import LiveServer, horizontal_overflow, new_context, serving
from tests.browser.helpers import check_accessible, donate_in_sandbox
from tests.factories import PASSWORD, make_campaign, make_org, make_pool, make_project
from tests.projects.helpers import image_bytes, paid_donation, staff_of
from tests.summit.events_data import build_summit

pytestmark = pytest.mark.browser

DONOR = "li.lei@browser.test"
FORGETFUL = "wang.fang@browser.test"


@dataclass
class Site:
    """The server and what the pages show: ids, and what only a browser could make."""

    server: LiveServer
    paths: dict[str, str]
    donor_cookies: list[Any]


def _seed(server: LiveServer) -> dict[str, str]:
    upload_dir = server.settings.upload_dir
    school = covers.prepared("education", 0).largest.data
    with server.database.transaction() as s:
        yunnan = make_org(s, name="云南青山公益基金会", province="云南")
        sichuan = make_org(s, name="四川蓝天助学基金会", province="四川")
        # A project past its goal, with a cover, a gallery and a beneficiary's story.
        books = make_project(s, org=yunnan, title="乡村小学图书角", goal_fen=100_000)
        books.category = "education"
        books.description = "为大山里的孩子们建一个图书角，帮助他们爱上阅读。"
        books.story = "小雨（化名）今年十岁，每周走两个多小时山路到学校。"
        staff = staff_of(s, yunnan)
        projects.do_set_cover(session=s, actor=staff, project=books, upload_dir=upload_dir,
                              upload=files.Upload("school.webp", school),
                              alt_text="山坡上的乡村小学和国旗")
        projects.do_add_gallery_photos(
            session=s, actor=staff, project=books, upload_dir=upload_dir,
            photos=[files.Upload("g.png", image_bytes(size=(900, 600)))])
        paid_donation(s, books, amount_fen=120_000, message="加油！")
        meals = make_project(s, org=yunnan, title="山区儿童营养午餐", goal_fen=100_000)
        meals.category = "education"
        paid_donation(s, meals, amount_fen=20_000)
        # The giving day's project (its donate form goes to the giving-day checkout).
        coats = make_project(s, org=sichuan, title="冬季助学温暖包", goal_fen=100_000)
        campaign = make_campaign(s, projects=[coats])
        make_pool(s, campaign=campaign, budget_fen=100_000, sponsor_name="腾讯公益")
        # The project the donor gives to in the sandbox.
        river = make_project(s, org=yunnan, title="洱海护河行动")
        river.category = "environment"
        summit = build_summit(s)
        return {
            "home": "/",
            "projects": "/projects",
            "search": "/projects?q=图书&field=education&province=云南&sort=newest",
            "project": f"/projects/{books.id}",
            "project_fundraising": f"/projects/{river.id}",
            "organizations": "/organizations",
            "organization": f"/organizations/{yunnan.id}",
            "campaign": f"/campaigns/{campaign.slug}",
            "campaign_project": f"/projects/{coats.id}",
            "summit": f"/summits/{summit.slug}",
            "summit_timetable": f"/summits/{summit.slug}/timetable",
            "summit_speaker": f"/summits/{summit.slug}/speakers/{summit.speaker_ids[0]}",
            "campaigns": "/campaigns",
            "summits": "/summits",
            "profile": "/me",
            "my_donations": "/me/donations",
            "remember": "/remember",
            "sign_in": "/login",
            "sign_up": "/signup",
            "password_forgot": "/password/forgot",
            "donate": f"/projects/{books.id}/donate",
            "river_id": str(river.id),  # not a page: the project given to in the sandbox
        }


def _browse(browser: Browser, server: LiveServer, paths: dict[str, str]) -> list[Any]:
    """Make in a browser what the pages need: a reset link, a sandbox gift (its thank-you,
    receipt and cashier pages); return the signed-in donor's cookies."""
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(server("/password/forgot"))
        page.fill('input[name="email"]', FORGETFUL)
        page.locator("form[data-forgot] [type=submit]").click()
        expect(page.locator("[data-reset-sent]")).to_be_visible()
        paths["password_reset"] = server.emailed_link(FORGETFUL).removeprefix(server.url)

        page.goto(server("/login"))
        page.fill('input[name="email"]', DONOR)
        page.fill('input[name="password"]', PASSWORD)
        page.locator('form[action="/login"] [type="submit"]').click()
        expect(page).to_have_url(server("/"))
        # A cashier left unpaid, for its own page.
        page.goto(server(f"/projects/{paths['river_id']}/donate"))
        page.locator('form#donate [type="submit"]').click()
        expect(page).to_have_url(re.compile(r"/pay/sandbox/"))
        paths["cashier"] = page.url.removeprefix(server.url)
        public_id = donate_in_sandbox(page, server, int(paths["river_id"]))
        paths["thank_you"] = f"/donations/{public_id}"
        paths["receipt"] = f"/transparency/receipts/donation:{public_id}"
        # A giving-day gift: its checkout's cashier, then its own thank-you page (the match).
        page.goto(server(paths["campaign_project"]))
        page.locator('form#donate input[name="amount"][value="50"]').check()
        page.locator('form#donate [type="submit"]').click()
        page.locator('button[name="action"][value="pay"]').click()
        expect(page.locator("#gift-result")).to_have_attribute("data-match-status", "matched")
        paths["giving_day_thank_you"] = page.url.removeprefix(server.url)
        return context.cookies()
    finally:
        context.close()


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         browser: Browser) -> Iterator[Site]:
    """One server for the module, its data, and what only a browser could make."""
    with serving(request, tmp_path_factory.mktemp("axe")) as server:
        paths = _seed(server)
        server.create_user(email=DONOR, display_name="李雷")
        server.create_user(email=FORGETFUL, display_name="王芳")
        cookies = _browse(browser, server, paths)
        yield Site(server, paths, cookies)


# (page, signed in as the donor, language)
PAGES = [
    ("home", False, "zh_CN"),
    ("projects", False, "zh_CN"),
    ("search", False, "zh_CN"),
    ("project", False, "zh_CN"),
    ("organizations", False, "zh_CN"),
    ("organization", False, "zh_CN"),
    ("campaign", False, "zh_CN"),
    ("campaign_project", False, "zh_CN"),
    ("summit", False, "zh_CN"),
    ("summit_timetable", False, "zh_CN"),
    ("summit_speaker", False, "zh_CN"),
    ("sign_in", False, "zh_CN"),
    ("sign_up", False, "zh_CN"),
    ("password_forgot", False, "zh_CN"),
    ("password_reset", False, "zh_CN"),
    ("project", True, "zh_CN"),
    ("donate", True, "zh_CN"),
    ("cashier", True, "zh_CN"),
    ("thank_you", True, "zh_CN"),
    ("receipt", True, "zh_CN"),
    ("giving_day_thank_you", True, "zh_CN"),
    ("profile", True, "zh_CN"),
    ("my_donations", True, "zh_CN"),
    ("remember", True, "zh_CN"),
    ("campaigns", False, "zh_CN"),
    ("summits", False, "zh_CN"),
    ("home", False, "en"),
    ("project", True, "en"),
    ("organization", False, "en"),
    ("campaign", False, "en"),
]


def _id(spec: tuple[str, bool, str]) -> str:
    name, signed_in, lang = spec
    return "-".join([name, *(["signed-in"] if signed_in else []), lang])


@pytest.mark.parametrize("spec", PAGES, ids=[_id(p) for p in PAGES])
def test_page_fits_the_phone_and_has_no_serious_accessibility_violations(
    page: Page, site: Site, js_errors: list[str], spec: tuple[str, bool, str],
) -> None:
    name, signed_in, lang = spec
    if signed_in:
        page.context.add_cookies(site.donor_cookies)
    path = site.paths[name]
    if lang != "zh_CN":
        path += ("&" if "?" in path else "?") + f"lang={lang}"
    response = page.goto(site.server(path))
    assert response is not None and response.status == 200, path
    page.wait_for_load_state("load")
    expect(page.locator("html")).to_have_attribute("lang", "en" if lang == "en" else "zh-CN")
    if name == "receipt":
        expect(page.locator("#verify")).to_have_attribute("data-verify-status", "ok")
    check_accessible(page)
    assert horizontal_overflow(page) == 0, f"{path} is wider than the 390 px phone"
    assert js_errors == [], js_errors


def test_forms_showing_errors_have_no_serious_accessibility_violations(
    page: Page, site: Site, js_errors: list[str],
) -> None:
    # Sign-in with a wrong password: the form comes back with its error.
    page.goto(site.server("/login"))
    page.fill('input[name="email"]', DONOR)
    page.fill('input[name="password"]', "not the password")
    page.locator('form[action="/login"] [type="submit"]').click()
    expect(page.locator(".form-error, [role=alert]").first).to_be_visible()
    check_accessible(page)

    # The donate form with an amount it refuses: the field points at its error.
    page.context.add_cookies(site.donor_cookies)
    page.goto(site.server(f"/projects/{site.paths['river_id']}/donate"))
    page.fill("#custom_amount", "0.001")
    page.locator('form#donate [type="submit"]').click()
    expect(page.locator("#amount-error")).to_be_visible()
    check_accessible(page)
    assert js_errors == [], js_errors
