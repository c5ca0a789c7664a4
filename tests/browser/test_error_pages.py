"""Error pages on a phone (issue 11, item 12): a Chinese 404 in the site's layout that fits
390 px, a signed-out visitor sent to sign in, and a favicon that loads (no 404 on any page)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, Response, expect

from tests.browser.conftest import LiveServer
from tests.browser.helpers import check_fits_phone

pytestmark = pytest.mark.browser


def test_a_chinese_error_page_fits_a_phone_and_the_favicon_loads(
    page: Page, live_server: LiveServer, screenshot: Callable[[str], Path],
    js_errors: list[str],
) -> None:
    failed: list[str] = []

    def note(response: Response) -> None:
        if response.status >= 400 and "/favicon" in response.url:
            failed.append(f"{response.status} {response.url}")

    page.on("response", note)
    answer = page.goto(live_server("/projects/abc"))
    assert answer is not None and answer.status == 404
    expect(page.locator("main h1")).to_have_text("页面不存在")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("header a.brand")).to_be_visible()  # the site's layout
    expect(page.locator('main .error-page a[href="/"]')).to_have_text("首页")
    check_fits_phone(page, js_errors)
    screenshot("error-404-zh")

    # The favicon the page links is served and is an image the browser can draw.
    for href in page.eval_on_selector_all('link[rel="icon"]',
                                          "links => links.map(l => l.href)"):
        loaded = page.evaluate(
            """href => new Promise(done => { const img = new Image();
                 img.onload = () => done(img.naturalWidth > 0);
                 img.onerror = () => done(false); img.src = href; })""", href)
        assert loaded, href
    favicon = page.request.get(live_server("/favicon.ico"))
    assert favicon.status == 200 and favicon.headers["content-type"] == "image/x-icon"
    assert failed == []


def test_a_signed_out_visitor_is_sent_to_sign_in(page: Page, live_server: LiveServer,
                                                 js_errors: list[str]) -> None:
    page.goto(live_server("/review"))
    expect(page).to_have_url(live_server("/login?next=/review"))
    expect(page.locator('input[name="next"]')).to_have_value("/review")
    check_fits_phone(page, js_errors)
