"""The intake's pieces (``gifts/intake.py``): which verified reports go to the engine with
their notification, and the grouped reads of orders (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import threading
from typing import Any

import pytest

from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.gifts import intake
from shanju.payments.gateway import PaymentReport, PaymentState, RefundReport, RefundState
from shanju.payments.models import IntentStatus, PaymentIntent
from tests.factories import make_campaign, make_org, make_project, make_user


@pytest.fixture
def report() -> PaymentReport:
    """A verified report of the order's payment, an hour before the test's now."""
    paid_at = utcnow().replace(second=0, microsecond=0) - dt.timedelta(hours=1)
    return PaymentReport(
        provider="wechatpay", out_trade_no="pi_order", state=PaymentState.PAID,
        amount_fen=5000, merchant_id="1900000109", provider_txn_id="4200", paid_at=paid_at,
        payer_id="oPayer", event_id="ev-1", raw={
            "out_trade_no": "pi_order", "payer": {"sp_openid": "oPayer"},
            "transaction_id": "4200"})


# _ORDER_COLUMNS without the id: provider, merchant, amount, status, campaign, project, donor,
# name, anonymous, message, province, transaction id, payer hash, paid at.
ROW = ("wechatpay", "1900000109", 5000, "requires_payment", 7, 8, 9, "小林", 0, "加油", "广东",
       None, "", None)


def hashed(payer: str) -> str:
    return f"h({payer})"


def test_a_paid_giving_day_order_becomes_a_gift_with_its_notification(
        report: PaymentReport) -> None:
    gift = intake.peak_gift(ROW, report, order_id="pi_order", hash_payer=hashed)
    assert gift is not None and gift.notice is not None
    assert (gift.campaign_id, gift.project_id, gift.donor_id, gift.amount_fen) == (7, 8, 9, 5000)
    assert (gift.provider_txn_id, gift.payer_hash, gift.paid_at) == ("4200", "h(oPayer)",
                                                                     report.paid_at)
    assert (gift.notice.event_id, gift.notice.event_type) == ("ev-1", "payment.paid")
    stored = json.loads(gift.notice.payload)
    assert stored == {"out_trade_no": "pi_order", "transaction_id": "4200"}  # no payer


def test_an_order_paid_before_keeps_what_it_recorded(report: PaymentReport) -> None:
    assert report.paid_at is not None
    stored_at = report.paid_at - dt.timedelta(minutes=1)
    paid = (*ROW[:3], "succeeded", *ROW[4:11], "4199", "h(first)", stored_at)
    gift = intake.peak_gift(paid, report, order_id="pi_order", hash_payer=hashed)
    assert gift is not None
    assert (gift.provider_txn_id, gift.payer_hash, gift.paid_at) == ("4199", "h(first)",
                                                                     stored_at)
    as_sqlite = (*paid[:13], stored_at.strftime("%Y-%m-%d %H:%M:%S.%f"))
    gift = intake.peak_gift(as_sqlite, report, order_id="pi_order", hash_payer=hashed)
    assert gift is not None and gift.paid_at == stored_at


@pytest.mark.parametrize("change", [
    {"row": None},                                           # unknown order
    {"row": (*ROW[:4], None, *ROW[5:])},                     # an ordinary gift
    {"row": ("alipay", *ROW[1:])},                           # another provider's order
    {"report": {"merchant_id": "1900000110"}},               # wrong sub-merchant
    {"report": {"amount_fen": 1}},                           # wrong amount
    {"report": {"state": PaymentState.NOT_PAID}},
    {"report": {"state": PaymentState.REFUNDED}},
])
def test_anything_else_keeps_its_own_transaction(change: dict[str, Any],
                                                 report: PaymentReport) -> None:
    row = change.get("row", ROW)
    changed = dataclasses.replace(report, **change.get("report", {}))
    assert intake.peak_gift(row, changed, order_id="pi_order", hash_payer=hashed) is None


def test_a_refund_report_is_never_a_gift() -> None:
    refund = RefundReport(provider="wechatpay", out_refund_no="re_1", out_trade_no="pi_order",
                          state=RefundState.SUCCEEDED, amount_fen=5000,
                          merchant_id="1900000109")
    assert intake.peak_gift(ROW, refund, order_id="pi_order", hash_payer=hashed) is None


def orders(db: Database, n: int) -> list[str]:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        donor = make_user(s)
        ids = [f"pi_reader{i:012d}" for i in range(n)]
        for i, order_id in enumerate(ids):
            s.add(PaymentIntent(
                id=order_id, provider="wechatpay", amount_fen=100 + i,
                idempotency_scope="user:1", idempotency_key=order_id, request_hash="x" * 64,
                merchant_id="1900000109", project_id=project.id, campaign_id=campaign.id,
                donor_id=donor.id, donor_name="小林", status=IntentStatus.REQUIRES_PAYMENT))
    return ids


def test_orders_asked_for_during_a_read_are_read_together_by_the_next(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = orders(db, 5)
    reads: list[list[str]] = []
    real = intake.read_orders
    gate = threading.Event()

    def read_orders(database: Database, order_ids: list[str]) -> dict[str, Any]:
        reads.append(sorted(order_ids))
        if len(reads) == 1:
            gate.wait(10)  # the first read lasts until the others have asked
        return real(database, order_ids)

    monkeypatch.setattr(intake, "read_orders", read_orders)
    reader = intake.OrderReader(db)

    async def ask() -> list[Any]:
        first = asyncio.ensure_future(reader.get(ids[0]))
        await asyncio.sleep(0)  # its read is under way
        rest = [asyncio.ensure_future(reader.get(i)) for i in [*ids[1:], "pi_nosuch", ids[1]]]
        await asyncio.sleep(0)  # they have asked, and wait
        gate.set()
        return [await first, *[await r for r in rest]]

    rows = asyncio.run(ask())
    assert reads == [[ids[0]], sorted([*ids[1:], "pi_nosuch"])]
    assert [None if r is None else r[2] for r in rows] == [100, 101, 102, 103, 104, None, 101]
    assert rows[0][:2] == ("wechatpay", "1900000109") and rows[0][3] == "requires_payment"


def test_a_failed_read_fails_its_requests_and_the_next_read_runs(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = orders(db, 2)
    real = intake.read_orders
    calls: list[int] = []

    def flaky(database: Database, order_ids: list[str]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return real(database, order_ids)

    monkeypatch.setattr(intake, "read_orders", flaky)
    reader = intake.OrderReader(db)

    async def ask() -> tuple[BaseException | None, Any]:
        failed: BaseException | None = None
        try:
            await reader.get(ids[0])
        except RuntimeError as exc:
            failed = exc
        return failed, await reader.get(ids[1])

    failed, row = asyncio.run(ask())
    assert isinstance(failed, RuntimeError) and row is not None and row[2] == 101
