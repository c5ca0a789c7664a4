"""WeChat Pay (service-provider mode): the real gateway and SDK against the emulator, over HTTP.

No database: the emulator is served by a real uvicorn, the gateway is the production
``WeChatPayGateway`` (the ``wechatpayv3`` SDK: real RSA signatures both ways, real AES-GCM),
and callbacks arrive at a small receiving app that does what the platform's callback route
will do: ``parse_notification``, then answer with ``acknowledge``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from shanju.core.clock import CHINA_TZ, utcnow
from shanju.payments.emulators.keys import generate_key_pair
from shanju.payments.emulators.outbox import Outbox
from shanju.payments.emulators.wechatpay import WeChatPayEmulator, create_app, setup
from shanju.payments.gateway import (
    ActionKind,
    BillKind,
    BillLine,
    Channel,
    GatewayError,
    MerchantRoute,
    PaymentReport,
    PaymentState,
    PayRequest,
    RefundReport,
    RefundState,
)
from shanju.payments.providers import InvalidSignature
from shanju.payments.wechatpay import (
    WeChatPayConfig,
    WeChatPayConfigError,
    WeChatPayGateway,
    parse_rfc3339,
    parse_trade_bill,
    yuan_to_fen,
)
from tests.serving import free_socket, uvicorn_thread

SUB = "1900000109"
OTHER_SUB = "1900000110"
SUB_NAME = "绿水青山公益基金会"
PAYER_IP = "203.0.113.7"


# --- the world: emulator, gateway, receiving app ---------------------------------------------


class Receiver:
    """The platform's callback endpoint, reduced to what the gateway is asked to do."""

    def __init__(self, gateway: WeChatPayGateway) -> None:
        self.gateway = gateway
        self.reports: list[PaymentReport | RefundReport] = []
        self.refused: list[InvalidSignature] = []
        self._changed = threading.Condition()
        self.app = Starlette(routes=[Route("/notify/wechatpay", self._notify, methods=["POST"])])

    async def _notify(self, request: Request) -> Response:
        body = await request.body()
        try:
            report = self.gateway.parse_notification(body=body, headers=request.headers)
        except InvalidSignature as exc:
            with self._changed:
                self.refused.append(exc)
                self._changed.notify_all()
            ack = self.gateway.acknowledge(ok=False, message=exc.code)
        else:
            with self._changed:
                self.reports.append(report)
                self._changed.notify_all()
            ack = self.gateway.acknowledge(ok=True)
        return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)

    def wait_reports(self, count: int, timeout: float = 20.0) -> list[PaymentReport | RefundReport]:
        """The first ``count`` reports, once they have arrived (or AssertionError)."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.reports) >= count, timeout)
            assert arrived, f"{len(self.reports)} of {count} callbacks arrived"
            return list(self.reports)

    def wait_refused(self, count: int, timeout: float = 20.0) -> list[InvalidSignature]:
        """The first ``count`` refused callbacks, once they have arrived."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.refused) >= count, timeout)
            assert arrived, f"{len(self.refused)} of {count} refusals arrived"
            return list(self.refused)


@dataclass
class World:
    config: WeChatPayConfig
    emulator: WeChatPayEmulator
    gateway: WeChatPayGateway
    receiver: Receiver
    base_url: str
    notify_url: str
    merchant: MerchantRoute = field(default_factory=lambda: MerchantRoute("wechatpay", SUB))

    def request(self, channel: Channel = Channel.WECHAT_H5, *, amount: int = 1234,
                merchant: MerchantRoute | None = None, return_url: str | None = None,
                openid: str | None = None, out_trade_no: str | None = None,
                expires_in: dt.timedelta = dt.timedelta(minutes=30)) -> PayRequest:
        return PayRequest(
            out_trade_no=out_trade_no or "SJ" + secrets.token_hex(8),
            amount_fen=amount, description="善举 · 山区儿童午餐, 一份心意",
            merchant=merchant or self.merchant, channel=channel, notify_url=self.notify_url,
            expires_at=utcnow() + expires_in, return_url=return_url, client_ip=PAYER_IP,
            openid=openid, attach="gift:42",
        )

    def control(self, method: str, path: str, **body: object) -> requests.Response:
        return requests.request(method, self.base_url + path, json=body or None, timeout=10)

    def pay(self, out_trade_no: str, **body: object) -> dict[str, object]:
        answer = self.control("POST", f"/emulator/orders/{out_trade_no}/pay", **body)
        assert answer.status_code == 200, answer.text
        result: dict[str, object] = answer.json()
        return result

    def paid_order(self, amount: int = 10000) -> PaymentReport:
        """An order paid through the control API, its callback received."""
        request = self.request(Channel.WECHAT_NATIVE, amount=amount)
        self.gateway.create_payment(request)
        before = len(self.receiver.reports)
        self.pay(request.out_trade_no)
        report = self.receiver.wait_reports(before + 1)[before]
        assert isinstance(report, PaymentReport)
        return report


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's emulator keys: made by the first setup(), kept for the others."""
    return tmp_path_factory.mktemp("wechatpay-keys")


def serve(key_dir: Path, *, prefix: str = "", timeout: tuple[float, float] = (5.0, 15.0),
          wrap: Callable[[Any], Any] | None = None) -> Iterator[World]:
    emulator_socket, receiver_socket = free_socket(), free_socket()
    base_url = f"http://127.0.0.1:{emulator_socket.getsockname()[1]}{prefix}"
    emulator, config = setup(base_url, key_dir,
                             sub_merchants={SUB: SUB_NAME, OTHER_SUB: "春苗助学中心"},
                             outbox=Outbox(retry_delays=(0.05, 0.05)))
    app = create_app(emulator)
    if prefix:
        app = Starlette(routes=[Mount(prefix, app=app)])
    if wrap is not None:
        app = wrap(app)
    gateway = WeChatPayGateway(config, timeout=timeout)
    receiver = Receiver(gateway)
    notify_url = f"http://127.0.0.1:{receiver_socket.getsockname()[1]}/notify/wechatpay"
    with uvicorn_thread(app, emulator_socket), uvicorn_thread(receiver.app, receiver_socket):
        yield World(config, emulator, gateway, receiver, base_url, notify_url)
        emulator.outbox.wait_idle()


@pytest.fixture
def world(key_dir: Path) -> Iterator[World]:
    yield from serve(key_dir)


def browser_pay(url: str, *, openid: str | None = None) -> requests.Response:
    """What a phone's browser does on the payer page: load it, press 确认支付 (the form POST)."""
    page = requests.get(url, timeout=10)
    assert page.status_code == 200, page.text
    hidden = re.search(r'name="redirect_url" value="([^"]*)"', page.text)
    assert hidden is not None
    form = {"redirect_url": hidden.group(1).replace("&amp;", "&")}
    if openid:
        form["openid"] = openid
    return requests.post(url, data=form, allow_redirects=False, timeout=10)


# --- paying: H5, Native, JSAPI ---------------------------------------------------------------


def test_h5_order_paid_on_the_emulator_page_reaches_the_platform_verified(world: World) -> None:
    request = world.request(Channel.WECHAT_H5, return_url="https://shanju.example/thanks?g=42")
    action = world.gateway.create_payment(request)
    assert action.kind is ActionKind.REDIRECT and action.url is not None
    assert action.url.endswith("&redirect_url=https%3A%2F%2Fshanju.example%2Fthanks%3Fg%3D42")

    page = requests.get(action.url, timeout=10)
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text and "max-width:390px" in page.text
    assert SUB_NAME in page.text and "¥12.34" in page.text and "确认支付" in page.text
    assert "form-action 'self' https://shanju.example" in page.headers["content-security-policy"]

    paid = browser_pay(action.url, openid="oPayerOfTheH5Test000000000001")
    assert paid.status_code == 303
    assert paid.headers["location"] == "https://shanju.example/thanks?g=42"

    [report] = world.receiver.wait_reports(1)
    assert isinstance(report, PaymentReport)
    assert report.provider == "wechatpay" and report.state is PaymentState.PAID
    assert (report.out_trade_no, report.amount_fen, report.merchant_id) == (
        request.out_trade_no, 1234, SUB)
    assert report.payer_id == "oPayerOfTheH5Test000000000001"
    assert report.attach == "gift:42" and report.event_id
    assert report.provider_txn_id and len(report.provider_txn_id) == 28
    assert report.paid_at is not None and abs(utcnow() - report.paid_at) < dt.timedelta(minutes=1)
    assert report.raw["trade_type"] == "MWEB"
    world.emulator.outbox.wait_idle()
    assert [c.attempts for c in world.emulator.outbox.log] == [[204]]  # accepted at once


def test_native_code_url_leads_to_the_scan_page(world: World) -> None:
    request = world.request(Channel.WECHAT_NATIVE, amount=50000)
    action = world.gateway.create_payment(request)
    assert action.kind is ActionKind.QR and action.qr_text is not None
    page = requests.get(action.qr_text, timeout=10)
    assert "扫码支付" in page.text and "¥500.00" in page.text

    paid = browser_pay(action.qr_text)
    assert paid.status_code == 200 and "支付成功" in paid.text  # no redirect_url: a page

    [report] = world.receiver.wait_reports(1)
    assert isinstance(report, PaymentReport)
    assert (report.amount_fen, report.payer_id) == (50000, world.emulator.default_openid)
    assert report.raw["trade_type"] == "NATIVE"
    again = requests.get(action.qr_text, timeout=10)
    assert "订单已支付" in again.text and "确认支付" not in again.text


def test_jsapi_params_are_signed_by_the_platform_and_pay_as_the_named_payer(
        world: World) -> None:
    openid = "oJsapiPayer_0000000000000001"
    action = world.gateway.create_payment(world.request(Channel.WECHAT_JSAPI, openid=openid))
    assert action.kind is ActionKind.JSAPI and action.jsapi_params is not None
    params = dict(action.jsapi_params)
    assert params["appId"] == world.config.sp_appid and params["signType"] == "RSA"
    assert params["package"].startswith("prepay_id=wx")
    merchant_key = serialization.load_pem_public_key(
        world.emulator.keys.merchant.public_pem.encode())
    assert isinstance(merchant_key, rsa.RSAPublicKey)
    merchant_key.verify(  # raises if the paySign is not the platform's signature
        base64.b64decode(params["paySign"]),
        "".join(f"{params[k]}\n" for k in ("appId", "timeStamp", "nonceStr", "package")).encode(),
        padding.PKCS1v15(), hashes.SHA256())

    forged = world.control("POST", "/emulator/jsapi/pay", **(params | {"nonceStr": "X" * 32}))
    assert (forged.status_code, forged.json()["code"]) == (400, "SIGN_ERROR")
    assert world.emulator.outbox.log == []

    assert world.control("POST", "/emulator/jsapi/pay", **params).status_code == 200
    [report] = world.receiver.wait_reports(1)
    assert isinstance(report, PaymentReport)
    assert report.payer_id == openid and report.raw["trade_type"] == "JSAPI"


def test_payer_id_is_the_sub_openid_when_the_merchant_has_its_own_appid(world: World) -> None:
    merchant = MerchantRoute("wechatpay", SUB, sub_appid="wx1234567890abcdef")
    request = world.request(Channel.WECHAT_NATIVE, merchant=merchant)
    world.gateway.create_payment(request)
    world.pay(request.out_trade_no, openid="oSpOpenid000000000000000001")
    [report] = world.receiver.wait_reports(1)
    assert isinstance(report, PaymentReport)
    payer = report.raw["payer"]
    assert payer["sp_openid"] == "oSpOpenid000000000000000001"
    assert report.payer_id == payer["sub_openid"] != payer["sp_openid"]


def test_the_same_order_opened_twice_is_the_same_order_and_a_changed_one_a_conflict(
        world: World) -> None:
    request = world.request(Channel.WECHAT_H5)
    first = world.gateway.create_payment(request)
    assert world.gateway.create_payment(request) == first
    with pytest.raises(GatewayError) as changed:
        world.gateway.create_payment(world.request(Channel.WECHAT_H5, amount=999,
                                                   out_trade_no=request.out_trade_no))
    assert (changed.value.code, changed.value.retryable) == ("payment_order_conflict", False)
    assert changed.value.params["provider_code"] == "OUT_TRADE_NO_USED"
    world.pay(request.out_trade_no)
    with pytest.raises(GatewayError) as paid:
        world.gateway.create_payment(request)
    assert (paid.value.code, paid.value.params["provider_code"]) == (
        "payment_order_conflict", "ORDERPAID")


def test_calls_to_wechat_pay_reuse_their_connection(key_dir: Path) -> None:
    """The SDK alone opens a new connection (in production a TLS handshake) per call; the
    gateway's calls from one thread arrive over one kept-alive connection, and another
    thread's over its own."""
    clients: list[tuple[str, int]] = []

    def recording(app: Any) -> Any:
        async def record(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].startswith("/v3/"):
                clients.append(tuple(scope["client"]))
            await app(scope, receive, send)
        return record

    for world in serve(key_dir, wrap=recording):
        requests_ = [world.request(Channel.WECHAT_H5) for _ in range(3)]
        for request in requests_:
            world.gateway.create_payment(request)
        assert world.gateway.query_payment(out_trade_no=requests_[0].out_trade_no,
                                           merchant=world.merchant) is not None
        assert len(clients) == 4 and len(set(clients)) == 1
        other = threading.Thread(target=world.gateway.create_payment,
                                 args=(world.request(Channel.WECHAT_NATIVE),))
        other.start()
        other.join(30)
        assert len(clients) == 5 and clients[4] != clients[0]


@pytest.mark.parametrize("bypass", [False, True])
def test_calls_to_wechat_pay_go_through_the_environments_proxy(
        key_dir: Path, monkeypatch: pytest.MonkeyPatch, bypass: bool) -> None:
    """The kept-alive session reads the environment as requests does on each call: a proxy
    for WeChat Pay's host is used (here one that does not answer), unless NO_PROXY says not."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the discard port: refused
    if bypass:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for world in serve(key_dir, timeout=(2.0, 5.0)):
        if bypass:
            assert world.gateway.create_payment(world.request()).url
        else:
            with pytest.raises(GatewayError) as refused:
                world.gateway.create_payment(world.request())
            assert refused.value.code == "payment_provider_unreachable"


def test_an_expired_order_cannot_be_paid_and_queries_closed(world: World) -> None:
    request = world.request(Channel.WECHAT_H5, expires_in=dt.timedelta(seconds=1))
    action = world.gateway.create_payment(request)
    assert action.url is not None
    deadline = utcnow() + dt.timedelta(seconds=10)
    while (report := world.gateway.query_payment(
            out_trade_no=request.out_trade_no, merchant=world.merchant)) is not None and (
            report.state is PaymentState.NOT_PAID and utcnow() < deadline):
        threading.Event().wait(0.1)
    assert report is not None and report.state is PaymentState.CLOSED
    assert "订单已关闭" in requests.get(action.url, timeout=10).text
    refused = requests.post(action.url, data={"redirect_url": ""}, timeout=10)
    assert refused.status_code == 409 and "订单已关闭" in refused.text
    assert world.emulator.outbox.log == []


# --- callbacks: duplicates, order, forgeries -------------------------------------------------


def test_duplicate_deliveries_carry_the_same_event_id(world: World) -> None:
    world.control("POST", "/emulator/faults", callbacks={"duplicates": 2})
    request = world.request(Channel.WECHAT_NATIVE)
    world.gateway.create_payment(request)
    world.pay(request.out_trade_no)
    reports = world.receiver.wait_reports(3)
    assert len({r.event_id for r in reports}) == 1
    assert {r.out_trade_no for r in reports} == {request.out_trade_no}


def test_held_callbacks_are_sent_on_release_in_reverse_order(world: World) -> None:
    world.control("POST", "/emulator/faults", callbacks={"hold": True})
    numbers = []
    for _ in range(3):
        request = world.request(Channel.WECHAT_NATIVE)
        world.gateway.create_payment(request)
        world.pay(request.out_trade_no)
        numbers.append(request.out_trade_no)
    listed = world.control("GET", "/emulator/callbacks").json()
    assert [c["ref"] for c in listed["held"]] == numbers and listed["sent"] == []
    assert world.receiver.reports == []
    world.control("POST", "/emulator/faults", callbacks={})
    released = world.control("POST", "/emulator/callbacks/release", reverse=True).json()
    assert released == {"released": 3}
    world.emulator.outbox.wait_idle()
    # Released in reverse order; each delivery runs on a thread of its own, so that is the
    # order they were sent in, not necessarily the order they arrived in.
    sent = world.control("GET", "/emulator/callbacks").json()["sent"]
    assert [c["ref"] for c in sent] == numbers[::-1]
    assert sorted(r.out_trade_no for r in world.receiver.wait_reports(3)) == sorted(numbers)


def dropped_callback(world: World) -> tuple[bytes, dict[str, str]]:
    """A genuine payment callback the emulator 'lost': body and headers, never delivered."""
    world.control("POST", "/emulator/faults", callbacks={"drop": True})
    request = world.request(Channel.WECHAT_NATIVE)
    world.gateway.create_payment(request)
    world.pay(request.out_trade_no)
    [callback] = world.emulator.outbox.dropped
    return callback.body, dict(callback.headers)


def other_key_signature(body: bytes, headers: dict[str, str]) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode()
    return base64.b64encode(key.sign(message + body + b"\n", padding.PKCS1v15(),
                                     hashes.SHA256())).decode()


def test_a_genuine_callback_verifies_and_each_forgery_is_refused_with_its_code(
        world: World) -> None:
    body, headers = dropped_callback(world)
    assert isinstance(world.gateway.parse_notification(body=body, headers=headers),
                      PaymentReport)  # the original is good: each change below is the cause
    emulator, gateway = world.emulator, world.gateway
    ten_minutes = dt.timedelta(minutes=10)

    def refused(body: bytes, headers: dict[str, str]) -> str:
        with pytest.raises(InvalidSignature) as caught:
            gateway.parse_notification(body=body, headers=headers)
        return caught.value.code

    assert refused(body, headers | {"Wechatpay-Signature": other_key_signature(body, headers)}
                   ) == "invalid_signature"
    assert refused(body.replace("支付成功".encode(), "支付失败".encode()), headers
                   ) == "invalid_signature"
    assert refused(body, headers | {"Wechatpay-Serial": "PUB_KEY_ID_0000000000000000000000000000"}
                   ) == "invalid_signature"
    assert refused(body, {k: v for k, v in headers.items() if k != "Wechatpay-Nonce"}
                   ) == "invalid_signature"
    assert refused(body, headers | {"Wechatpay-Timestamp": "²"}) == "invalid_signature"
    old = emulator.signed_headers(body, when=utcnow() - ten_minutes)
    assert refused(body, headers | old) == "stale_callback"
    future = emulator.signed_headers(body, when=utcnow() + ten_minutes)
    assert refused(body, headers | future) == "stale_callback"
    junk = b'{"id":"EV-1","resource_type":"encrypt-resource"}'
    assert refused(junk, headers | emulator.signed_headers(junk)) == "malformed_callback"


def signed_notification(world: World, event_type: str, resource: dict[str, object], *,
                        apiv3_key: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A notification signed by the emulated WeChat Pay, saying exactly ``resource``."""
    if apiv3_key is None:
        callback = world.emulator.build_callback(world.notify_url, event_type, "x",
                                                 "transaction", resource, kind="t", ref="t")
        return callback.body, callback.headers
    nonce = "abcdefghijkl"
    ciphertext = AESGCM(apiv3_key.encode()).encrypt(
        nonce.encode(), json.dumps(resource).encode(), b"transaction")
    body = json.dumps({"id": "EV-x", "event_type": event_type,
                       "resource_type": "encrypt-resource",
                       "resource": {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce,
                                    "associated_data": "transaction",
                                    "ciphertext": base64.b64encode(ciphertext).decode()}}
                      ).encode()
    return body, world.emulator.signed_headers(body)


def test_signed_but_unusable_notifications_are_malformed(world: World) -> None:
    paid = world.paid_order()
    resource = dict(paid.raw)
    cases = [
        signed_notification(world, "TRANSACTION.SUCCESS", resource, apiv3_key="k" * 32),
        signed_notification(world, "TRANSACTION.CLOSED", resource),
        signed_notification(world, "TRANSACTION.SUCCESS", resource | {"trade_state": "NOTPAY"}),
        signed_notification(world, "TRANSACTION.SUCCESS", resource | {"sp_mchid": ""}),
        signed_notification(world, "TRANSACTION.SUCCESS", resource | {"amount": {"total": "1"}}),
        signed_notification(world, "REFUND.SUCCESS", resource),
    ]
    for body, headers in cases:
        with pytest.raises(InvalidSignature) as caught:
            world.gateway.parse_notification(body=body, headers=headers)
        assert caught.value.code == "malformed_callback", body


def test_a_verified_callback_for_another_service_provider_is_wrong_app_id(
        world: World) -> None:
    # Signed by WeChat Pay and encrypted with our APIv3 key, but for another sp_mchid: not a
    # forgery (the signature is fine) and not ours — Alipay's notify for another app_id.
    paid = world.paid_order()
    body, headers = signed_notification(world, "TRANSACTION.SUCCESS",
                                        dict(paid.raw) | {"sp_mchid": "1900000001"})
    with pytest.raises(InvalidSignature) as caught:
        world.gateway.parse_notification(body=body, headers=headers)
    assert caught.value.code == "wrong_app_id"


def test_an_old_callback_replayed_is_refused_as_stale_and_a_fresh_replay_is_a_duplicate(
        world: World) -> None:
    paid = world.paid_order()
    world.emulator.outbox.wait_idle()
    replay = world.control("POST", "/emulator/callbacks/replay", event_id=paid.event_id,
                           age_seconds=600)
    assert replay.status_code == 200
    [stale] = world.receiver.wait_refused(1)
    assert stale.code == "stale_callback"
    world.emulator.outbox.wait_idle()
    sent = world.control("GET", "/emulator/callbacks").json()["sent"]
    assert sent[-1]["attempts"] == [500, 500, 500]  # refused, retried, given up
    world.control("POST", "/emulator/callbacks/replay", event_id=paid.event_id)
    again = world.receiver.wait_reports(2)[1]
    assert again == paid  # the same event: the service records it once


def test_callbacks_with_a_wrong_amount_or_for_another_sub_merchant_say_so_verified(
        world: World) -> None:
    paid = world.paid_order(amount=10000)
    world.control("POST", f"/emulator/orders/{paid.out_trade_no}/notify", amount_fen=1)
    # Each callback is delivered from a thread of its own: the second is sent only once the
    # first has arrived, so that they arrive in this order.
    world.receiver.wait_reports(2)
    world.control("POST", f"/emulator/orders/{paid.out_trade_no}/notify",
                  as_sub_mchid=OTHER_SUB)
    _, wrong_amount, other_merchant = world.receiver.wait_reports(3)
    assert isinstance(wrong_amount, PaymentReport) and isinstance(other_merchant, PaymentReport)
    assert (wrong_amount.amount_fen, wrong_amount.merchant_id) == (1, SUB)
    assert (other_merchant.amount_fen, other_merchant.merchant_id) == (10000, OTHER_SUB)
    assert len({paid.event_id, wrong_amount.event_id, other_merchant.event_id}) == 3


def test_acknowledgements_are_what_wechat_pay_expects(world: World) -> None:
    ok = world.gateway.acknowledge(ok=True)
    assert (ok.status_code, ok.body) == (204, b"")
    refused = world.gateway.acknowledge(ok=False, message="验签失败")
    assert refused.status_code == 500
    assert json.loads(refused.body) == {"code": "FAIL", "message": "验签失败"}


# --- queries ---------------------------------------------------------------------------------


def test_a_paid_order_whose_callback_was_dropped_is_found_by_the_query(world: World) -> None:
    world.control("POST", "/emulator/faults", callbacks={"drop": True})
    request = world.request(Channel.WECHAT_H5)
    action = world.gateway.create_payment(request)
    assert action.url is not None
    browser_pay(action.url)
    assert len(world.emulator.outbox.dropped) == 1 and world.receiver.reports == []

    report = world.gateway.query_payment(out_trade_no=request.out_trade_no,
                                         merchant=world.merchant)
    assert report is not None and report.state is PaymentState.PAID
    assert (report.amount_fen, report.merchant_id, report.attach) == (1234, SUB, "gift:42")
    assert report.event_id == "" and report.payer_id == world.emulator.default_openid
    assert report.provider_txn_id and report.paid_at is not None


def test_queries_of_unpaid_and_unknown_orders(world: World) -> None:
    request = world.request(Channel.WECHAT_NATIVE)
    world.gateway.create_payment(request)
    unpaid = world.gateway.query_payment(out_trade_no=request.out_trade_no,
                                         merchant=world.merchant)
    assert unpaid is not None and unpaid.state is PaymentState.NOT_PAID
    assert unpaid.provider_txn_id is None and unpaid.paid_at is None
    assert world.gateway.query_payment(out_trade_no="SJnobodyknows", merchant=world.merchant
                                       ) is None
    other = MerchantRoute("wechatpay", OTHER_SUB)  # the number exists, but not at this merchant
    assert world.gateway.query_payment(out_trade_no=request.out_trade_no, merchant=other) is None


# --- refunds ---------------------------------------------------------------------------------


def test_partial_then_full_refund_with_their_callbacks(world: World) -> None:
    paid = world.paid_order(amount=10000)
    first = world.gateway.refund(out_refund_no="RF" + paid.out_trade_no, amount_fen=3000,
                                 out_trade_no=paid.out_trade_no, total_fen=10000,
                                 merchant=world.merchant, notify_url=world.notify_url,
                                 reason="捐赠人申请退款")
    assert first.state is RefundState.PROCESSING and first.amount_fen == 3000
    again = world.gateway.refund(out_refund_no="RF" + paid.out_trade_no, amount_fen=3000,
                                 out_trade_no=paid.out_trade_no, total_fen=10000,
                                 merchant=world.merchant, notify_url=world.notify_url)
    assert again.provider_refund_id == first.provider_refund_id  # idempotent: one refund
    rest = world.gateway.refund(out_refund_no="RG" + paid.out_trade_no, amount_fen=7000,
                                out_trade_no=paid.out_trade_no, total_fen=10000,
                                merchant=world.merchant, notify_url=world.notify_url)
    refunds = [r for r in world.receiver.wait_reports(3) if isinstance(r, RefundReport)]
    assert sorted((r.out_refund_no, r.amount_fen, r.state, r.merchant_id) for r in refunds) == [
        ("RF" + paid.out_trade_no, 3000, RefundState.SUCCEEDED, SUB),
        ("RG" + paid.out_trade_no, 7000, RefundState.SUCCEEDED, SUB)]
    assert {r.provider_refund_id for r in refunds} == {first.provider_refund_id,
                                                       rest.provider_refund_id}
    assert all(r.event_id and r.out_trade_no == paid.out_trade_no for r in refunds)

    with pytest.raises(GatewayError) as too_much:
        world.gateway.refund(out_refund_no="RH" + paid.out_trade_no, amount_fen=1,
                             out_trade_no=paid.out_trade_no, total_fen=10000,
                             merchant=world.merchant, notify_url=world.notify_url)
    # WeChat Pay has no code of its own for "more than remains" (INVALID_REQUEST, said only in
    # its message): the general refusal, where Alipay's says payment_refund_exceeds.
    assert (too_much.value.code, too_much.value.retryable) == ("payment_provider_refused", False)
    assert too_much.value.params["provider_code"] == "INVALID_REQUEST"
    after = world.gateway.query_payment(out_trade_no=paid.out_trade_no, merchant=world.merchant)
    assert after is not None and after.state is PaymentState.REFUNDED


def test_a_lost_refund_callback_is_found_by_the_refund_query(world: World) -> None:
    paid = world.paid_order(amount=2000)
    world.control("POST", "/emulator/faults", callbacks={"drop": True})
    world.gateway.refund(out_refund_no="RL" + paid.out_trade_no, amount_fen=2000,
                         out_trade_no=paid.out_trade_no, total_fen=2000,
                         merchant=world.merchant, notify_url=world.notify_url)
    assert [c.kind for c in world.emulator.outbox.dropped] == ["refund"]
    found = world.gateway.query_refund(out_refund_no="RL" + paid.out_trade_no,
                                       out_trade_no=paid.out_trade_no, merchant=world.merchant)
    assert found is not None and (found.state, found.amount_fen) == (RefundState.SUCCEEDED, 2000)
    assert found.event_id == "" and found.merchant_id == SUB
    assert world.gateway.query_refund(out_refund_no="RNOPE", out_trade_no=paid.out_trade_no,
                                      merchant=world.merchant) is None


def test_refunds_that_end_abnormal_or_closed_are_failed(world: World) -> None:
    paid = world.paid_order(amount=5000)
    world.control("POST", "/emulator/faults", refunds="manual")
    for no, amount in (("RA" + paid.out_trade_no, 1000), ("RC" + paid.out_trade_no, 2000)):
        world.gateway.refund(out_refund_no=no, amount_fen=amount,
                             out_trade_no=paid.out_trade_no, total_fen=5000,
                             merchant=world.merchant, notify_url=world.notify_url)
    pending = world.gateway.query_refund(out_refund_no="RA" + paid.out_trade_no,
                                         out_trade_no=paid.out_trade_no, merchant=world.merchant)
    assert pending is not None and pending.state is RefundState.PROCESSING
    world.control("POST", f"/emulator/refunds/RA{paid.out_trade_no}/settle", status="ABNORMAL")
    world.control("POST", f"/emulator/refunds/RC{paid.out_trade_no}/settle", status="CLOSED")
    refunds = [r for r in world.receiver.wait_reports(3) if isinstance(r, RefundReport)]
    assert {(r.raw["refund_status"], r.state) for r in refunds} == {
        ("ABNORMAL", RefundState.FAILED), ("CLOSED", RefundState.FAILED)}


# --- the daily bill --------------------------------------------------------------------------


def china_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(CHINA_TZ).date()


def test_the_trade_bill_lists_payments_and_refunds(world: World) -> None:
    first = world.paid_order(amount=10000)
    other = MerchantRoute("wechatpay", OTHER_SUB)
    request = world.request(Channel.WECHAT_NATIVE, amount=250, merchant=other)
    world.gateway.create_payment(request)
    world.pay(request.out_trade_no)
    second = world.receiver.wait_reports(2)[1]
    refund = world.gateway.refund(out_refund_no="RB" + first.out_trade_no, amount_fen=2500,
                                  out_trade_no=first.out_trade_no, total_fen=10000,
                                  merchant=world.merchant, notify_url=world.notify_url)
    assert first.paid_at is not None and second.raw.get("success_time")
    refunded_at = parse_rfc3339(str(refund.raw["create_time"]))
    # The bill of each day anything happened (one day, unless the test crossed midnight).
    days = sorted({china_day(first.paid_at), china_day(refunded_at),
                   china_day(parse_rfc3339(str(second.raw["success_time"])))})
    lines = [line for day in days for line in world.gateway.download_bill(day=day)]
    by_kind = {(line.kind, line.out_trade_no): line for line in lines}
    assert len(lines) == 3
    payment = by_kind[(BillKind.PAYMENT, first.out_trade_no)]
    assert (payment.amount_fen, payment.merchant_id, payment.provider_txn_id, payment.status) == (
        10000, SUB, first.provider_txn_id, "SUCCESS")
    assert payment.happened_at == first.paid_at
    assert by_kind[(BillKind.PAYMENT, request.out_trade_no)].merchant_id == OTHER_SUB
    refunded = by_kind[(BillKind.REFUND, first.out_trade_no)]
    assert (refunded.amount_fen, refunded.out_refund_no, refunded.provider_refund_id) == (
        2500, "RB" + first.out_trade_no, refund.provider_refund_id)
    assert refunded.happened_at == refunded_at and refunded.status == "SUCCESS"

    only_other = [line for day in days
                  for line in world.gateway.download_bill(day=day, merchant=other)]
    assert [(line.kind, line.out_trade_no) for line in only_other] == [
        (BillKind.PAYMENT, request.out_trade_no)]
    assert world.gateway.download_bill(day=days[0] - dt.timedelta(days=1)) == []


# --- errors ----------------------------------------------------------------------------------


def test_an_unknown_sub_merchant_is_refused_not_retryable(world: World) -> None:
    stranger = MerchantRoute("wechatpay", "1999999999")
    with pytest.raises(GatewayError) as caught:
        world.gateway.create_payment(world.request(merchant=stranger))
    assert (caught.value.code, caught.value.retryable) == ("payment_merchant_unknown", False)
    assert caught.value.params["provider_code"] == "INVALID_REQUEST"
    with pytest.raises(GatewayError) as queried:
        world.gateway.query_payment(out_trade_no="SJ00000001", merchant=stranger)
    assert queried.value.code == "payment_merchant_unknown"


def test_a_system_error_is_retryable_and_a_param_error_is_not(world: World) -> None:
    world.control("POST", "/emulator/faults", api={"fail_next": 1})
    request = world.request(Channel.WECHAT_NATIVE)
    with pytest.raises(GatewayError) as caught:
        world.gateway.create_payment(request)
    assert (caught.value.code, caught.value.retryable) == ("payment_provider_busy", True)
    assert caught.value.params["provider_code"] == "SYSTEM_ERROR"
    assert world.gateway.create_payment(request).kind is ActionKind.QR
    plan = world.control("POST", "/emulator/faults",
                         api={"fail_next": 1, "status": 400, "code": "PARAM_ERROR"}).json()
    assert plan["api"]["fail_next"] == 1 and plan["callbacks"]["drop"] is False
    with pytest.raises(GatewayError) as refused:
        world.gateway.query_payment(out_trade_no=request.out_trade_no, merchant=world.merchant)
    assert (refused.value.code, refused.value.retryable) == ("payment_provider_refused", False)
    assert world.control("GET", "/emulator/faults").json()["api"]["fail_next"] == 0


def test_a_refund_of_an_order_wechat_pay_never_saw_is_order_unknown(world: World) -> None:
    with pytest.raises(GatewayError) as caught:
        world.gateway.refund(out_refund_no="RFSJ0000000404", out_trade_no="SJ0000000404",
                             amount_fen=100, total_fen=100, merchant=world.merchant,
                             notify_url=world.notify_url)
    assert (caught.value.code, caught.value.retryable) == ("payment_order_unknown", False)
    assert caught.value.params["provider_code"] == "RESOURCE_NOT_EXISTS"


@pytest.mark.parametrize(("status", "provider_code", "message", "code"), [
    (500, "SYSTEM_ERROR", "系统错误", "payment_provider_busy"),
    (429, "FREQUENCY_LIMITED", "频率超限", "payment_provider_busy"),
    (400, "BANK_ERROR", "银行系统异常", "payment_provider_busy"),
    (401, "SIGN_ERROR", "签名错误", "payment_provider_auth_failed"),
    (400, "MCH_NOT_EXISTS", "商户号不存在", "payment_merchant_unknown"),
    (400, "INVALID_REQUEST", "受理关系不存在", "payment_merchant_unknown"),
    (404, "ORDER_NOT_EXIST", "订单不存在", "payment_order_unknown"),
    (400, "ORDERPAID", "订单已支付", "payment_order_conflict"),
    (400, "ORDER_CLOSED", "订单已关闭", "payment_order_conflict"),
    (403, "NOT_ENOUGH", "余额不足", "payment_refund_unfunded"),
    (403, "NO_AUTH", "商户无权限", "payment_provider_refused"),
    (400, "PARAM_ERROR", "参数错误", "payment_provider_refused"),
])
def test_wechat_pay_errors_become_the_platforms_codes(
        world: World, status: int, provider_code: str, message: str, code: str) -> None:
    paid = world.paid_order(amount=500)
    world.control("POST", "/emulator/faults",
                  api={"fail_next": 1, "status": status, "code": provider_code,
                       "message": message})
    with pytest.raises(GatewayError) as caught:
        world.gateway.refund(out_refund_no="RF" + paid.out_trade_no, amount_fen=500,
                             out_trade_no=paid.out_trade_no, total_fen=500,
                             merchant=world.merchant, notify_url=world.notify_url)
    assert caught.value.code == code
    assert caught.value.params == {"http_status": status, "provider_code": provider_code,
                                   "provider_message": message}


def test_a_timeout_is_retryable(key_dir: Path) -> None:
    for world in serve(key_dir, timeout=(2.0, 0.3)):
        world.control("POST", "/emulator/faults", api={"delay": 1.0})
        with pytest.raises(GatewayError) as caught:
            world.gateway.create_payment(world.request())
        assert (caught.value.code, caught.value.retryable) == (
            "payment_provider_unreachable", True)


def config_with(world: World, tmp_path: Path, **files: str) -> WeChatPayConfig:
    """The world's config with other key files (merchant_private=… or platform_public=…)."""
    config = world.config
    changes: dict[str, Path] = {}
    for name, pem in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(pem)
        changes["private_key_file" if name == "merchant_private" else "public_key_file"] = path
    return WeChatPayConfig(**{**{f: getattr(config, f) for f in config.__slots__}, **changes})


def test_answers_signed_by_another_key_are_refused(world: World, tmp_path: Path) -> None:
    gateway = WeChatPayGateway(config_with(world, tmp_path,
                                           platform_public=generate_key_pair().public_pem))
    with pytest.raises(GatewayError) as caught:
        gateway.create_payment(world.request())
    assert (caught.value.code, caught.value.retryable) == ("payment_provider_unsigned", False)


def test_requests_signed_by_another_key_are_refused_by_the_emulator(
        world: World, tmp_path: Path) -> None:
    gateway = WeChatPayGateway(config_with(world, tmp_path,
                                           merchant_private=generate_key_pair().private_pem))
    with pytest.raises(GatewayError) as caught:
        gateway.create_payment(world.request())
    assert (caught.value.code, caught.value.retryable) == ("payment_provider_auth_failed", False)
    assert caught.value.params["provider_code"] == "SIGN_ERROR"
    unsigned = requests.post(world.base_url + "/v3/pay/partner/transactions/native",
                             json={}, timeout=10)
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "SIGN_ERROR")
    assert world.emulator.orders() == []


@pytest.mark.parametrize("change", [
    {"out_trade_no": "../v3/refund"}, {"out_trade_no": "short"}, {"amount_fen": 0},
    {"description": ""}, {"description": "捐" * 43}, {"attach": "x" * 129},
    {"notify_url": "https://shanju.example/notify?x=1"}, {"notify_url": "ftp://x/notify"},
    {"expires_at": dt.datetime(2030, 1, 1)},  # noqa: DTZ001 - naive on purpose
    {"client_ip": "not-an-ip"}, {"channel": Channel.ALIPAY_WAP},
    {"merchant": MerchantRoute("wechatpay", "19000&x=1")},
    {"merchant": MerchantRoute("alipay", SUB)},
    {"channel": Channel.WECHAT_JSAPI}, {"return_url": "javascript:alert(1)"},
])
def test_requests_wechat_pay_would_refuse_are_refused_before_sending(
        key_dir: Path, change: dict[str, object]) -> None:
    # Nothing listens at the base URL: a request that went out would fail as unreachable.
    closed = free_socket()
    _, config = setup(f"http://127.0.0.1:{closed.getsockname()[1]}", key_dir)
    gateway = WeChatPayGateway(config)
    base = PayRequest(out_trade_no="SJ0000000001", amount_fen=100, description="助学",
                      merchant=MerchantRoute("wechatpay", SUB), channel=Channel.WECHAT_H5,
                      notify_url="https://shanju.example/notify",
                      expires_at=utcnow() + dt.timedelta(minutes=30))
    fields = {name: getattr(base, name) for name in base.__slots__}
    request = PayRequest(**(fields | change))  # type: ignore[arg-type]
    with pytest.raises(GatewayError) as caught:
        gateway.create_payment(request)
    closed.close()
    assert (caught.value.code, caught.value.retryable) == ("payment_request_invalid", False)
    with pytest.raises(GatewayError) as sent:  # the control: a valid request does go out
        gateway.create_payment(base)
    assert sent.value.code == "payment_provider_unreachable"


def test_the_emulator_mounted_under_a_prefix_serves_the_same_api(
        key_dir: Path) -> None:
    for world in serve(key_dir, prefix="/emulators/wechatpay"):
        request = world.request(Channel.WECHAT_H5)
        action = world.gateway.create_payment(request)
        assert action.url is not None and "/emulators/wechatpay/emulator/pay/" in action.url
        browser_pay(action.url)
        [report] = world.receiver.wait_reports(1)
        assert isinstance(report, PaymentReport)
        assert report.paid_at is not None
        lines = world.gateway.download_bill(day=china_day(report.paid_at))
        assert [line.out_trade_no for line in lines] == [request.out_trade_no]


# --- configuration ---------------------------------------------------------------------------


def test_configuration_from_the_environment_and_its_problems(
        key_dir: Path, tmp_path: Path) -> None:
    assert WeChatPayConfig.from_env({}).problems() == [
        "SHANJU_WECHATPAY_SP_MCHID is not set",
        "SHANJU_WECHATPAY_SP_APPID is not set",
        "SHANJU_WECHATPAY_CERT_SERIAL_NO is not set",
        "SHANJU_WECHATPAY_PRIVATE_KEY_FILE is not set",
        "SHANJU_WECHATPAY_APIV3_KEY is not set",
        "SHANJU_WECHATPAY_PUBLIC_KEY_FILE is not set",
        "SHANJU_WECHATPAY_PUBLIC_KEY_ID is not set",
    ]
    emulator, good = setup("http://127.0.0.1:9", key_dir)
    env = {
        "SHANJU_WECHATPAY_SP_MCHID": good.sp_mchid, "SHANJU_WECHATPAY_SP_APPID": good.sp_appid,
        "SHANJU_WECHATPAY_CERT_SERIAL_NO": good.cert_serial_no,
        "SHANJU_WECHATPAY_PRIVATE_KEY_FILE": str(good.private_key_file),
        "SHANJU_WECHATPAY_APIV3_KEY": good.apiv3_key,
        "SHANJU_WECHATPAY_PUBLIC_KEY_FILE": str(good.public_key_file),
        "SHANJU_WECHATPAY_PUBLIC_KEY_ID": good.public_key_id,
    }
    production = WeChatPayConfig.from_env(env)
    assert production.base_url == "https://api.mch.weixin.qq.com" and production.problems() == []
    assert WeChatPayConfig.from_env(env | {"SHANJU_WECHATPAY_BASE_URL": good.base_url}) == good
    assert good.problems() == ["SHANJU_WECHATPAY_BASE_URL must be an https URL in production"]
    assert good.problems(require_https=False) == []
    assert good.apiv3_key not in repr(good)

    public_as_private = tmp_path / "public.pem"
    public_as_private.write_text(emulator.keys.merchant.public_pem)
    bad = WeChatPayConfig.from_env(env | {
        "SHANJU_WECHATPAY_SP_APPID": "wx123",
        "SHANJU_WECHATPAY_PRIVATE_KEY_FILE": str(public_as_private),
        "SHANJU_WECHATPAY_APIV3_KEY": "k" * 31,
        "SHANJU_WECHATPAY_PUBLIC_KEY_FILE": str(tmp_path / "missing.pem"),
        "SHANJU_WECHATPAY_BASE_URL": "https://api.example/?x=1",
    })
    problems = bad.problems()
    assert [p.split(" ")[0] for p in problems] == [
        "SHANJU_WECHATPAY_SP_APPID", "SHANJU_WECHATPAY_PRIVATE_KEY_FILE",
        "SHANJU_WECHATPAY_APIV3_KEY", "SHANJU_WECHATPAY_PUBLIC_KEY_FILE",
        "SHANJU_WECHATPAY_BASE_URL"]
    assert "cannot be read" in problems[3] and "not an unencrypted RSA private key" in problems[1]
    assert all("k" * 31 not in p for p in problems)
    with pytest.raises(WeChatPayConfigError) as refused:
        WeChatPayGateway(bad)
    assert refused.value.problems == bad.problems(require_https=False)


# --- the bill parser, on literal bills -------------------------------------------------------

BILL = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n"
    "`2026-03-01 00:30:05,`wx8888888888888888,`1900000100,`1900000109,`,"
    "`4200001234202603011234567890,`SJ0000000001,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,"
    "`OTHERS,`CNY,`100.00,`0.00,`0,`0,`0.00,`0.00,`,`,`山区儿童午餐, 一份心意,`gift:1,"
    "`0.60000,`0.60%,`100.00,`0.00,`\r\n"
    "`2026-03-01 09:15:00,`wx8888888888888888,`1900000100,`1900000110,`,"
    "`4200001234202603011234567891,`SJ0000000002,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`MWEB,`SUCCESS,"
    "`OTHERS,`CNY,`0.01,`0.00,`0,`0,`0.00,`0.00,`,`,`助学,`,`0.00006,`0.60%,`0.01,`0.00,`\r\n"
    "`2026-03-01 23:59:59,`wx8888888888888888,`1900000100,`1900000109,`,"
    "`4200001234202603011234567890,`SJ0000000001,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REFUND,"
    "`OTHERS,`CNY,`0.00,`0.00,`50300001232026030112345678901,`RF0000000001,`30.00,`0.00,"
    "`ORIGINAL,`PROCESSING,`山区儿童午餐, 一份心意,`gift:1,`-0.18000,`0.60%,`0.00,`30.00,`\r\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n"
    "`3,`100.01,`30.00,`0.00,`0.42006,`100.01,`30.00\r\n"
)


def test_the_bill_parser_reads_payments_and_refunds_exactly() -> None:
    def utc(*args: int) -> dt.datetime:
        return dt.datetime(*args, tzinfo=dt.UTC)

    assert parse_trade_bill("\ufeff" + BILL) == [
        BillLine("wechatpay", BillKind.PAYMENT, "SJ0000000001", "4200001234202603011234567890",
                 10000, "1900000109", utc(2026, 2, 28, 16, 30, 5), status="SUCCESS"),
        BillLine("wechatpay", BillKind.PAYMENT, "SJ0000000002", "4200001234202603011234567891",
                 1, "1900000110", utc(2026, 3, 1, 1, 15), status="SUCCESS"),
        BillLine("wechatpay", BillKind.REFUND, "SJ0000000001", "4200001234202603011234567890",
                 3000, "1900000109", utc(2026, 3, 1, 15, 59, 59), out_refund_no="RF0000000001",
                 provider_refund_id="50300001232026030112345678901", status="PROCESSING"),
    ]
    assert len(parse_trade_bill(BILL.replace("\r\n", "\n"))) == 3


@pytest.mark.parametrize(("broken", "why"), [
    (BILL.replace("`3,`100.01", "`2,`100.01"), "counts another number"),
    (BILL.replace(",`30.00\r\n", ",`29.99\r\n"), "refund total"),
    (BILL.replace("`0.60%,`100.00,", "`0.60%,`100.001,"), "whole number of fen"),
    (BILL.replace("`0.60%,`0.01,", "`0.60%,`abc,"), "not an amount"),
    (BILL.replace("`2026-03-01 09:15:00", "`01/03/2026 09:15"), "not a bill time"),
    (BILL.replace("特约商户号", "子商户"), "lacks the columns"),
    (BILL.split("总交易单数")[0], "no summary"),
    (BILL.replace("`OTHERS,`CNY,`0.01", "`OTHERS,`0.01"), "too few fields"),
    ("", "empty"),
])
def test_broken_bills_are_refused(broken: str, why: str) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_trade_bill(broken)
    assert caught.value.code == "payment_bill_malformed"
    assert why in caught.value.params["problem"]


def test_yuan_strings_become_fen_exactly() -> None:
    assert [yuan_to_fen(v) for v in ("0", "0.0", "0.01", "12.3", "12.34", "-0.50",
                                     "99999999.99")] == [0, 0, 1, 1230, 1234, -50, 9999999999]
    for bad in ("1.005", "1e3", "", "¥1", "1,000.00"):
        with pytest.raises(GatewayError):
            yuan_to_fen(bad)
