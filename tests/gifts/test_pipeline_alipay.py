"""The gift pipeline through Alipay (ISV: the platform's application acting for the charity's
merchant with its app_auth_token), on SQLite and PostgreSQL.

The production path end to end, as for WeChat Pay (test_pipeline_wechatpay.py): the donor's
checkout signs the wap order with the real ``python-alipay-sdk``; the phone follows it to the
emulator's cashier and pays; the emulator's RSA2-signed notifies arrive as form POSTs at the
platform's intake, which answers Alipay's ``success`` / ``fail``; the order query
(``alipay.trade.query``) finds a payment whose notify never came; refunds go out after their
transaction commits and Alipay answers them at once (``alipay.trade.refund``), its refund
notify saying only the refunded total, and a refund whose answer was lost is settled by the
refund query. Every case ends with the ledger balanced, the transparency log verified and the
gift credited exactly once.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import select

from shanju.core.clock import CHINA_TZ
from shanju.core.db import Database
from shanju.gifts import api as gifts_api
from shanju.gifts import flows
from shanju.payments.alipay import AlipayGateway
from shanju.payments.models import ProviderEvent
from shanju.payments.providers import Providers
from tests.gifts.providers import (
    ALIPAY_APP_ID,
    BUYER_ID,
    OTHER_PID,
    AlipayWorld,
    alipay_world,
    wait_for,
)
from tests.organizations.helpers import PID, TOKEN


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The platform application's and the emulated Alipay's key pairs, made once."""
    return tmp_path_factory.mktemp("alipay-keys")


@pytest.fixture
def world(db: Database, tmp_path: Path, key_dir: Path) -> Iterator[AlipayWorld]:
    with alipay_world(db, tmp_path, key_dir) as w:
        yield w


def credited_once(world: AlipayWorld, order_id: str) -> None:
    assert world.platform.credits(order_id) == 1
    assert world.platform.intent(order_id).status.value == "succeeded"
    assert world.platform.donation(order_id).status.value == "paid"
    world.platform.books_are_sound()


def intake(world: AlipayWorld, fields: dict[str, str]) -> requests.Response:
    """POST a notify to the platform's Alipay intake, as Alipay does (a UTF-8 form)."""
    return requests.post(f"{world.platform.url}/api/v1/payments/notify/alipay",
                         data=urlencode(fields).encode(), timeout=10, headers={
                             "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})


def test_a_donor_pays_on_the_wap_page_and_the_gift_is_credited_once(world: AlipayWorld
                                                                    ) -> None:
    order_id = world.checkout()
    # The signed order carries the merchant's authorization and comes back to the platform.
    assert "app_auth_token=" + TOKEN in world.pay_url
    paid = world.phone_pays()
    assert paid.status_code == 303
    back = paid.headers["location"]
    assert back.startswith(f"{world.platform.url}/gifts/orders/{order_id}?")
    world.settle()
    credited_once(world, order_id)
    intent = world.platform.intent(order_id)
    assert intent.provider == "alipay" and intent.merchant_id == PID
    assert intent.provider_txn_id and intent.channel == "alipay_wap"
    assert len(intent.payer_hash) == 32 and BUYER_ID not in intent.payer_hash
    assert world.platform.outcomes(order_id) == ["credited"]
    [notify] = world.notifies("payment")
    assert world.answers(notify) == [[200]]  # "success": Alipay stops at once
    assert world.platform.order(order_id)["status"] == "succeeded"
    # Nothing of the payer's identity is stored in the clear.
    stored = json.dumps(world.platform.read(
        lambda s: [e.payload for e in s.scalars(select(ProviderEvent))]), ensure_ascii=False)
    assert BUYER_ID not in stored and "buyer_logon_id" not in stored and order_id in stored


def test_a_retried_checkout_opens_the_same_order(world: AlipayWorld) -> None:
    first = world.checkout(key="same")
    world.phone_opens()  # the trade exists at Alipay now
    again = world.platform.give("alipay_wap", key="same")
    assert again.status_code == 201 and again.json()["order_id"] == first
    # The same order signed again: Alipay takes it as the same trade (same amount, subject).
    world.pay_url = again.json()["pay"]["url"]
    assert world.phone_pays().status_code == 303
    assert len(world.emulator.trades) == 1
    other = world.platform.give("alipay_wap", amount_fen=999, key="same")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    world.settle()
    credited_once(world, first)


def test_duplicate_notifies_credit_once(world: AlipayWorld) -> None:
    world.emulator.outbox.set_faults(duplicates=3)
    order_id = world.checkout()
    world.phone_pays()
    world.settle()
    credited_once(world, order_id)
    # Four deliveries of one notify_id: one event stored, every copy answered "success".
    assert world.platform.outcomes(order_id) == ["credited"]
    [notify] = world.notifies("payment")
    assert world.answers(notify) == [[200]] * 4


def test_the_donor_back_before_the_notify_finds_the_gift_paid(
        world: AlipayWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    world.emulator.outbox.set_faults(hold=True)
    order_id = world.checkout()
    world.phone_pays()
    # Back on the platform first: the order is still open here, so Alipay is asked.
    monkeypatch.setattr(gifts_api, "QUERY_AFTER", dt.timedelta(0))
    assert world.platform.order(order_id)["status"] == "succeeded"
    credited_once(world, order_id)
    assert world.emulator.outbox.release() == 1
    world.settle()
    credited_once(world, order_id)
    assert world.platform.outcomes(order_id) == ["credited", "already_applied"]
    # The query and the notify name the same payer: one hash, whichever came first.
    assert world.platform.intent(order_id).payer_hash == (
        world.platform.app.state.orders.payer_hash(BUYER_ID))


def test_a_notify_that_never_comes_is_found_by_the_order_query(world: AlipayWorld) -> None:
    world.emulator.outbox.set_faults(drop=True)
    order_id = world.checkout()
    app = world.platform.app

    def query() -> flows.Applied | None:
        return flows.settle_by_query(
            database=world.platform.db, gateway=world.gateway(), intent_id=order_id,
            secret_key="test-secret", hash_payer=app.state.orders.payer_hash)

    # Not opened at Alipay yet (a wap trade exists once the payer is in the cashier).
    assert query() is None
    world.phone_opens()
    assert query() is not None and world.platform.outcomes(order_id) == ["not_paid"]
    world.phone_pays()
    world.settle()
    assert world.platform.intent(order_id).status.value == "requires_payment"
    applied = query()
    assert applied is not None and applied.outcome == "credited"
    assert query() is None  # no longer open: nothing to ask
    credited_once(world, order_id)
    assert world.platform.outcomes(order_id) == ["not_paid", "credited"]


def test_a_forged_notify_is_refused_with_fail_and_changes_nothing(world: AlipayWorld) -> None:
    order_id = world.checkout()
    world.phone_opens()
    now = dt.datetime.now(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    fields = {
        "notify_time": now, "notify_type": "trade_status_sync", "notify_id": "forged0001",
        "charset": "utf-8", "version": "1.0", "app_id": ALIPAY_APP_ID,
        "trade_no": "2099010122001400000000000001", "out_trade_no": order_id,
        "seller_id": PID, "trade_status": "TRADE_SUCCESS", "total_amount": "12.34",
        "gmt_payment": now, "buyer_id": BUYER_ID, "sign_type": "RSA2"}
    # Signed by someone else's key, exactly as Alipay signs.
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    content = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "sign_type")
    signature = base64.b64encode(attacker.sign(content.encode(), padding.PKCS1v15(),
                                               hashes.SHA256())).decode()
    for body in ({**fields, "sign": signature}, fields):  # a wrong signature; none at all
        answer = intake(world, body)
        assert (answer.status_code, answer.text) == (400, "fail")
    # Alipay's signature, but over a notify for another application: refused on every retry.
    trade = world.emulator.find_trade(order_id)
    other_app = world.emulator.forge(trade, app_id="2021000000009999")
    world.settle()
    assert world.answers(other_app) == [[400, 400, 400]]
    assert world.platform.outcomes(order_id) == []
    assert world.platform.intent(order_id).status.value == "requires_payment"
    assert world.platform.donation(order_id).status.value == "pending"
    world.platform.books_are_sound()


def test_a_wrong_amount_or_seller_is_recorded_and_not_credited(world: AlipayWorld) -> None:
    world.emulator.outbox.set_faults(drop=True)  # the true notify is lost
    order_id = world.checkout(amount_fen=10000)
    world.phone_pays()
    world.settle()
    world.emulator.outbox.set_faults()
    trade = world.emulator.find_trade(order_id)
    # Notifies Alipay signed, saying another amount, then another merchant (seller_id).
    cheap = world.emulator.forge(trade, total_amount="0.01")
    world.settle()
    elsewhere = world.emulator.forge(trade, seller_id=OTHER_PID)
    world.settle()
    assert world.platform.outcomes(order_id) == ["amount_mismatch", "wrong_merchant"]
    # Recorded and answered "success" (a retry would say the same), nothing credited.
    assert world.answers(cheap) == [[200]] and world.answers(elsewhere) == [[200]]
    assert world.platform.intent(order_id).status.value == "requires_payment"
    assert world.platform.donation(order_id).status.value == "pending"
    world.platform.books_are_sound()
    # The order is not poisoned: the query finds the true payment and credits it once.
    app = world.platform.app
    applied = flows.settle_by_query(
        database=world.platform.db, gateway=world.gateway(), intent_id=order_id,
        secret_key="test-secret", hash_payer=app.state.orders.payer_hash)
    assert applied is not None and applied.outcome == "credited"
    credited_once(world, order_id)


def test_a_replayed_notify_changes_nothing(world: AlipayWorld) -> None:
    order_id = world.checkout()
    world.phone_pays()
    world.settle()
    [notify] = world.notifies("payment")
    world.emulator.replay(notify.notify_id)       # the same bytes again: a duplicate
    world.settle()
    # A day later (Alipay retries for 25 hours), the capture is too old: refused.
    world.emulator.advance(dt.timedelta(hours=26))
    world.emulator.replay(notify.notify_id)
    world.settle()
    assert world.answers(notify) == [[200], [200], [400, 400, 400]]
    credited_once(world, order_id)
    assert world.platform.outcomes(order_id) == ["credited"]


def test_partial_then_full_refund(world: AlipayWorld) -> None:
    order_id = world.checkout(amount_fen=10000)
    world.phone_pays()
    world.settle()
    first = world.platform.refund(order_id, 3000)
    assert first.status_code == 201, first.text
    # Alipay answered the refund at once (fund_change Y): settled after the commit.
    assert [(r.amount_fen, r.status.value) for r in world.platform.refunds(order_id)] == [
        (3000, "succeeded")]
    world.settle()
    assert world.platform.donation(order_id).status.value == "paid"
    second = world.platform.refund(order_id, None)
    assert second.status_code == 201, second.text
    world.settle()
    refunds = world.platform.refunds(order_id)
    assert [(r.amount_fen, r.status.value) for r in refunds] == [
        (3000, "succeeded"), (7000, "succeeded")]
    assert world.platform.donation(order_id).status.value == "refunded"
    assert world.platform.intent(order_id).refunded_fen == 10000
    assert world.platform.credits(order_id) == 1
    # Each refund applied once: by Alipay's answer or by its notify, whichever came first.
    assert Counter(world.platform.outcomes(order_id)) == {
        "credited": 1, "refunded": 2, "already_applied": 2}
    # The refund notifies state only refunded totals (refund_fee), keyed by out_biz_no.
    notified = [(n.fields["out_biz_no"], n.fields["refund_fee"], n.fields["trade_status"])
                for n in world.notifies("refund")]
    assert notified == [(refunds[0].id, "30.00", "TRADE_SUCCESS"),
                        (refunds[1].id, "100.00", "TRADE_CLOSED")]
    world.platform.books_are_sound()


def test_a_refund_whose_answer_and_notify_are_lost_is_settled_by_the_refund_query(
        world: AlipayWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    order_id = world.checkout(amount_fen=5000)
    world.phone_pays()
    world.settle()
    # Alipay makes the refund but its answer comes after the platform stopped waiting (the
    # refund is sent by a gateway that waits 1 s; Alipay answers after 2 s), and its refund
    # notify is lost.
    gateway = world.gateway()
    assert isinstance(gateway, AlipayGateway)
    impatient = AlipayGateway(gateway.config, now=world.emulator.now, timeout=1.0)
    providers = world.platform.app.state.providers
    monkeypatch.setattr(world.platform.app.state, "providers", Providers(
        providers.get("sandbox"), gateways={**providers.gateways, "alipay": impatient}))
    world.emulator.outbox.set_faults(drop=True)
    faults = requests.post(f"{world.base}/emulator/faults", json={"api": [
        {"kind": "slow", "method": "alipay.trade.refund", "seconds": 2.0}]}, timeout=10)
    assert faults.status_code == 200
    assert world.platform.refund(order_id, None).status_code == 201
    [pending] = world.platform.refunds(order_id)
    assert pending.status.value == "pending"
    trade = world.emulator.find_trade(order_id)
    wait_for(lambda: pending.id in trade.refunds)  # done at Alipay
    world.settle()
    [lost] = world.notifies("refund")
    assert lost.callback in world.emulator.outbox.dropped
    assert world.platform.refunds(order_id)[0].status.value == "pending"
    app = world.platform.app
    applied = flows.settle_refund_by_query(
        database=world.platform.db, gateway=gateway, refund_id=pending.id,
        secret_key="test-secret", hash_payer=app.state.orders.payer_hash)
    assert applied is not None and applied.outcome == "refunded"
    assert world.platform.refunds(order_id)[0].status.value == "succeeded"
    assert world.platform.donation(order_id).status.value == "refunded"
    # Asked again (the sweep): nothing pending, nothing applied twice.
    assert flows.settle_refund_by_query(
        database=world.platform.db, gateway=gateway, refund_id=pending.id,
        secret_key="test-secret", hash_payer=app.state.orders.payer_hash) is None
    assert world.platform.credits(order_id) == 1
    world.platform.books_are_sound()
