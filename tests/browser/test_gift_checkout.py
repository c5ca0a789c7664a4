"""A guest gives on a phone (390 px) through WeChat Pay's H5 page and through Alipay's wap
cashier — both the providers' emulators, reached by the production gateways — and sees the
thank-you page and the receipt; a giving-day gift shows its match.

The platform is served by uvicorn on the test database; the browser follows the real
redirects: the platform's donate form → the provider's page → back to the order's page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session

from shanju.core.db import Database
from shanju.payments.alipay import AlipayGateway
from shanju.payments.emulators.alipay import AlipayEmulator, alipay_post
from shanju.payments.emulators.alipay import create_app as alipay_app
from shanju.payments.emulators.alipay import setup as alipay_setup
from shanju.payments.emulators.outbox import Outbox
from shanju.payments.emulators.wechatpay import WeChatPayEmulator
from shanju.payments.emulators.wechatpay import create_app as wechat_app
from shanju.payments.emulators.wechatpay import setup as wechat_setup
from shanju.payments.gateway import Gateway
from shanju.payments.wechatpay import WeChatPayGateway
from shanju.projects.models import Project
from tests.browser.conftest import horizontal_overflow, phone_browser
from tests.factories import make_campaign, make_pool
from tests.gifts.pipeline import Platform, serve_platform
from tests.serving import free_socket, uvicorn_thread

SUB = "1900000109"


@dataclass
class Shop:
    platform: Platform
    wechat: WeChatPayEmulator
    alipay: AlipayEmulator
    wechat_base: str
    alipay_base: str


@pytest.fixture
def shop(db: Database, tmp_path: Path) -> Iterator[Shop]:
    w_sock, a_sock = free_socket(), free_socket()
    wechat_base = f"http://127.0.0.1:{w_sock.getsockname()[1]}"
    alipay_base = f"http://127.0.0.1:{a_sock.getsockname()[1]}"
    wechat, wechat_config = wechat_setup(wechat_base, tmp_path / "wechat-keys",
                                         sub_merchants={SUB: "绿水青山公益基金会"},
                                         outbox=Outbox(retry_delays=(0.05, 0.05)))
    (tmp_path / "alipay-keys").mkdir()
    alipay, alipay_config = alipay_setup(alipay_base, tmp_path / "alipay-keys",
                                         outbox=Outbox(post=alipay_post,
                                                       retry_delays=(0.05, 0.05)))
    merchant = alipay.add_merchant("绿水青山公益基金会")

    def gateways(_url: str) -> dict[str, Gateway]:
        return {"wechatpay": WeChatPayGateway(wechat_config),
                "alipay": AlipayGateway(alipay_config)}

    with uvicorn_thread(wechat_app(wechat), w_sock), uvicorn_thread(alipay_app(alipay), a_sock), \
            serve_platform(db, tmp_path, gateways=gateways, merchants={
                "wechatpay": {"merchant_id": SUB},
                "alipay": {"merchant_id": merchant.pid,
                           "app_auth_token": merchant.auth_token}}) as platform:
        yield Shop(platform, wechat, alipay, wechat_base, alipay_base)
        wechat.outbox.wait_idle()
        alipay.outbox.wait_idle()


@pytest.fixture
def phone(browser: Browser, csp_violations: list[str]) -> Iterator[Page]:
    with phone_browser(browser, csp_violations) as page:
        yield page
    # Only the platform's pages count: the emulators' pages have policies of their own.
    ours = [v for v in csp_violations if "127.0.0.1" not in v or "/emulator" not in v]
    assert ours == [], f"Content-Security-Policy violations: {ours}"


def _fill_form(page: Page, shop: Shop, method_label: str) -> None:
    page.goto(f"{shop.platform.url}/projects/{shop.platform.project_id}/donate")
    form = page.locator("#donate")
    form.locator("label", has_text=re.compile(r"^¥50$")).click()
    form.locator("#donor_name").fill("小林")
    form.locator("#message").fill("一点心意")
    form.locator("#contact").fill("lin@example.org")
    form.locator("label.pay-method", has_text=method_label).click()
    assert horizontal_overflow(page) == 0
    form.locator("button[type=submit]").click()


def _thanked(page: Page, shop: Shop) -> str:
    expect(page).to_have_url(re.compile(r"/gifts/orders/pi_[A-Za-z0-9]+\?k=[0-9a-f]{32}$"))
    expect(page.locator("#order-status")).to_have_attribute("data-status", "paid")
    expect(page.locator("#order-status h1")).to_contain_text("感谢")
    expect(page.locator("#order-status")).to_contain_text("¥50.00")
    expect(page.locator("#order-status")).to_contain_text("你的名字,我们记得")
    assert horizontal_overflow(page) == 0
    order_id = page.url.split("/gifts/orders/")[1].split("?")[0]
    page.locator("#receipt-link").click()
    expect(page).to_have_url(re.compile(r"/transparency/receipts/donation:d_"))
    shop.platform.books_are_sound()
    return order_id


def test_a_guest_gives_through_wechat_pay_h5(shop: Shop, phone: Page) -> None:
    _fill_form(phone, shop, "微信支付")
    expect(phone).to_have_url(re.compile("^" + re.escape(shop.wechat_base)))
    expect(phone.locator("body")).to_contain_text("¥50.00")
    phone.get_by_role("button", name="确认支付").click()
    order_id = _thanked(phone, shop)
    intent = shop.platform.intent(order_id)
    assert intent.donor_id is None and intent.contact_hash and intent.provider == "wechatpay"
    assert shop.platform.credits(order_id) == 1


def test_a_guest_gives_through_alipay_wap(shop: Shop, phone: Page) -> None:
    _fill_form(phone, shop, "支付宝")
    expect(phone).to_have_url(re.compile("^" + re.escape(shop.alipay_base)))
    phone.get_by_role("button", name="确认付款").click()
    order_id = _thanked(phone, shop)
    assert shop.platform.intent(order_id).provider == "alipay"
    assert shop.platform.credits(order_id) == 1


def test_a_guest_gift_on_a_giving_day_shows_its_match(shop: Shop, phone: Page) -> None:
    def live_day(s: Session) -> int:
        project = s.get_one(Project, shop.platform.project_id)
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=1_000_000)
        return campaign.id

    campaign_id = shop.platform.read(live_day)
    phone.goto(f"{shop.platform.url}/projects/{shop.platform.project_id}")
    form = phone.locator("#donate")
    expect(form.locator("input[name=campaign_id]")).to_have_value(str(campaign_id))
    form.locator("label", has_text=re.compile(r"^¥20$")).click()
    form.locator("#donor_name").fill("小周")
    form.locator("label.pay-method", has_text="微信支付").click()
    form.locator("button[type=submit]").click()
    expect(phone).to_have_url(re.compile("^" + re.escape(shop.wechat_base)))
    phone.get_by_role("button", name="确认支付").click()
    expect(phone).to_have_url(re.compile(r"/gifts/orders/pi_[A-Za-z0-9]+\?k=[0-9a-f]{32}$"))
    status = phone.locator("#order-status")
    expect(status).to_have_attribute("data-status", "paid")
    match = status.locator(".match-result")
    expect(match).to_have_attribute("data-match-status", "matched")
    expect(match).to_contain_text("¥20.00")
    assert horizontal_overflow(phone) == 0
    phone.locator("#receipt-link").click()
    expect(phone).to_have_url(re.compile(r"/transparency/receipts/gift:pi_"))
    shop.platform.books_are_sound()
