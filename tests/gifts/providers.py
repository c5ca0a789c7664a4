"""The two providers' worlds for the gift pipeline's end-to-end tests: an emulator served by
uvicorn beside the platform (:mod:`tests.gifts.pipeline`), the production gateway between
them, and the donor's phone on the provider's pay page.

* :func:`alipay_world` — the Alipay emulator, ``python-alipay-sdk`` in ISV mode: the
  organization's route is its PID and the ``app_auth_token`` the emulated merchant granted;
* :func:`wechatpay_world` — the WeChat Pay emulator, ``wechatpayv3`` as service provider.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from shanju.core.db import Database
from shanju.payments.alipay import AlipayGateway
from shanju.payments.emulators.alipay import AlipayEmulator, SentNotify, alipay_post
from shanju.payments.emulators.alipay import create_app as alipay_app
from shanju.payments.emulators.alipay import setup as alipay_setup
from shanju.payments.emulators.outbox import Outbox
from shanju.payments.emulators.wechatpay import WeChatPayEmulator
from shanju.payments.emulators.wechatpay import create_app as wechatpay_app
from shanju.payments.emulators.wechatpay import setup as wechatpay_setup
from shanju.payments.gateway import Gateway
from shanju.payments.wechatpay import WeChatPayGateway
from tests.gifts.pipeline import Platform, serve_platform
from tests.organizations.helpers import PID, TOKEN
from tests.serving import free_socket, uvicorn_thread

ALIPAY_APP_ID = "2021000000000001"
ALIPAY_MERCHANT = "绿水青山公益基金会"
OTHER_PID = "2088102146225136"       # a merchant that is not the organization's
BUYER_ID = "2088002233445566"        # the payer's Alipay user id (kept only hashed)
SUB = "1900000109"
OPENID = "oPayerOfThePipelineTest00000001"


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until ``predicate()`` holds (a condition, not a guess of how long it takes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


class AlipayWorld:
    """The platform, the Alipay emulator and the donor's phone."""

    def __init__(self, platform: Platform, emulator: AlipayEmulator, base: str) -> None:
        self.platform = platform
        self.emulator = emulator
        self.base = base            # where the emulator is served
        self.pay_url = ""

    def checkout(self, amount_fen: int = 1234, key: str = "k1", **extra: object) -> str:
        """The donor gives on the wap cashier (alipay_wap); the order's id."""
        answer = self.platform.give("alipay_wap", amount_fen=amount_fen, key=key, **extra)
        assert answer.status_code == 201, answer.text
        order = answer.json()
        assert order["pay"]["kind"] == "redirect" and order["status"] == "requires_payment"
        assert order["provider"] == "alipay" and order["channel"] == "alipay_wap"
        self.pay_url = order["pay"]["url"]
        assert self.pay_url.startswith(f"{self.base}/gateway.do?")
        order_id: str = order["order_id"]
        return order_id

    def phone_opens(self) -> str:
        """The phone follows the signed order to Alipay's cashier page; the page's URL."""
        page = requests.get(self.pay_url, timeout=10)  # gateway.do → 302 → the cashier
        assert page.status_code == 200 and "确认付款" in page.text, page.text
        return page.url

    def phone_pays(self) -> requests.Response:
        """The donor's phone on the cashier: load it, press 确认付款 (Alipay then sends the
        browser back to return_url, 303)."""
        cashier = self.phone_opens()
        return requests.post(cashier, data={"buyer_id": BUYER_ID}, allow_redirects=False,
                             timeout=10)

    def settle(self) -> None:
        """Every notify the emulator sent has been answered."""
        assert self.emulator.outbox.wait_idle()

    def notifies(self, kind: str) -> list[SentNotify]:
        return [n for n in list(self.emulator.notifies) if n.kind == kind]

    def answers(self, notify: SentNotify) -> list[list[int]]:
        """The status codes the intake answered to each delivery of ``notify``."""
        return [c.attempts for c in list(self.emulator.outbox.log)
                if c.body == notify.callback.body]

    def gateway(self) -> Gateway:
        found: Gateway = self.platform.app.state.providers.gateway("alipay")
        return found


@contextmanager
def alipay_world(db: Database, tmp_path: Path, key_dir: Path, *,
                 merchants: dict[str, dict[str, str]] | None = None,
                 gateway_timeout: float = 10.0) -> Iterator[AlipayWorld]:
    """The platform with its Alipay route (PID + app_auth_token) and the emulator that knows
    the same merchant; ``merchants``: more routes to approve (e.g. WeChat Pay's)."""
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # Alipay retries an unanswered notify for a day; here twice more, 50 ms apart.
    emulator, config = alipay_setup(base, key_dir, app_id=ALIPAY_APP_ID,
                                    outbox=Outbox(post=alipay_post, retry_delays=(0.05, 0.05)))
    emulator.add_merchant(ALIPAY_MERCHANT, pid=PID, auth_token=TOKEN)
    emulator.add_merchant("春苗助学中心", pid=OTHER_PID)

    def gateways(_platform_url: str) -> dict[str, Gateway]:
        # The gateway reads the emulator's clock: a test that moves it (a day-old capture)
        # moves what "now" is for the notify's freshness check too.
        return {"alipay": AlipayGateway(config, now=emulator.now, timeout=gateway_timeout)}

    routes = {"alipay": {"merchant_id": PID, "app_auth_token": TOKEN}, **(merchants or {})}
    with uvicorn_thread(alipay_app(emulator), sock), serve_platform(
            db, tmp_path, gateways=gateways, merchants=routes) as platform:
        world = AlipayWorld(platform, emulator, base)
        try:
            yield world
        finally:
            emulator.outbox.held.clear()
            emulator.outbox.wait_idle()


class WeChatPayWorld:
    """The platform, the WeChat Pay emulator and the donor's phone (H5)."""

    def __init__(self, platform: Platform, emulator: WeChatPayEmulator) -> None:
        self.platform = platform
        self.emulator = emulator
        self.pay_url = ""

    def checkout(self, amount_fen: int = 1234, key: str = "k1", **extra: object) -> str:
        answer = self.platform.give("wechat_h5", amount_fen=amount_fen, key=key, **extra)
        assert answer.status_code == 201, answer.text
        order = answer.json()
        assert order["pay"]["kind"] == "redirect" and order["status"] == "requires_payment"
        self.pay_url = order["pay"]["url"]
        order_id: str = order["order_id"]
        return order_id

    def phone_pays(self) -> requests.Response:
        """The donor's phone on the WeChat Pay H5 page: load it, press 确认支付."""
        page = requests.get(self.pay_url, timeout=10)
        assert page.status_code == 200, page.text
        hidden = re.search(r'name="redirect_url" value="([^"]*)"', page.text)
        assert hidden is not None
        return requests.post(self.pay_url, data={
            "redirect_url": hidden.group(1).replace("&amp;", "&"), "openid": OPENID},
            allow_redirects=False, timeout=10)

    def settle(self) -> None:
        assert self.emulator.outbox.wait_idle()


@contextmanager
def wechatpay_world(db: Database, tmp_path: Path, key_dir: Path) -> Iterator[WeChatPayWorld]:
    """The platform with its WeChat Pay route (sub_mchid) and the emulator that binds it (its
    keys kept in ``key_dir``)."""
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    emulator, config = wechatpay_setup(base, key_dir, sub_merchants={SUB: "绿水青山公益基金会"},
                                       outbox=Outbox(retry_delays=(0.05, 0.05)))

    def gateways(_platform_url: str) -> dict[str, Gateway]:
        return {"wechatpay": WeChatPayGateway(config)}

    with uvicorn_thread(wechatpay_app(emulator), sock), serve_platform(
            db, tmp_path, gateways=gateways,
            merchants={"wechatpay": {"merchant_id": SUB}}) as platform:
        try:
            yield WeChatPayWorld(platform, emulator)
        finally:
            emulator.outbox.held.clear()
            emulator.outbox.wait_idle()
