"""In the demo, at 390 px: the emulators' payer pages are served by the demo itself (the same
origin as the platform) under their own Content-Security-Policy, and paying on them brings the
phone back to the platform — no policy of the site's gets in the way."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.helpers import check_fits_phone
from tests.demo.helpers import Demo, give, serve_demo

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with serve_demo(tmp_path) as served:
        yield served


def donor_phone(page: Page, demo: Demo) -> requests.Session:
    """Sign the phone in as the demo donor through the form; the same session for the API."""
    page.goto(f"{demo.url}/login")
    page.fill('input[name="email"]', "donor@demo.shanju.org")
    page.fill('input[name="password"]', "shanju-demo")
    page.locator('form[action="/login"] [type="submit"]').click()
    page.wait_for_load_state()
    api = requests.Session()
    for cookie in page.context.cookies():
        api.cookies.set(cookie["name"], cookie["value"])
    return api


def test_the_demo_donor_pays_on_both_emulators_payer_pages(
    page: Page, demo: Demo, js_errors: list[str], screenshot: Callable[[str], Path],
) -> None:
    api = donor_phone(page, demo)

    wechat = give(demo, api, "wechat_h5", 2600)
    page.goto(wechat["pay"]["url"])
    expect(page.locator("main")).to_contain_text("¥26.00")
    check_fits_phone(page, js_errors)
    screenshot("demo-wechatpay-h5")
    page.locator('button[type="submit"]').click()
    expect(page).to_have_url(demo.url + wechat["gift_url"])

    alipay = give(demo, api, "alipay_wap", 1800)
    page.goto(alipay["pay"]["url"])  # the gateway sends the phone on to the cashier
    expect(page).to_have_url(re.compile(r"/emulators/alipay/emulator/pay/"))
    expect(page.locator("main")).to_contain_text("18.00")
    check_fits_phone(page, js_errors)
    screenshot("demo-alipay-wap")
    page.locator('button[type="submit"]').click()
    expect(page).to_have_url(re.compile(re.escape(demo.url + alipay["gift_url"]) + r"\?"))

    for emulator in (demo.payments.wechatpay, demo.payments.alipay):
        assert emulator.outbox.wait_idle()
    for order in (wechat, alipay):
        state = api.get(f"{demo.url}/api/v1/gifts/orders/{order['order_id']}", timeout=30)
        assert state.json()["status"] == "succeeded", state.text
