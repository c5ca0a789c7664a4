"""A donor on a phone (390 px) searches projects in Chinese, narrows them by field and province,
sorts them, and removes a filter; then finds a charity in the directory."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shanju.projects.models import ProjectStatus
from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone
from tests.factories import make_org, make_project
from tests.projects.helpers import paid_donation

pytestmark = pytest.mark.browser


def _world(live_server: LiveServer) -> dict[str, int]:
    with live_server.database.transaction() as s:
        yn = make_org(s, name="云南青山公益基金会", province="云南")
        sc = make_org(s, name="四川蓝天助学基金会", province="四川")
        books = make_project(s, org=yn, title="乡村小学图书角", goal_fen=100_000)
        books.category = "education"
        books.description = "为大山里的孩子们建一个图书角，帮助他们爱上阅读。"
        paid_donation(s, books, amount_fen=80_000)
        meals = make_project(s, org=yn, title="山区儿童营养午餐", goal_fen=100_000)
        meals.category = "education"
        meals.description = "一顿热乎的午餐，让孩子们安心上课。"
        paid_donation(s, meals, amount_fen=20_000)
        coats = make_project(s, org=sc, title="冬季助学温暖包", goal_fen=100_000)
        coats.category = "education"
        coats.description = "棉衣、手套和文具，送给凉山的孩子们。"
        river = make_project(s, org=yn, title="洱海护河行动")
        river.category = "environment"
        river.description = "守护洱海，孩子们也来捡垃圾。"
        done = make_project(s, org=yn, status=ProjectStatus.COMPLETED, title="已完成的图书项目")
        done.summary = "三所村小的图书室已建成"
        for n in range(3):
            make_org(s, qualified=False, name=f"峰会报名社工服务中心{n}", province="广东")
        return {"books": books.id, "meals": meals.id, "coats": coats.id, "river": river.id}


def _shown(page: Page) -> list[int]:
    return [int(x) for x in page.locator("[data-project-id]").evaluate_all(
        "cards => cards.map(c => c.dataset.projectId)")]


def test_a_donor_searches_and_filters_projects_on_a_phone(
    page: Page, live_server: LiveServer, screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    ids = _world(live_server)
    page.goto(live_server("/projects"))
    check_fits_phone(page, js_errors)

    # Two characters found inside the projects' stories.
    page.get_by_role("searchbox", name="搜索项目").fill("孩子")
    page.get_by_role("button", name="搜索").click()
    expect(page.locator("[data-total]")).to_have_attribute("data-total", "4")
    assert set(_shown(page)) == {ids["books"], ids["meals"], ids["coats"], ids["river"]}

    # A field chip keeps the search.
    page.locator('a[data-field="education"]').click()
    expect(page.locator("[data-total]")).to_have_attribute("data-total", "3")
    expect(page.get_by_role("searchbox", name="搜索项目")).to_have_value("孩子")

    # More filters: the province, as a select in a folded section.
    page.get_by_text("更多筛选").click()
    page.get_by_label("省份").select_option("云南")
    page.get_by_role("button", name="应用筛选").click()
    expect(page.locator("[data-total]")).to_have_attribute("data-total", "2")
    assert set(_shown(page)) == {ids["books"], ids["meals"]}

    # Nearly there: the 80 % project before the 20 % one (choosing submits the form).
    page.get_by_label("排序").select_option("nearly_there")
    expect(page).to_have_url(re.compile(r"sort=nearly_there"))
    assert _shown(page) == [ids["books"], ids["meals"]]
    check_fits_phone(page, js_errors)
    screenshot("search-filtered")

    # Removing the province brings Sichuan's project back, in the same order.
    page.get_by_role("link", name="移除：云南").click()
    expect(page.locator("[data-total]")).to_have_attribute("data-total", "3")
    assert _shown(page) == [ids["books"], ids["meals"], ids["coats"]]

    # A four-character word inside a title.
    page.get_by_role("searchbox", name="搜索项目").fill("营养午餐")
    page.get_by_role("button", name="搜索").click()
    assert _shown(page) == [ids["meals"]]

    # The directory: charities raising funds apart from the summit's registrants.
    page.goto(live_server("/organizations"))
    expect(page.locator('a[data-kind="fundraising"] .count')).to_have_text("2")
    expect(page.locator('a[data-kind="other"] .count')).to_have_text("3")
    page.get_by_role("searchbox", name="搜索公益组织").fill("助学")
    page.get_by_role("button", name="搜索").click()
    expect(page.locator(".org-card h3")).to_have_text(["四川蓝天助学基金会"])
    check_fits_phone(page, js_errors)
    screenshot("directory")
