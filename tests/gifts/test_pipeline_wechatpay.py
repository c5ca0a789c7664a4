"""The gift pipeline through WeChat Pay (service-provider mode), on SQLite and PostgreSQL.

The production path end to end: the donor's checkout opens the order through the real
``wechatpayv3`` SDK against the emulator; the emulator's signed, encrypted notifications
arrive over HTTP at the platform's intake; the order query finds a payment whose callback
never came; refunds go out after their transaction commits and come back by callback or by
query. Every case ends with the ledger balanced, the transparency log verified and the gift
credited exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from shanju.core.db import Database
from shanju.core.mail import OutboxMessage
from shanju.gifts import api as gifts_api
from shanju.gifts import flows
from shanju.payments.emulators.outbox import Outbox
from shanju.payments.emulators.wechatpay import WeChatPayEmulator, create_app, setup
from shanju.payments.gateway import Gateway
from shanju.payments.models import ProviderEvent
from shanju.payments.wechatpay import WeChatPayGateway
from tests.gifts.pipeline import Platform, serve_platform
from tests.serving import free_socket, uvicorn_thread

SUB = "1900000109"
OTHER_SUB = "1900000110"
OPENID = "oPayerOfThePipelineTest00000001"


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The emulator's keys, made by the module's first setup() and kept for the others."""
    return tmp_path_factory.mktemp("wechatpay-keys")


class World:
    def __init__(self, platform: Platform, emulator: WeChatPayEmulator) -> None:
        self.platform = platform
        self.emulator = emulator

    def checkout(self, amount_fen: int = 1234, key: str = "k1") -> str:
        answer = self.platform.give("wechat_h5", amount_fen=amount_fen, key=key)
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
        """Every callback the emulator sent has been answered."""
        self.emulator.outbox.wait_idle()

    def credited_once(self, order_id: str) -> None:
        assert self.platform.credits(order_id) == 1
        assert self.platform.intent(order_id).status.value == "succeeded"
        assert self.platform.donation(order_id).status.value == "paid"
        self.platform.books_are_sound()


@pytest.fixture
def world(db: Database, tmp_path: Path, key_dir: Path) -> Iterator[World]:
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    emulator, config = setup(base, key_dir, sub_merchants={SUB: "绿水青山公益基金会",
                                                           OTHER_SUB: "春苗助学中心"},
                             outbox=Outbox(retry_delays=(0.05, 0.05)))

    def gateways(_platform_url: str) -> dict[str, Gateway]:
        return {"wechatpay": WeChatPayGateway(config)}

    with uvicorn_thread(create_app(emulator), sock), serve_platform(
            db, tmp_path, gateways=gateways,
            merchants={"wechatpay": {"merchant_id": SUB}}) as platform:
        yield World(platform, emulator)
        emulator.outbox.wait_idle()


def test_a_donor_pays_on_the_h5_page_and_the_gift_is_credited_once(world: World) -> None:
    order_id = world.checkout()
    paid = world.phone_pays()
    assert paid.status_code == 303
    assert paid.headers["location"] == f"{world.platform.url}/gifts/orders/{order_id}"
    world.settle()
    world.credited_once(order_id)
    intent = world.platform.intent(order_id)
    assert intent.merchant_id == SUB and intent.provider_txn_id
    assert len(intent.payer_hash) == 32 and OPENID not in intent.payer_hash
    assert world.platform.outcomes(order_id) == ["credited"]
    assert world.platform.order(order_id)["status"] == "succeeded"
    # Nothing of the payer's identity is stored in the clear.
    stored = json.dumps(world.platform.read(
        lambda s: [e.payload for e in s.scalars(select(ProviderEvent))]), ensure_ascii=False)
    assert OPENID not in stored and order_id in stored


def test_a_retried_checkout_opens_the_same_order(world: World) -> None:
    first = world.checkout(key="same")
    again = world.platform.give("wechat_h5", key="same")
    assert again.status_code == 201 and again.json()["order_id"] == first
    other = world.platform.give("wechat_h5", amount_fen=999, key="same")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_duplicate_callbacks_credit_once(world: World) -> None:
    world.emulator.set_faults(callbacks={"duplicates": 3})
    order_id = world.checkout()
    world.phone_pays()
    world.settle()
    world.credited_once(order_id)
    assert world.platform.outcomes(order_id) == ["credited"]  # the copies: same event id


def test_the_donor_back_before_the_callback_finds_the_gift_paid(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.emulator.set_faults(callbacks={"hold": True})
    order_id = world.checkout()
    world.phone_pays()
    # Back on the platform first: the order is still open here, so the provider is asked.
    monkeypatch.setattr(gifts_api, "QUERY_AFTER", dt.timedelta(0))
    assert world.platform.order(order_id)["status"] == "succeeded"
    assert world.emulator.release() == 1
    world.settle()
    world.credited_once(order_id)
    assert world.platform.outcomes(order_id) == ["credited", "already_applied"]


def test_a_callback_that_never_comes_is_found_by_the_order_query(world: World) -> None:
    world.emulator.set_faults(callbacks={"drop": True})
    order_id = world.checkout()
    world.phone_pays()
    world.settle()
    assert world.platform.intent(order_id).status.value == "requires_payment"
    app = world.platform.app
    applied = flows.settle_by_query(
        database=world.platform.db, gateway=app.state.providers.gateway("wechatpay"),
        intent_id=order_id,
        secret_key="test-secret", hash_payer=app.state.orders.payer_hash)
    assert applied is not None and applied.outcome == "credited"
    world.credited_once(order_id)


def test_a_forged_callback_is_refused_and_changes_nothing(world: World) -> None:
    order_id = world.checkout()
    forged = json.dumps({"id": "forged-1", "event_type": "TRANSACTION.SUCCESS",
                         "resource": {"out_trade_no": order_id}}).encode()
    answer = requests.post(f"{world.platform.url}/api/v1/payments/notify/wechatpay",
                           data=forged, headers={
                               "Content-Type": "application/json",
                               "Wechatpay-Timestamp": "1700000000", "Wechatpay-Nonce": "n",
                               "Wechatpay-Signature": "Zm9yZ2Vk",
                               "Wechatpay-Serial": "PUB_KEY_ID_0000000000000000000000000000"},
                           timeout=10)
    assert answer.status_code >= 400 and answer.json()["code"] == "FAIL"
    assert world.platform.outcomes(order_id) == []
    assert world.platform.intent(order_id).status.value == "requires_payment"


def test_a_wrong_amount_or_merchant_is_recorded_and_not_credited(world: World) -> None:
    order_id = world.checkout(amount_fen=10000)
    world.emulator.notify(order_id, amount_fen=1)
    world.settle()
    world.emulator.notify(order_id, as_sub_mchid=OTHER_SUB)
    world.settle()
    assert world.platform.outcomes(order_id) == ["amount_mismatch", "wrong_merchant"]
    assert world.platform.intent(order_id).status.value == "requires_payment"
    assert world.platform.donation(order_id).status.value == "pending"
    world.platform.books_are_sound()


def test_a_replayed_callback_changes_nothing(world: World) -> None:
    order_id = world.checkout()
    world.phone_pays()
    world.settle()
    [sent] = world.emulator.callbacks()["sent"]
    event_id = sent["event_id"]
    world.emulator.replay(event_id)                    # the same bytes again: a duplicate
    world.emulator.replay(event_id, age_seconds=3600)  # an hour-old capture: refused
    world.settle()
    world.credited_once(order_id)
    assert world.platform.outcomes(order_id) == ["credited"]


def test_partial_then_full_refund_by_callback(world: World) -> None:
    order_id = world.checkout(amount_fen=10000)
    world.phone_pays()
    world.settle()
    world.emulator.set_faults(refunds="manual")
    first = world.platform.refund(order_id, 3000)
    assert first.status_code == 201, first.text
    [pending] = world.platform.refunds(order_id)
    assert pending.status.value == "pending" and pending.provider_refund_id
    world.emulator.settle_refund(pending.id)
    world.settle()
    second = world.platform.refund(order_id, None)
    assert second.status_code == 201, second.text
    rest = world.platform.refunds(order_id)[1]
    world.emulator.settle_refund(rest.id)
    world.settle()
    assert [(r.amount_fen, r.status.value) for r in world.platform.refunds(order_id)] == [
        (3000, "succeeded"), (7000, "succeeded")]
    assert world.platform.donation(order_id).status.value == "refunded"
    assert world.platform.credits(order_id) == 1
    world.platform.books_are_sound()


def test_a_lost_refund_callback_is_settled_by_the_refund_query(world: World) -> None:
    order_id = world.checkout(amount_fen=5000)
    world.phone_pays()
    world.settle()
    world.emulator.set_faults(refunds="manual", callbacks={"drop": True})
    assert world.platform.refund(order_id, None).status_code == 201
    [pending] = world.platform.refunds(order_id)
    world.emulator.settle_refund(pending.id)
    world.settle()
    assert world.platform.refunds(order_id)[0].status.value == "pending"
    app = world.platform.app
    applied = flows.settle_refund_by_query(
        database=world.platform.db, gateway=app.state.providers.gateway("wechatpay"),
        refund_id=pending.id, secret_key="test-secret", hash_payer=app.state.orders.payer_hash)
    assert applied is not None and applied.outcome == "refunded"
    assert world.platform.refunds(order_id)[0].status.value == "succeeded"
    assert world.platform.donation(order_id).status.value == "refunded"
    world.platform.books_are_sound()


def test_a_refund_the_provider_refuses_fails_and_the_money_stays_with_the_project(
        world: World) -> None:
    order_id = world.checkout(amount_fen=8000)
    world.phone_pays()
    world.settle()
    # WeChat Pay refuses the refund for good (a signed 400 INVALID_REQUEST: e.g. the order is
    # past the year in which it may be refunded).
    world.emulator.set_faults(api={"fail_next": 1, "status": 400, "code": "INVALID_REQUEST",
                                   "message": "订单已超过退款期限"})
    assert world.platform.refund(order_id, None).status_code == 201
    [refund] = world.platform.refunds(order_id)
    assert refund.status.value == "failed"
    assert world.platform.outcomes(order_id)[-1] == "refund_failed"
    assert world.platform.donation(order_id).status.value == "paid"
    assert world.platform.intent(order_id).refunded_fen == 0
    world.platform.books_are_sound()
    # The donor can still be refunded later (the reservation was released).
    assert world.platform.refund(order_id, 2000).status_code == 201


PHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"


def test_a_guest_gives_on_the_page_and_signing_up_later_claims_the_gift(world: World) -> None:
    url = world.platform.url
    phone = requests.Session()
    phone.headers["User-Agent"] = PHONE_UA
    form = phone.get(f"{url}/projects/{world.platform.project_id}/donate", timeout=10)
    assert form.status_code == 200 and 'name="contact"' in form.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', form.text)
    assert token and key
    # An invalid contact is a readable form error, and nothing is written.
    refused = phone.post(f"{url}/gifts/give", data={
        "csrf_token": token.group(1), "project_id": world.platform.project_id,
        "amount": "20", "contact": "not-a-phone", "method": "wechatpay",
        "idempotency_key": key.group(1)}, allow_redirects=False, timeout=30)
    assert refused.status_code == 422 and 'data-code="contact_invalid"' in refused.text
    gave = phone.post(f"{url}/gifts/give", data={
        "csrf_token": token.group(1), "project_id": world.platform.project_id,
        "amount": "20", "donor_name": "路人甲", "contact": " Guest@Example.org ",
        "method": "wechatpay", "idempotency_key": key.group(1)},
        allow_redirects=False, timeout=30)
    assert gave.status_code == 303, gave.text
    world.pay_url = gave.headers["location"]
    paid = world.phone_pays()
    thanks = paid.headers["location"]
    order_id = thanks.split("/gifts/orders/")[1].split("?")[0]
    world.settle()
    world.credited_once(order_id)
    assert world.platform.intent(order_id).donor_id is None
    # The thank-you page opens with the link's key, and not without it.
    page = phone.get(thanks, timeout=30)
    assert page.status_code == 200 and 'data-status="paid"' in page.text
    assert phone.get(f"{url}/gifts/orders/{order_id}", timeout=30).status_code == 404
    assert phone.get(f"{url}/gifts/orders/{order_id}?k={'0' * 32}", timeout=30).status_code == 404
    # Sign up with that email: the gift becomes the account's.
    signup = requests.post(f"{url}/api/v1/users", json={
        "email": "guest@example.org", "password": "correct horse battery staple 42",
        "display_name": "路人甲", "role": "donor"}, timeout=30)
    assert signup.status_code == 202, signup.text
    body = world.platform.read(lambda s: s.scalars(
        select(OutboxMessage.body).where(OutboxMessage.to_address == "guest@example.org")
        .order_by(OutboxMessage.id.desc())).first())
    link = re.search(r"/signup/confirm/([A-Za-z0-9_-]+)", body or "")
    assert link, body
    made = requests.post(f"{url}/api/v1/users/confirm", json={"token": link.group(1)},
                         timeout=30)
    assert made.status_code == 201, made.text
    user_id = made.json()["id"]
    assert world.platform.intent(order_id).donor_id == user_id
    assert world.platform.donation(order_id).donor_id == user_id


def test_a_desktop_gets_a_code_to_scan(world: World) -> None:
    url = world.platform.url
    desktop = requests.Session()
    desktop.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"
    form = desktop.get(f"{url}/projects/{world.platform.project_id}/donate", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    page = desktop.post(f"{url}/gifts/give", data={
        "csrf_token": token.group(1), "project_id": world.platform.project_id,
        "amount": "50", "method": "wechatpay", "idempotency_key": "desk-1"},
        allow_redirects=False, timeout=30)
    assert page.status_code == 200, page.text
    assert 'id="scan-to-pay"' in page.text and "<svg" in page.text
    order_id = re.search(r'data-order="(pi_[A-Za-z0-9]+)"', page.text)
    assert order_id
    intent = world.platform.intent(order_id.group(1))
    assert intent.channel == "wechat_native" and intent.amount_fen == 5000
    # The emulator's code is a web page: the desktop may open it instead of scanning.
    link = re.search(r'id="open-pay-page" href="([^"]+)"', page.text)
    assert link and link.group(1).startswith("http://127.0.0.1:")


def test_a_gift_is_wholly_refunded_only_when_its_refunds_succeeded(world: World) -> None:
    """Two partial refunds pending; the second succeeds first: the gift is not refunded yet —
    the first may still fail (found by the pipeline's property test)."""
    order_id = world.checkout(amount_fen=10000)
    world.phone_pays()
    world.settle()
    world.emulator.set_faults(refunds="manual")
    assert world.platform.refund(order_id, 3000).status_code == 201
    assert world.platform.refund(order_id, 7000).status_code == 201
    first, second = world.platform.refunds(order_id)
    world.emulator.settle_refund(second.id)
    world.settle()
    assert world.platform.donation(order_id).status.value == "paid"
    world.emulator.settle_refund(first.id, "ABNORMAL")
    world.settle()
    assert [(r.amount_fen, r.status.value) for r in world.platform.refunds(order_id)] == [
        (3000, "failed"), (7000, "succeeded")]
    assert world.platform.donation(order_id).status.value == "paid"
    assert world.platform.intent(order_id).refunded_fen == 7000
    world.platform.books_are_sound()
