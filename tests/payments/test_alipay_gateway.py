"""The Alipay gateway — the real python-alipay-sdk, real RSA2 — against the local emulator of
Alipay's open-API gateway served by a real uvicorn, with notifies delivered over HTTP to a small
receiving app that answers as the platform will. No database: the gateway touches none.

The emulator's clock is stopped at a fixed time (and moved by the tests that need days to
pass); the gateway reads the same clock, so nothing here depends on today's date.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import re
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from alipay import AliPay
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from shanju.core.clock import CHINA_TZ, utcnow
from shanju.payments.alipay import (
    AlipayConfig,
    AlipayConfigError,
    AlipayGateway,
    _error_of,
    fen_to_yuan,
    parse_trade_bill,
    read_bill_zip,
    yuan_to_fen,
)
from shanju.payments.emulators.alipay import AlipayEmulator, Merchant, alipay_post, create_app
from shanju.payments.emulators.alipay import setup as setup_emulator
from shanju.payments.emulators.keys import generate_key_pair
from shanju.payments.emulators.outbox import Outbox
from shanju.payments.gateway import (
    ActionKind,
    BillKind,
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
from tests.serving import free_socket, uvicorn_thread


def _cn(at: dt.datetime) -> str:
    """``at`` as Alipay writes times: China time, "YYYY-MM-DD HH:MM:SS"."""
    return at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


APP_ID = "2021000000000001"
Report = PaymentReport | RefundReport


class Receiver:
    """The platform's side of the notify URL: verify with the gateway, answer as it says."""

    def __init__(self, gateway: AlipayGateway) -> None:
        self.gateway = gateway
        self.reports: list[Report] = []
        self.refused: list[tuple[str, str]] = []  # (code, out_trade_no in the body)
        self._changed = threading.Condition()
        self.app = Starlette(routes=[Route("/notify", self.notify, methods=["POST"]),
                                     Route("/return", self.back, methods=["GET"])])

    async def notify(self, request: Request) -> Response:
        body = await request.body()
        try:
            report = await run_in_threadpool(self.gateway.parse_notification, body=body,
                                             headers=dict(request.headers))
        except InvalidSignature as exc:
            with self._changed:
                self.refused.append((exc.code, dict(parse_qsl(body.decode(errors="replace")))
                                     .get("out_trade_no", "")))
                self._changed.notify_all()
            ack = self.gateway.acknowledge(ok=False)
        else:
            with self._changed:
                self.reports.append(report)
                self._changed.notify_all()
            ack = self.gateway.acknowledge(ok=True)
        return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)

    async def back(self, request: Request) -> Response:
        del request
        return PlainTextResponse("谢谢")

    def about(self, out_trade_no: str) -> list[Report]:
        with self._changed:
            return [r for r in self.reports if r.out_trade_no == out_trade_no]

    def wait(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        with self._changed:
            assert self._changed.wait_for(predicate, timeout), "the notify did not come"


@dataclass
class World:
    emulator: AlipayEmulator
    config: AlipayConfig
    gateway: AlipayGateway
    receiver: Receiver
    base: str            # the emulator's base URL
    notify_url: str
    return_url: str
    merchant: Merchant
    key_dir: Path
    start: dt.datetime   # the emulator's and the gateway's clock when each test starts

    def order(self, channel: Channel = Channel.ALIPAY_QR, *, amount_fen: int = 1234,
              merchant: Merchant | None = None, attach: str = "",
              route: MerchantRoute | None = None) -> PayRequest:
        return PayRequest(
            out_trade_no=uuid.uuid4().hex, amount_fen=amount_fen, description="善举 · 一次捐赠",
            merchant=route or (merchant or self.merchant).route(), channel=channel,
            notify_url=self.notify_url, expires_at=self.emulator.now() + dt.timedelta(minutes=15),
            return_url=self.return_url, attach=attach)

    def control(self, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
        answer = requests.post(f"{self.base}/emulator/{path}", json=body or {}, timeout=10)
        assert answer.status_code == 200, answer.text
        result: dict[str, object] = answer.json()
        return result

    def paid_order(self, amount_fen: int = 1234, *, merchant: Merchant | None = None,
                   buyer_id: str | None = None) -> PayRequest:
        """A precreate order the payer paid (through the control API); its notify arrived."""
        request = self.order(amount_fen=amount_fen, merchant=merchant)
        self.gateway.create_payment(request)
        self.control(f"trades/{request.out_trade_no}/pay",
                     {"buyer_id": buyer_id} if buyer_id else {})
        return request

    def sdk_verifier(self) -> AliPay:
        private, public = self.config.read_keys()
        return AliPay(appid=APP_ID, app_private_key_string=private,
                      alipay_public_key_string=public, sign_type="RSA2")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    key_dir = tmp_path_factory.mktemp("alipay-keys")
    emulator_sock, receiver_sock = free_socket(), free_socket()
    base = f"http://127.0.0.1:{emulator_sock.getsockname()[1]}"
    receiver_base = f"http://127.0.0.1:{receiver_sock.getsockname()[1]}"
    # Alipay retries for a day; here a refused notify is tried again after 50 ms, twice.
    outbox = Outbox(post=alipay_post, retry_delays=(0.05, 0.05))
    emulator, config = setup_emulator(base, key_dir, app_id=APP_ID, outbox=outbox)
    # The injected clock: 10:00 China time, a month from the real today when the module's
    # tests run (never a fixed calendar date), so the tests mean the same in any month.
    start = (utcnow().astimezone(CHINA_TZ) + dt.timedelta(days=30)).replace(
        hour=10, minute=0, second=0, microsecond=0).astimezone(dt.UTC)
    emulator.set_now(start)
    gateway = AlipayGateway(config, now=emulator.now)
    receiver = Receiver(gateway)
    merchant = emulator.add_merchant("青山助学基金会")
    with uvicorn_thread(create_app(emulator), emulator_sock), \
            uvicorn_thread(receiver.app, receiver_sock):
        yield World(emulator, config, gateway, receiver, base, f"{receiver_base}/notify",
                    f"{receiver_base}/return", merchant, key_dir, start)


@pytest.fixture(autouse=True)
def calm(world: World) -> Iterator[None]:
    """Every test starts at the world's start with no faults, and leaves nothing in flight."""
    world.control("clock", {"now": world.start.isoformat()})
    requests.delete(f"{world.base}/emulator/faults", timeout=10)
    yield
    world.emulator.outbox.held.clear()
    requests.delete(f"{world.base}/emulator/faults", timeout=10)
    assert world.emulator.outbox.wait_idle(30)


def attempts_of(world: World, out_trade_no: str) -> list[list[int]]:
    return [c.attempts for c in world.emulator.outbox.log if c.ref == out_trade_no]


# -- amounts ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "fen"), [
    ("0.01", 1), ("99999999.99", 9_999_999_999), ("100000000.00", 10_000_000_000),
    ("1.1", 110), ("1.10", 110), ("1", 100), ("0.00", 0), ("12.34", 1234), ("0.1", 10),
])
def test_yuan_strings_convert_to_fen_exactly(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", [
    "1.234", "-1.00", "１.00", "1e2", " 1.00", "1.00\n", "01.00", ".5", "1.", "", "NaN", "+1",
    "1,00", "1000000000.00", "٣.00",
])
def test_anything_else_is_not_an_amount(text: str) -> None:
    with pytest.raises(ValueError, match="not a yuan amount"):
        yuan_to_fen(text)


def test_signed_amounts_and_fen_to_yuan() -> None:
    assert yuan_to_fen("-0.01", signed=True) == -1
    assert yuan_to_fen("-35.80", signed=True) == -3580
    assert [fen_to_yuan(n) for n in (0, 1, 10, 110, 9_999_999_999)] == [
        "0.00", "0.01", "0.10", "1.10", "99999999.99"]
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="not an amount in fen"):
            fen_to_yuan(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10_000_000_000))
def test_fen_survive_the_round_trip_through_yuan(fen: int) -> None:
    assert yuan_to_fen(fen_to_yuan(fen)) == fen


# -- configuration ----------------------------------------------------------------------------

def test_config_reads_the_environment_and_lists_every_problem(world: World,
                                                              tmp_path: Path) -> None:
    empty = AlipayConfig.from_env({})
    assert empty.gateway_url == "https://openapi.alipay.com/gateway.do"
    assert [line.split(" ")[0] for line in empty.problems()] == [
        "SHANJU_ALIPAY_APP_ID", "SHANJU_ALIPAY_PRIVATE_KEY_FILE", "SHANJU_ALIPAY_PUBLIC_KEY_FILE"]
    with pytest.raises(AlipayConfigError):
        AlipayGateway(empty)

    env = {"SHANJU_ALIPAY_APP_ID": APP_ID,
           "SHANJU_ALIPAY_PRIVATE_KEY_FILE": str(world.config.private_key_file),
           "SHANJU_ALIPAY_PUBLIC_KEY_FILE": str(world.config.public_key_file)}
    good = AlipayConfig.from_env(env)
    assert good.problems() == []
    assert AlipayConfig.from_env({**env, "SHANJU_ALIPAY_GATEWAY": world.config.gateway_url}
                                 ).problems() == [
        f"SHANJU_ALIPAY_GATEWAY must be an https URL (it is '{world.config.gateway_url}')"]

    # The bare base64 Alipay's key tool writes is a key as good as PEM.
    private_pem = Path(str(world.config.private_key_file)).read_text()
    bare = tmp_path / "app-bare.txt"
    bare.write_text("".join(private_pem.strip().splitlines()[1:-1]))
    bare.chmod(0o600)
    assert AlipayConfig(APP_ID, bare, world.config.public_key_file).problems() == []

    app_public = world.key_dir / "alipay-app.pub.pem"
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    small_file = tmp_path / "small.pem"
    small_file.write_bytes(small.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    small_file.chmod(0o644)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    problems = AlipayConfig("12345", small_file, app_public).problems()
    assert problems[0] == "SHANJU_ALIPAY_APP_ID is not an Alipay application id (16 digits)"
    assert "is a 1024-bit key; RSA2 needs 2048 bits" in problems[1]
    assert "may be read by other users (mode 0o644)" in problems[2]
    assert len(problems) == 3
    swapped = AlipayConfig(APP_ID, world.config.private_key_file, app_public).problems()
    assert swapped == ["SHANJU_ALIPAY_PUBLIC_KEY_FILE holds the application's own public key; "
                       "it must hold Alipay's public key (支付宝公钥) from the open platform"]
    unreadable = AlipayConfig(APP_ID, garbage, tmp_path / "missing.pem").problems()
    assert "is not an unencrypted RSA private key" in unreadable[0]
    assert "cannot be read" in unreadable[1]


# -- paying -----------------------------------------------------------------------------------

def test_wap_pay_is_a_signed_cashier_url_of_the_merchant(world: World) -> None:
    request = world.order(Channel.ALIPAY_WAP, attach="gift=7&name=王小明")
    action = world.gateway.create_payment(request)
    assert action.kind is ActionKind.REDIRECT and action.url is not None
    assert action.url.startswith(world.config.gateway_url + "?")
    params = dict(parse_qsl(urlsplit(action.url).query))
    assert params["method"] == "alipay.trade.wap.pay"
    assert params["app_id"] == APP_ID and params["sign_type"] == "RSA2"
    assert params["app_auth_token"] == world.merchant.auth_token
    assert params["notify_url"] == world.notify_url
    assert params["return_url"] == world.return_url
    biz = json.loads(params["biz_content"])
    assert biz["total_amount"] == "12.34" and biz["out_trade_no"] == request.out_trade_no
    assert biz["product_code"] == "QUICK_WAP_WAY"
    assert biz["time_expire"] == _cn(world.start + dt.timedelta(minutes=15))  # China time
    assert biz["passback_params"] == "gift%3D7%26name%3D%E7%8E%8B%E5%B0%8F%E6%98%8E"
    # The platform application's key signed it: what the emulator (like Alipay) checks.
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign")
    app_public = serialization.load_pem_public_key(
        (world.key_dir / "alipay-app.pub.pem").read_bytes())
    assert isinstance(app_public, rsa.RSAPublicKey)
    app_public.verify(base64.b64decode(params["sign"]), content.encode(), padding.PKCS1v15(),
                      hashes.SHA256())


def test_a_wap_trade_exists_once_the_payer_opens_the_cashier(world: World) -> None:
    request = world.order(Channel.ALIPAY_WAP)
    action = world.gateway.create_payment(request)
    assert world.gateway.query_payment(out_trade_no=request.out_trade_no,
                                       merchant=world.merchant.route()) is None
    assert action.url is not None
    to_cashier = requests.get(action.url, allow_redirects=False, timeout=10)
    assert to_cashier.status_code == 302  # the order reached Alipay; nobody is paying yet
    assert world.gateway.query_payment(out_trade_no=request.out_trade_no,
                                       merchant=world.merchant.route()) is None
    page = requests.get(to_cashier.headers["location"], timeout=10)
    assert page.status_code == 200 and "确认付款" in page.text
    found = world.gateway.query_payment(out_trade_no=request.out_trade_no,
                                        merchant=world.merchant.route())
    assert found is not None and found.state is PaymentState.NOT_PAID
    assert found.amount_fen == 1234 and found.paid_at is None


def test_page_pay_through_the_cashier_page_as_a_browser_does(world: World) -> None:
    request = world.order(Channel.ALIPAY_PAGE, amount_fen=1, attach="order=42&who=匿名")
    action = world.gateway.create_payment(request)
    assert action.url is not None
    assert dict(parse_qsl(urlsplit(action.url).query))["method"] == "alipay.trade.page.pay"
    page = requests.get(action.url, timeout=10)  # the gateway redirects to the cashier
    assert page.status_code == 200
    assert "<title>支付宝 · 确认付款</title>" in page.text
    assert "青山助学基金会" in page.text and "0.01" in page.text
    assert 'name="viewport" content="width=device-width' in page.text
    assert "max-width:390px" in page.text
    form = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert form is not None
    done = requests.post(html.unescape(form.group(1)), data={"buyer_id": "2088000000000042"},
                         allow_redirects=False, timeout=10)
    assert done.status_code == 303
    back = urlsplit(done.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == world.return_url
    returned = dict(parse_qsl(back.query))
    sign = returned.pop("sign")
    assert returned["method"] == "alipay.trade.page.pay.return"
    assert returned["out_trade_no"] == request.out_trade_no
    assert returned["total_amount"] == "0.01" and returned["seller_id"] == world.merchant.pid
    assert world.sdk_verifier().verify(dict(returned), sign)  # signed as Alipay signs returns
    returned["total_amount"] = "100.00"
    assert not world.sdk_verifier().verify(dict(returned), sign)

    world.receiver.wait(lambda: bool(world.receiver.about(request.out_trade_no)))
    [report] = world.receiver.about(request.out_trade_no)
    assert isinstance(report, PaymentReport)
    assert report.state is PaymentState.PAID and report.amount_fen == 1
    assert report.merchant_id == world.merchant.pid
    assert report.payer_id == "2088000000000042"
    assert report.attach == "order=42&who=匿名"
    assert report.provider_txn_id == returned["trade_no"]
    assert report.paid_at == world.start
    assert report.event_id and report.event_id == report.raw["notify_id"]
    assert world.emulator.outbox.wait_idle(10)
    assert attempts_of(world, request.out_trade_no) == [[200]]  # "success": no retry


def test_precreate_gives_a_qr_code_that_leads_to_the_same_cashier(world: World) -> None:
    request = world.order(Channel.ALIPAY_QR, amount_fen=9_999_999_999)
    action = world.gateway.create_payment(request)
    assert action.kind is ActionKind.QR and action.qr_text is not None
    assert action.qr_text.startswith(f"{world.base}/emulator/pay/")
    found = world.gateway.query_payment(out_trade_no=request.out_trade_no,
                                        merchant=world.merchant.route())
    assert found is not None and found.state is PaymentState.NOT_PAID  # precreate: it exists
    assert "99999999.99" in requests.get(action.qr_text, timeout=10).text
    done = requests.post(action.qr_text, timeout=10)  # no return_url: a "paid" page
    assert done.status_code == 200 and "支付成功" in done.text
    world.receiver.wait(lambda: bool(world.receiver.about(request.out_trade_no)))
    [report] = world.receiver.about(request.out_trade_no)
    assert isinstance(report, PaymentReport) and report.amount_fen == 9_999_999_999


def changed(request: PayRequest, **changes: object) -> PayRequest:
    fields = {name: getattr(request, name) for name in request.__slots__}
    return PayRequest(**{**fields, **changes})  # type: ignore[arg-type]


def test_an_order_opens_once_with_the_same_terms(world: World) -> None:
    request = world.order()
    first = world.gateway.create_payment(request)
    assert world.gateway.create_payment(request) == first  # the same order again: same code
    with pytest.raises(GatewayError) as caught:
        world.gateway.create_payment(changed(request, amount_fen=1))
    assert caught.value.code == "payment_order_conflict" and not caught.value.retryable
    assert caught.value.params["sub_code"] == "ACQ.CONTEXT_INCONSISTENT"
    world.control(f"trades/{request.out_trade_no}/pay")
    with pytest.raises(GatewayError) as caught:
        world.gateway.create_payment(request)
    assert caught.value.code == "payment_order_conflict" and not caught.value.retryable
    assert caught.value.params["sub_code"] == "ACQ.TRADE_HAS_SUCCESS"


def test_invalid_orders_are_refused_before_any_call(world: World) -> None:
    naive = world.start.astimezone(CHINA_TZ).replace(minute=15, tzinfo=None)
    for change in ({"amount_fen": 0}, {"amount_fen": 10_000_000_001},
                   {"out_trade_no": "有中文"}, {"attach": "x" * 129}, {"expires_at": naive}):
        with pytest.raises(GatewayError) as caught:
            world.gateway.create_payment(changed(world.order(), **change))
        assert caught.value.code == "payment_request_invalid" and not caught.value.retryable


# -- notifies ---------------------------------------------------------------------------------

def test_a_duplicated_notify_is_reported_each_time_with_the_same_event_id(world: World) -> None:
    world.control("faults", {"callbacks": {"duplicates": 2}})
    request = world.paid_order()
    world.receiver.wait(lambda: len(world.receiver.about(request.out_trade_no)) == 3)
    reports = world.receiver.about(request.out_trade_no)
    assert len({r.event_id for r in reports}) == 1
    assert all(isinstance(r, PaymentReport) and r.state is PaymentState.PAID for r in reports)


def test_held_notifies_are_released_in_reverse_order(world: World) -> None:
    world.control("faults", {"callbacks": {"hold": True}})
    first, second = world.paid_order(), world.paid_order()
    assert world.emulator.outbox.wait_idle(10)
    assert world.receiver.about(first.out_trade_no) == []
    assert world.receiver.about(second.out_trade_no) == []
    sent_before = len(world.emulator.outbox.log)
    assert world.control("notifies/release", {"reverse": True}) == {"released": 2}
    released = [c.ref for c in world.emulator.outbox.log[sent_before:]]
    assert released == [second.out_trade_no, first.out_trade_no]
    world.receiver.wait(lambda: bool(world.receiver.about(first.out_trade_no))
                        and bool(world.receiver.about(second.out_trade_no)))


def test_a_dropped_notify_leaves_the_query_to_find_the_payment(world: World) -> None:
    world.control("faults", {"callbacks": {"drop": True}})
    request = world.paid_order(buyer_id="2088000000000777")
    assert [c.ref for c in world.emulator.outbox.dropped][-1] == request.out_trade_no
    assert world.emulator.outbox.wait_idle(10)
    assert world.receiver.about(request.out_trade_no) == []
    found = world.gateway.query_payment(out_trade_no=request.out_trade_no,
                                        merchant=world.merchant.route())
    assert found is not None
    assert found.state is PaymentState.PAID and found.amount_fen == 1234
    assert found.payer_id == "2088000000000777" and found.paid_at == world.start
    assert found.merchant_id == world.merchant.pid and found.event_id == ""


def test_an_unknown_trade_is_none(world: World) -> None:
    assert world.gateway.query_payment(out_trade_no=uuid.uuid4().hex,
                                       merchant=world.merchant.route()) is None


def _genuine(world: World) -> dict[str, str]:
    request = world.paid_order()
    world.receiver.wait(lambda: bool(world.receiver.about(request.out_trade_no)))
    [notify] = [n for n in world.emulator.notifies if n.out_trade_no == request.out_trade_no]
    return dict(notify.fields)


def _signed_by_stranger(fields: dict[str, str]) -> dict[str, str]:
    stranger = serialization.load_pem_private_key(generate_key_pair().private_pem.encode(), None)
    assert isinstance(stranger, rsa.RSAPrivateKey)
    content = "&".join(f"{k}={v}" for k, v in sorted(fields.items())
                       if k not in ("sign", "sign_type"))
    raw = stranger.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())
    return {**fields, "sign": base64.b64encode(raw).decode()}


FORGERIES: dict[str, tuple[Callable[[AlipayEmulator, dict[str, str]], bytes], str]] = {
    "signed with another key": (
        lambda _e, f: urlencode(_signed_by_stranger(f)).encode(), "invalid_signature"),
    "amount changed after signing": (
        lambda _e, f: urlencode({**f, "total_amount": "0.01"}).encode(), "invalid_signature"),
    "seller changed after signing": (
        lambda _e, f: urlencode({**f, "seller_id": "2088999999999999"}).encode(),
        "invalid_signature"),
    "field added after signing": (
        lambda _e, f: urlencode({**f, "refund_fee": "12.34"}).encode(), "invalid_signature"),
    "no signature": (
        lambda _e, f: urlencode({k: v for k, v in f.items() if k != "sign"}).encode(),
        "invalid_signature"),
    "RSA instead of RSA2": (
        lambda _e, f: urlencode({**f, "sign_type": "RSA"}).encode(), "invalid_signature"),
    "signature not base64": (
        lambda _e, f: urlencode({**f, "sign": "%%%"}).encode(), "invalid_signature"),
    "another application of Alipay's": (
        lambda e, f: urlencode(e.sign_fields({**f, "app_id": "2021999999999999"})).encode(),
        "wrong_app_id"),
    "sent an hour in the future": (
        lambda e, f: urlencode(e.sign_fields(
            {**f, "notify_time": _cn(e.now() + dt.timedelta(hours=1))})).encode(),
        "stale_callback"),
    "sent 26 hours ago": (
        lambda e, f: urlencode(e.sign_fields(
            {**f, "notify_time": _cn(e.now() - dt.timedelta(hours=26))})).encode(),
        "stale_callback"),
    "amount with three decimals, signed": (
        lambda e, f: urlencode(e.sign_fields({**f, "total_amount": "12.345"})).encode(),
        "malformed_callback"),
    "no out_trade_no, signed": (
        lambda e, f: urlencode(e.sign_fields(
            {k: v for k, v in f.items() if k != "out_trade_no"})).encode(),
        "malformed_callback"),
    "unknown trade status, signed": (
        lambda e, f: urlencode(e.sign_fields({**f, "trade_status": "PAID"})).encode(),
        "malformed_callback"),
    "not a form": (lambda _e, _f: b"\xff\xfe{json?", "malformed_callback"),
    "a field twice": (
        lambda _e, f: urlencode(f).encode() + b"&total_amount=0.01", "malformed_callback"),
    "empty": (lambda _e, _f: b"", "malformed_callback"),
}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_a_notify_that_cannot_be_trusted_is_refused(world: World, case: str) -> None:
    fields = _genuine(world)
    make, code = FORGERIES[case]
    # The genuine notify passes; the altered one does not, with its stable code.
    assert isinstance(world.gateway.parse_notification(body=urlencode(fields).encode(),
                                                       headers={}), PaymentReport)
    with pytest.raises(InvalidSignature) as caught:
        world.gateway.parse_notification(body=make(world.emulator, fields), headers={})
    assert caught.value.code == code


def test_a_refused_notify_is_answered_fail_and_alipay_tries_again(world: World) -> None:
    request = world.paid_order()
    world.receiver.wait(lambda: bool(world.receiver.about(request.out_trade_no)))
    world.control("notifies/forge", {"out_trade_no": request.out_trade_no,
                                     "app_id": "2021999999999999"})
    world.receiver.wait(lambda: world.receiver.refused.count(
        ("wrong_app_id", request.out_trade_no)) == 3)
    assert world.emulator.outbox.wait_idle(10)
    # "fail" (HTTP 400): the emulator, like Alipay, tried again — here twice more.
    assert attempts_of(world, request.out_trade_no) == [[200], [400, 400, 400]]
    assert world.gateway.acknowledge(ok=False).body == b"fail"
    assert world.gateway.acknowledge(ok=True).body == b"success"


def test_notifies_alipay_signs_with_a_wrong_amount_or_for_another_seller(world: World) -> None:
    request = world.paid_order()
    world.receiver.wait(lambda: bool(world.receiver.about(request.out_trade_no)))
    [genuine] = world.receiver.about(request.out_trade_no)
    other = world.emulator.add_merchant("另一家机构")
    cheap_id = world.control("notifies/forge", {"out_trade_no": request.out_trade_no,
                                                "total_amount": "0.01"})["notify_id"]
    elsewhere_id = world.control("notifies/forge", {"out_trade_no": request.out_trade_no,
                                                    "seller_id": other.pid})["notify_id"]
    world.receiver.wait(lambda: len(world.receiver.about(request.out_trade_no)) == 3)
    by_event = {r.event_id: r for r in world.receiver.about(request.out_trade_no)}
    cheap, elsewhere = by_event[str(cheap_id)], by_event[str(elsewhere_id)]
    # Verified and reported as Alipay said it: the payments service compares them with the
    # order (amount 1234 fen, merchant world.merchant) and records the mismatch.
    assert (genuine.amount_fen, genuine.merchant_id) == (1234, world.merchant.pid)
    assert (cheap.amount_fen, cheap.merchant_id) == (1, world.merchant.pid)
    assert (elsewhere.amount_fen, elsewhere.merchant_id) == (1234, other.pid)
    assert len({genuine.event_id, cheap.event_id, elsewhere.event_id}) == 3


def test_an_old_notify_replayed_is_the_same_event_then_stale(world: World) -> None:
    request = world.paid_order()
    world.receiver.wait(lambda: bool(world.receiver.about(request.out_trade_no)))
    [first] = world.receiver.about(request.out_trade_no)
    world.control("clock", {"advance_seconds": 24 * 3600})  # inside Alipay's retry window
    world.control("notifies/replay", {"notify_id": first.event_id})
    world.receiver.wait(lambda: len(world.receiver.about(request.out_trade_no)) == 2)
    assert world.receiver.about(request.out_trade_no)[1] == first  # a duplicate, by event_id
    world.control("clock", {"advance_seconds": 2 * 3600})  # 26 hours after it was sent
    world.control("notifies/replay", {"notify_id": first.event_id})
    world.receiver.wait(lambda: ("stale_callback", request.out_trade_no)
                        in world.receiver.refused)
    assert len(world.receiver.about(request.out_trade_no)) == 2


def test_an_unpaid_trade_closes_at_its_time_expire(world: World) -> None:
    request = world.order()
    world.gateway.create_payment(request)
    world.control("clock", {"advance_seconds": 15 * 60})
    found = world.gateway.query_payment(out_trade_no=request.out_trade_no,
                                        merchant=world.merchant.route())
    assert found is not None and found.state is PaymentState.CLOSED
    world.receiver.wait(lambda: bool(world.receiver.about(request.out_trade_no)))
    [closed] = world.receiver.about(request.out_trade_no)
    assert isinstance(closed, PaymentReport) and closed.state is PaymentState.CLOSED
    assert closed.payer_id == "" and closed.paid_at is None


# -- refunds ----------------------------------------------------------------------------------

def test_partial_and_full_refunds_their_notices_and_queries(world: World) -> None:
    route = world.merchant.route()
    request = world.paid_order(amount_fen=1000)
    trade = request.out_trade_no

    def refund(number: str, fen: int) -> RefundReport:
        return world.gateway.refund(out_refund_no=number, out_trade_no=trade, amount_fen=fen,
                                    total_fen=1000, merchant=route, notify_url=world.notify_url,
                                    reason="项目取消")

    first = refund(f"{trade[:20]}R1", 300)
    assert (first.state, first.amount_fen, first.refunded_total_fen) == (
        RefundState.SUCCEEDED, 300, 300)
    assert first.raw["fund_change"] == "Y"
    again = refund(f"{trade[:20]}R1", 300)  # the same request again: no money moves twice
    assert (again.state, again.amount_fen, again.refunded_total_fen) == (
        RefundState.SUCCEEDED, 300, 300)
    with pytest.raises(GatewayError) as caught:
        refund(f"{trade[:20]}R1", 301)
    assert caught.value.code == "payment_provider_refused" and not caught.value.retryable
    with pytest.raises(GatewayError) as caught:
        refund(f"{trade[:20]}R9", 701)
    assert caught.value.code == "payment_refund_exceeds" and not caught.value.retryable
    rest = refund(f"{trade[:20]}R2", 700)
    assert (rest.state, rest.amount_fen, rest.refunded_total_fen) == (
        RefundState.SUCCEEDED, 700, 1000)

    one = world.gateway.query_refund(out_refund_no=f"{trade[:20]}R1", out_trade_no=trade,
                                     merchant=route)
    two = world.gateway.query_refund(out_refund_no=f"{trade[:20]}R2", out_trade_no=trade,
                                     merchant=route)
    assert one is not None and (one.state, one.amount_fen) == (RefundState.SUCCEEDED, 300)
    assert two is not None and (two.state, two.amount_fen) == (RefundState.SUCCEEDED, 700)
    assert world.gateway.query_refund(out_refund_no=f"{trade[:20]}R9", out_trade_no=trade,
                                      merchant=route) is None
    assert world.gateway.query_refund(out_refund_no="R1", out_trade_no=uuid.uuid4().hex,
                                      merchant=route) is None
    after = world.gateway.query_payment(out_trade_no=trade, merchant=route)
    assert after is not None and after.state is PaymentState.REFUNDED

    # Notifies travel separately (as Alipay's do): matched by what they are, not by order.
    world.receiver.wait(lambda: len(world.receiver.about(trade)) == 3)
    notices = {r.out_refund_no: r for r in world.receiver.about(trade)
               if isinstance(r, RefundReport)}
    assert [type(r) for r in world.receiver.about(trade)].count(PaymentReport) == 1
    notice_one, notice_two = notices[f"{trade[:20]}R1"], notices[f"{trade[:20]}R2"]
    assert (notice_one.out_refund_no, notice_one.amount_fen, notice_one.refunded_total_fen,
            notice_one.raw["trade_status"]) == (f"{trade[:20]}R1", None, 300, "TRADE_SUCCESS")
    assert (notice_two.out_refund_no, notice_two.refunded_total_fen,
            notice_two.raw["trade_status"]) == (f"{trade[:20]}R2", 1000, "TRADE_CLOSED")
    assert notice_one.state is RefundState.SUCCEEDED
    assert notice_one.merchant_id == world.merchant.pid and notice_one.event_id


def test_an_unpaid_trade_cannot_be_refunded(world: World) -> None:
    request = world.order()
    world.gateway.create_payment(request)
    with pytest.raises(GatewayError) as caught:
        world.gateway.refund(out_refund_no="R1", out_trade_no=request.out_trade_no,
                             amount_fen=100, total_fen=1234, merchant=world.merchant.route(),
                             notify_url=world.notify_url)
    assert caught.value.code == "payment_order_conflict" and not caught.value.retryable
    assert caught.value.params["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    with pytest.raises(GatewayError) as caught:
        world.gateway.refund(out_refund_no="R1", out_trade_no=request.out_trade_no,
                             amount_fen=2000, total_fen=1234, merchant=world.merchant.route(),
                             notify_url=world.notify_url)
    assert caught.value.code == "payment_request_invalid"
    with pytest.raises(GatewayError) as caught:
        world.gateway.refund(out_refund_no="R1", out_trade_no=uuid.uuid4().hex,
                             amount_fen=100, total_fen=1234, merchant=world.merchant.route(),
                             notify_url=world.notify_url)
    assert caught.value.code == "payment_order_unknown" and not caught.value.retryable
    assert caught.value.params["sub_code"] == "ACQ.TRADE_NOT_EXIST"


# -- the daily bill ---------------------------------------------------------------------------

def test_the_daily_bill_lists_the_days_payments_and_refunds(world: World) -> None:
    merchant = world.emulator.add_merchant("明德图书馆")
    route = merchant.route()
    day = dt.date(2031, 5, 20)

    def at(hour: int, minute: int = 0, second: int = 0, days: int = 0) -> None:
        moment = dt.datetime(2031, 5, 20, hour, minute, second, tzinfo=CHINA_TZ)
        world.control("clock", {"now": (moment + dt.timedelta(days=days)).isoformat()})

    at(0, 0, 0)
    first = world.paid_order(1234, merchant=merchant)
    at(9, 30)
    second = world.paid_order(1, merchant=merchant)
    world.paid_order(500)  # another merchant's: not in this bill
    at(11)
    world.gateway.refund(out_refund_no="RF-1", out_trade_no=first.out_trade_no, amount_fen=234,
                         total_fen=1234, merchant=route, notify_url=world.notify_url)
    at(23, 59, 59)
    last = world.paid_order(9_999_999_999, merchant=merchant)
    at(0, 0, 0, days=1)
    world.paid_order(700, merchant=merchant)  # the next day's
    with pytest.raises(GatewayError) as caught:
        world.gateway.download_bill(day=day + dt.timedelta(days=1), merchant=route)
    assert caught.value.code == "payment_bill_not_ready" and caught.value.retryable
    with pytest.raises(GatewayError) as caught:
        world.gateway.download_bill(day=day)
    assert caught.value.code == "payment_merchant_required" and not caught.value.retryable

    lines = world.gateway.download_bill(day=day, merchant=route)
    assert [(x.kind, x.out_trade_no, x.amount_fen, x.out_refund_no) for x in lines] == [
        (BillKind.PAYMENT, first.out_trade_no, 1234, None),
        (BillKind.PAYMENT, second.out_trade_no, 1, None),
        (BillKind.REFUND, first.out_trade_no, 234, "RF-1"),
        (BillKind.PAYMENT, last.out_trade_no, 9_999_999_999, None),
    ]
    assert {x.merchant_id for x in lines} == {merchant.pid}
    assert lines[0].happened_at == dt.datetime(2031, 5, 19, 16, 0, tzinfo=dt.UTC)
    assert lines[3].happened_at == dt.datetime(2031, 5, 20, 15, 59, 59, tzinfo=dt.UTC)
    assert lines[0].provider_txn_id == lines[2].provider_txn_id
    assert (lines[0].status, lines[2].status) == ("交易", "退款")
    assert world.gateway.download_bill(day=day - dt.timedelta(days=1), merchant=route) == []


T = "\t"  # Alipay pads text cells with a tab (spreadsheets keep long numbers as text)
BILL_HEADER = ",".join((
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号",
    "门店名称", "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）",
    "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）", "商家优惠（元）", "券核销金额（元）",
    "券名称", "商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号", "服务费（元）",
    "分润（元）", "备注"))
BILL_ROWS = (
    ("2031052022001400000000000001" + T, "gift-0001" + T, "交易" + T, '"善举 · 捐赠, 助学"' + T,
     "2031-05-20 09:59:58", "2031-05-20 10:00:30", T, T, T, T, "138****0001" + T, "35.80",
     "35.80", "0.00", "0.00", "0.00", "0.00", "0.00", T, "0.00", "0.00", T, "0.00", "0.00", T),
    ("2031052022001400000000000001" + T, "gift-0001" + T, "退款" + T, '"善举 · 捐赠, 助学"' + T,
     "2031-05-20 09:59:58", "2031-05-20 18:00:00", T, T, T, T, "138****0001" + T, "-5.80",
     "-5.80", "0.00", "0.00", "0.00", "0.00", "0.00", T, "0.00", "0.00", "refund-01" + T,
     "0.00", "0.00", T),
    ("2031052022001400000000000002" + T, "gift-0002" + T, "交易" + T, "捐赠" + T,
     "2031-05-20 23:00:00", "2031-05-20 23:59:59", T, T, T, T, "ali***@example.com" + T,
     "0.01", "0.01", "0.00", "0.00", "0.00", "0.00", "0.00", T, "0.00", "0.00", T, "0.00",
     "0.00", T),
)
BILL = "\n".join((
    "#支付宝业务明细查询",
    "#账号：[20880000000000000156]",
    "#起始日期：[2031年05月20日 00:00:00]   终止日期：[2031年05月21日 00:00:00]",
    "#" + "-" * 41 + "业务明细列表" + "-" * 40,
    BILL_HEADER,
    *(",".join(row) for row in BILL_ROWS),
    "#" + "-" * 41 + "业务明细列表结束" + "-" * 36,
    "#交易合计：2笔，商家实收共35.81元，商家优惠共0.00元",
    "#退款合计：1笔，商家实收共-5.80元，商家优惠共0.00元",
    "#导出时间：[2031年05月21日 09:12:00]",
)) + "\n"


def test_the_bill_parser_reads_alipays_business_detail() -> None:
    lines = parse_trade_bill(BILL.replace("\n", "\r\n").encode("gbk"))
    assert [(x.kind, x.out_trade_no, x.provider_txn_id, x.amount_fen, x.out_refund_no)
            for x in lines] == [
        (BillKind.PAYMENT, "gift-0001", "2031052022001400000000000001", 3580, None),
        (BillKind.REFUND, "gift-0001", "2031052022001400000000000001", 580, "refund-01"),
        (BillKind.PAYMENT, "gift-0002", "2031052022001400000000000002", 1, None),
    ]
    assert {x.merchant_id for x in lines} == {"20880000000000000156"}
    assert lines[1].happened_at == dt.datetime(2031, 5, 20, 10, 0, tzinfo=dt.UTC)
    # Added columns, ASCII parentheses and no account line (the route's merchant then).
    variant = "\n".join(
        line.replace("（元）", "(元)").replace(",备注", ",备注,实收净额(元)")
        .replace(",0.00,0.00,\t\n", ",0.00,0.00,\t,35.80\n")
        for line in BILL.splitlines(keepends=True) if not line.startswith("#账号"))
    again = parse_trade_bill(variant.encode("gbk"), merchant_id="2088123412341234")
    assert [(x.kind, x.amount_fen) for x in again] == [(x.kind, x.amount_fen) for x in lines]
    assert {x.merchant_id for x in again} == {"2088123412341234"}


@pytest.mark.parametrize(("change", "message"), [
    (lambda b: b.replace(",交易\t,\"善举", ",分账\t,\"善举"), "line 6 is a 分账 line"),
    (lambda b: b.replace("35.80,35.80", "35.801,35.80"), "line 6 has a malformed amount"),
    (lambda b: b.replace("2031-05-20 23:59:59", "2031-05-20 24:00:00"),
     "line 8 has a malformed amount or time"),
    (lambda b: b.replace("支付宝交易号,", "交易号,"), "line 5 is not its header"),
    (lambda b: b.replace(",138****0001\t,35.80", ",35.80"), "line 6 has 24 cells, not 25"),
    (lambda b: b.replace("#账号：[20880000000000000156]\n", ""), "names no account"),
])
def test_the_bill_parser_refuses_what_it_does_not_know(change: Callable[[str], str],
                                                       message: str) -> None:
    with pytest.raises(GatewayError) as caught:
        parse_trade_bill(change(BILL).encode("gbk"))
    assert caught.value.code == "payment_bill_malformed" and not caught.value.retryable
    assert message in str(caught.value)


def test_the_bill_zip_is_found_by_its_content() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("20880000000000000156_20310520_业务明细(汇总).csv",
                         "#支付宝业务汇总查询\r\n#账号：[20880000000000000156]\r\n".encode("gbk"))
        archive.writestr("a.csv", BILL.encode("gbk"))
    assert len(read_bill_zip(buffer.getvalue())) == 3
    with pytest.raises(GatewayError) as caught:
        read_bill_zip(b"PK not a zip")
    assert caught.value.code == "payment_bill_malformed"
    with pytest.raises(GatewayError) as caught:
        parse_trade_bill(b"\x80\xff\xfe")
    assert caught.value.code == "payment_bill_malformed"


# -- errors -----------------------------------------------------------------------------------

def test_an_unknown_merchant_token_is_not_retryable(world: World) -> None:
    stranger = MerchantRoute(provider="alipay", merchant_id="2088000000000001",
                             auth_token="203103BB0123456789abcdef0123456789abcdX07")
    for call in (lambda: world.gateway.create_payment(world.order(route=stranger)),
                 lambda: world.gateway.query_payment(out_trade_no="x", merchant=stranger)):
        with pytest.raises(GatewayError) as caught:
            call()
        assert caught.value.code == "payment_merchant_unknown" and not caught.value.retryable
        assert caught.value.params["sub_code"] == "aop.invalid-app-auth-token"
    for route in (MerchantRoute(provider="alipay", merchant_id="2088000000000001"),
                  MerchantRoute(provider="wechatpay", merchant_id="1900000001",
                                auth_token=world.merchant.auth_token)):
        with pytest.raises(GatewayError) as caught:
            world.gateway.query_payment(out_trade_no="x", merchant=route)
        # Refused before any call, as WeChat Pay's gateway refuses an unusable route.
        assert caught.value.code == "payment_request_invalid" and not caught.value.retryable


@pytest.mark.parametrize(("fault", "code", "retryable"), [
    ({"kind": "busy"}, "payment_provider_busy", True),
    ({"kind": "system_error"}, "payment_provider_busy", True),
    ({"kind": "http_500"}, "payment_provider_unreachable", True),
    ({"kind": "bad_sign"}, "payment_provider_unsigned", False),
])
def test_the_gateways_failures_say_whether_to_try_again(world: World, fault: dict[str, str],
                                                       code: str, retryable: bool) -> None:
    request = world.order()
    world.control("faults", {"api": [{**fault, "method": "alipay.trade.precreate"}]})
    with pytest.raises(GatewayError) as caught:
        world.gateway.create_payment(request)
    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    # One fault, once: the same order again goes through.
    assert world.gateway.create_payment(request).kind is ActionKind.QR


@pytest.mark.parametrize(("code", "sub_code", "ours"), [
    ("20000", "isp.unknow-error", "payment_provider_busy"),
    ("40004", "ACQ.SYSTEM_ERROR", "payment_provider_busy"),
    ("40004", "isp.bill_not_exist", "payment_bill_not_ready"),
    ("20001", "aop.invalid-app-auth-token", "payment_merchant_unknown"),
    ("40006", "isv.insufficient-isv-permissions", "payment_provider_auth_failed"),
    ("40002", "isv.invalid-signature", "payment_provider_auth_failed"),
    ("40002", "isv.invalid-app-id", "payment_provider_auth_failed"),
    ("40002", "isv.invalid-timestamp", "payment_provider_auth_failed"),
    ("40001", "isv.missing-method", "payment_provider_refused"),
    ("40002", "isv.invalid-parameter", "payment_provider_refused"),
    ("40004", "ACQ.TRADE_NOT_EXIST", "payment_order_unknown"),
    ("40004", "ACQ.TRADE_HAS_SUCCESS", "payment_order_conflict"),
    ("40004", "ACQ.TRADE_HAS_CLOSE", "payment_order_conflict"),
    ("40004", "ACQ.CONTEXT_INCONSISTENT", "payment_order_conflict"),
    ("40004", "ACQ.TRADE_STATUS_ERROR", "payment_order_conflict"),
    ("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "payment_refund_exceeds"),
    ("40004", "ACQ.SELLER_BALANCE_NOT_ENOUGH", "payment_refund_unfunded"),
    ("40004", "ACQ.INVALID_PARAMETER", "payment_provider_refused"),
    ("99999", "", "payment_provider_bad_answer"),
])
def test_alipays_answers_become_the_platforms_codes(code: str, sub_code: str,
                                                    ours: str) -> None:
    # The table of docs/payments-gateways.md, row by row; the emulator cannot make every one
    # of these answers (a seller's empty balance, a missing permission), so _error_of is read
    # directly here, and the tests above show the answers it can make going through it.
    error = _error_of({"code": code, "msg": "x", "sub_code": sub_code, "sub_msg": "说明"},
                      "alipay.trade.refund")
    assert error.code == ours
    assert error.params == {"method": "alipay.trade.refund", "code": code, "sub_code": sub_code,
                            "sub_msg": "说明"}


def test_a_slow_or_absent_gateway_is_retryable(world: World) -> None:
    impatient = AlipayGateway(world.config, now=world.emulator.now, timeout=0.3)
    world.control("faults", {"api": [{"kind": "slow", "seconds": 1.0}]})
    with pytest.raises(GatewayError) as caught:
        impatient.query_payment(out_trade_no="x", merchant=world.merchant.route())
    assert (caught.value.code, caught.value.retryable) == ("payment_provider_unreachable", True)
    closed = free_socket()
    port = closed.getsockname()[1]
    closed.close()
    nowhere = AlipayConfig(APP_ID, world.config.private_key_file, world.config.public_key_file,
                           gateway_url=f"http://127.0.0.1:{port}/gateway.do")
    with pytest.raises(GatewayError) as caught:
        AlipayGateway(nowhere).query_payment(out_trade_no="x", merchant=world.merchant.route())
    assert (caught.value.code, caught.value.retryable) == ("payment_provider_unreachable", True)


def test_requests_the_emulator_cannot_authenticate_are_refused(world: World,
                                                              tmp_path: Path) -> None:
    other_key = tmp_path / "other.key.pem"
    other_key.write_text(generate_key_pair().private_pem)
    cases = [
        (AlipayConfig(APP_ID, other_key, world.config.public_key_file, world.config.gateway_url),
         "isv.invalid-signature"),
        (AlipayConfig("2021999999999999", world.config.private_key_file,
                      world.config.public_key_file, world.config.gateway_url),
         "isv.invalid-app-id"),
    ]
    for config, sub_code in cases:
        with pytest.raises(GatewayError) as caught:
            AlipayGateway(config).query_payment(out_trade_no="x",
                                                merchant=world.merchant.route())
        # Our key or our app id: like WeChat Pay's SIGN_ERROR, only an operator can mend it.
        assert caught.value.code == "payment_provider_auth_failed" and not caught.value.retryable
        assert caught.value.params["sub_code"] == sub_code


def test_the_emulator_mounts_under_a_prefix(world: World) -> None:
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/payments/alipay"
    emulator, config = setup_emulator(base, world.key_dir, app_id=APP_ID)
    emulator.set_now(world.start)
    merchant = emulator.add_merchant("挂载测试")
    outer = Starlette(routes=[Mount("/payments/alipay", app=create_app(emulator))])
    gateway = AlipayGateway(config, now=emulator.now)
    with uvicorn_thread(outer, sock):
        request = world.order(merchant=merchant)
        action = gateway.create_payment(changed(request, notify_url=""))
        assert action.qr_text is not None and action.qr_text.startswith(f"{base}/emulator/pay/")
        assert requests.post(action.qr_text, timeout=10).status_code == 200
        found = gateway.query_payment(out_trade_no=request.out_trade_no, merchant=merchant.route())
        assert found is not None and found.state is PaymentState.PAID


def test_the_control_api_and_the_gateways_unsigned_errors(world: World) -> None:
    made = world.control("merchants", {"name": "控制台测试", "pid": "2088000011112222"})
    assert made["pid"] == "2088000011112222" and str(made["auth_token"]).endswith("X07")
    taken = requests.post(f"{world.base}/emulator/merchants",
                          json={"name": "again", "auth_token": made["auth_token"]}, timeout=10)
    assert taken.status_code == 409
    request = world.paid_order(buyer_id="2088000000009999")
    world.receiver.wait(lambda: bool(world.receiver.about(request.out_trade_no)))
    assert world.emulator.outbox.wait_idle(10)
    state = requests.get(f"{world.base}/emulator/state", timeout=10).json()
    [trade] = [t for t in state["trades"] if t["out_trade_no"] == request.out_trade_no]
    assert (trade["status"], trade["total_amount"], trade["buyer_id"]) == (
        "TRADE_SUCCESS", "12.34", "2088000000009999")
    assert state["now"] == world.start.isoformat()
    sent = requests.get(f"{world.base}/emulator/notifies", timeout=10).json()["notifies"]
    [mine] = [n for n in sent if n["out_trade_no"] == request.out_trade_no]
    assert mine["kind"] == "payment" and mine["deliveries"] == [[200]]
    assert mine["fields"]["seller_id"] == world.merchant.pid
    for path, body in (("faults", {"api": [{"kind": "meteor"}]}),
                       ("faults", {"callbacks": {"explode": True}}),
                       ("faults", {"callbacks": {"delay": "soon"}}),
                       ("clock", {"now": "2031-03-14T10:00:00"}),  # naive: refused
                       ("notifies/replay", {"notify_id": "nope"}),
                       (f"trades/{uuid.uuid4().hex}/pay", {})):
        refused = requests.post(f"{world.base}/emulator/{path}", json=body, timeout=10)
        assert refused.status_code in (400, 404), (path, refused.text)
    paid_again = requests.post(f"{world.base}/emulator/trades/{request.out_trade_no}/pay",
                               json={}, timeout=10)
    assert paid_again.status_code == 409

    # Before the caller is known, Alipay answers unsigned; the SDK refuses those as errors.
    no_method = requests.get(f"{world.base}/gateway.do?app_id={APP_ID}", timeout=10)
    assert no_method.json() == {"error_response": {
        "code": "40001", "msg": "Missing Required Arguments", "sub_code": "isv.missing-method",
        "sub_msg": "缺少方法名参数"}}
    unsigned = requests.get(f"{world.base}/gateway.do", params={
        "method": "alipay.trade.query", "app_id": APP_ID, "sign_type": "RSA2",
        "sign": base64.b64encode(b"x" * 256).decode()}, timeout=10).json()
    assert "sign" not in unsigned
    assert unsigned["alipay_trade_query_response"]["sub_code"] == "isv.invalid-signature"
