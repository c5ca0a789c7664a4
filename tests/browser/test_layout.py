"""What a phone (390 px) shows: the whole header in both languages, tappable controls, and
a donate form whose typed amount and presets never disagree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shanju.accounts.models import Role
from tests.browser.conftest import PHONE, LiveServer
from tests.browser.helpers import check_fits_phone, fundraising_project, zh
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser


def _boxes(page: Page, selector: str) -> list[dict[str, float]]:
    boxes = []
    for link in page.locator(selector).all():
        box = link.bounding_box()
        assert box is not None, selector
        boxes.append(box)
    return boxes


def check_header_fits(page: Page) -> None:
    """Account links and the language switch are whole on screen; the main nav's links too
    (or, if a language ever overflows, the nav scrolls instead of pushing the page)."""
    for box in _boxes(page, "header .account-nav a, header a.lang, header a.brand"):
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        assert box["height"] >= 40, box
    for box in _boxes(page, "header .nav a"):
        assert box["height"] >= 40, box
        assert box["x"] + box["width"] <= PHONE["width"], box


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_header_fits_a_phone_signed_out_and_as_a_reviewer(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
    lang: str,
) -> None:
    project_id, _ = fundraising_project(live_server)
    page.goto(live_server(f"/projects/{project_id}?lang={lang}"))
    check_header_fits(page)
    expect(page.locator("header .account-nav a")).to_have_count(2)
    check_fits_phone(page, js_errors)
    screenshot(f"header-signed-out-{lang}")

    reviewer = live_server.create_user(role=Role.REVIEWER, display_name="赵审核")
    sign_in(page, reviewer.email, PASSWORD)
    page.goto(live_server("/review"))
    check_header_fits(page)
    expect(page.locator('header .nav a[href="/review"]')).to_have_attribute(
        "aria-current", "page")
    check_fits_phone(page, js_errors)
    screenshot(f"header-reviewer-{lang}")


def test_report_button_is_near_the_top_of_a_project_page(
    page: Page, live_server: LiveServer, js_errors: list[str]
) -> None:
    project_id, _ = fundraising_project(live_server)
    page.goto(live_server(f"/projects/{project_id}"))
    report = page.locator("main a.report-link")
    expect(report).to_have_count(1)
    # Visible without scrolling on a phone, and big enough to tap.
    box = report.bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= PHONE["height"] and box["height"] >= 40
    check_fits_phone(page, js_errors)


def test_typing_an_amount_deselects_the_presets_and_an_error_keeps_it(
    page: Page,
    live_server: LiveServer,
    sign_in: Callable[[Page, str, str], None],
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    project_id, _ = fundraising_project(live_server)
    donor = live_server.create_user(display_name="李雷")
    sign_in(page, donor.email, PASSWORD)
    page.goto(live_server(f"/projects/{project_id}/donate"))
    form = page.locator("form#donate")
    expect(form.locator('input[name="amount"][value="20"]')).to_be_checked()

    form.locator("#custom_amount").fill("0.001")
    expect(form.locator('input[name="amount"]:checked')).to_have_count(0)
    form.locator('[type="submit"]').click()

    expect(page.locator("#custom_amount")).to_have_value("0.001")
    expect(page.locator("#custom_amount")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#custom_amount")).to_have_attribute("aria-describedby", "amount-error")
    expect(page.locator("#amount-error")).to_be_visible()
    expect(page.locator("form#donate .form-error")).to_have_count(0)
    expect(page.locator('form#donate input[name="amount"]:checked')).to_have_count(0)
    screenshot("donate-amount-error")

    # Choosing a preset again clears the typed amount.
    page.locator('form#donate label:has(input[value="50"])').click()
    expect(page.locator("#custom_amount")).to_have_value("")
    check_fits_phone(page, js_errors)


def test_sign_in_from_donate_says_why(page: Page, live_server: LiveServer,
                                      js_errors: list[str]) -> None:
    project_id, _ = fundraising_project(live_server)
    page.goto(live_server(f"/projects/{project_id}"))
    page.locator('form#donate [type="submit"]').click()
    expect(page.locator('[data-reason="donate"]')).to_have_text(
        zh("Sign in or sign up to give to this project."))
    check_fits_phone(page, js_errors)
