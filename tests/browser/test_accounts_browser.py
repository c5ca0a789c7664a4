"""Accounts on a phone (390 px): resetting a forgotten password through the mail sink, and
signing in with an SMS code through the Alibaba Cloud SMS emulator — the platform's real SMTP
mailer and SMS sender, as in the demo (issue 14's "Done when")."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from shanju.core.mailsink import MailSink
from shanju.demo import accounts as demo_accounts
from tests.browser.conftest import LiveServer, another_person, serving
from tests.browser.helpers import check_fits_phone

pytestmark = pytest.mark.browser

EMAIL = "wang.fang@example.cn"
OLD_PASSWORD = "tea garden morning 1"
NEW_PASSWORD = "river lantern quiet 7"


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


@pytest.fixture
def live_server(request: pytest.FixtureRequest, tmp_path: Path,
                sink: MailSink) -> Iterator[LiveServer]:
    """The app as the demo wires it: email over SMTP to the sink, SMS codes to the emulator
    mounted on the server itself."""

    def wire(app):  # type: ignore[no-untyped-def]
        demo_accounts.attach(app, url=app.state.settings.base_url, sink=sink)
        return app

    with serving(request, tmp_path, wrap=wire) as server:
        yield server


def test_reset_a_password_through_the_mail_sink(
    page: Page, browser: Browser, live_server: LiveServer, sink: MailSink,
    js_errors: list[str], screenshot: Callable[[str], Path],
) -> None:
    live_server.create_user(email=EMAIL, password=OLD_PASSWORD, display_name="王芳")
    # Signed in on another phone: the reset must end that session too.
    with another_person(browser, js_errors, "old phone") as old_phone:
        old_phone.goto(live_server("/login"))
        old_phone.fill('input[name="email"]', EMAIL)
        old_phone.fill('input[name="password"]', OLD_PASSWORD)
        old_phone.locator('form[action="/login"] [type="submit"]').click()
        expect(old_phone).to_have_url(live_server("/"))

        page.goto(live_server("/login"))
        page.locator("[data-forgot-link]").click()
        expect(page.locator("h1")).to_have_text("忘记密码？")
        page.fill('input[name="email"]', EMAIL)
        page.locator("form[data-forgot] [type=submit]").click()
        expect(page.locator("[data-reset-sent]")).to_contain_text(EMAIL)
        check_fits_phone(page, js_errors)

        message = sink.wait_for(lambda m: EMAIL in m.to and m.kind == "accounts.password.reset")
        assert message.subject == "重置您在善举的密码"
        link = re.search(r"https?://\S+/password/reset/\S+", message.body)
        assert link, message.body
        page.goto(link.group(0))
        page.fill('input[name="password"]', NEW_PASSWORD)
        check_fits_phone(page, js_errors)
        screenshot("password-reset-form")
        page.locator("form[data-reset-form] [type=submit]").click()
        expect(page).to_have_url(live_server("/login?flash=password_reset"))
        expect(page.locator(".flash")).to_contain_text("所有设备均已退出登录")

        old_phone.goto(live_server("/me"))
        expect(old_phone).to_have_url(re.compile(r"/login\?next=/me$"))

    page.fill('input[name="email"]', EMAIL)
    page.fill('input[name="password"]', NEW_PASSWORD)
    page.locator('form[action="/login"] [type="submit"]').click()
    page.goto(live_server("/me"))
    expect(page.locator("#profile")).to_contain_text(EMAIL)
    check_fits_phone(page, js_errors)


def test_sign_in_by_sms_code_through_the_emulator(
    page: Page, live_server: LiveServer, js_errors: list[str],
    screenshot: Callable[[str], Path],
) -> None:
    page.goto(live_server("/login"))
    page.locator("[data-phone-link]").click()
    expect(page.locator("h1")).to_have_text("手机号登录")
    page.fill('input[name="phone"]', "138 0013 8000")
    page.locator("form[data-phone-form] [type=submit]").click()
    expect(page.locator("[data-code-sent]")).to_contain_text("138****8000")
    check_fits_phone(page, js_errors)

    # The text message, on the emulator's inbox: the demo's phone.
    inbox = page.context.new_page()
    inbox.goto(live_server(demo_accounts.SMS_INBOX_PATH))
    code_box = inbox.locator('[data-sms-code][data-phone="13800138000"]').first
    expect(code_box).to_be_visible()
    expect(inbox.locator("[data-sms]").first).to_contain_text("【善举】您的验证码为")
    check_fits_phone(inbox, js_errors)
    code = code_box.get_attribute("data-sms-code") or ""
    inbox.close()

    page.fill('input[name="code"]', code)
    screenshot("sms-code-form")
    page.locator("form[data-phone-code-form] [type=submit]").click()
    expect(page).to_have_url(live_server("/me?flash=phone_welcome"))
    expect(page.locator("#profile")).to_contain_text("138****8000")
    expect(page.locator(".flash")).to_contain_text("您已用手机号登录")
    check_fits_phone(page, js_errors)
    page.locator("[data-edit-profile]").click()
    expect(page.locator("[data-current-phone]")).to_have_text("138****8000")
    check_fits_phone(page, js_errors)
    # Deleting this account (it has no password) is confirmed with a code to the number.
    page.locator('a[href="/me/delete"]').click()
    expect(page.locator("h1")).to_have_text("注销账户")
    expect(page.locator('form[action="/me/delete/code"]')).to_contain_text("138****8000")
    check_fits_phone(page, js_errors)
