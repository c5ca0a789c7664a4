"""The home page works on a phone: it loads, fits 390 px, and switches language."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from shanju.accounts.models import Role
from tests.browser.conftest import LiveServer, horizontal_overflow

pytestmark = pytest.mark.browser


def test_home_page_fits_a_phone_and_switches_language(
    page: Page,
    live_server: LiveServer,
    screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    response = page.goto(live_server("/"))
    assert response is not None and response.status == 200
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    assert horizontal_overflow(page) == 0
    screenshot("home-zh")

    page.locator('a[hreflang="en"]').first.click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert horizontal_overflow(page) == 0
    screenshot("home-en")

    # The choice is remembered by a cookie, not only by the query string.
    page.goto(live_server("/"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.locator('a[hreflang="zh-CN"]').first.click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    assert js_errors == []


@pytest.mark.parametrize("live_server", ["sqlite", "postgresql"], indirect=True)
def test_live_server_creates_users_in_its_database(live_server: LiveServer) -> None:
    reviewer = live_server.create_user(role=Role.REVIEWER)
    assert reviewer.is_reviewer
    assert reviewer.email.endswith("@browser.test")
