"""The engine records the notifications that paid its gifts' orders (the peak intake,
``gifts/intake.py``): each provider event stored once, each payment order marked paid once, each
gift written once — under the same event twice in a batch or across batches, and one order
notified under two event ids. SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from shanju.campaigns.engine import OrderNotice, PaidGift, apply_batch
from shanju.campaigns.models import CampaignGift
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.ids import public_id
from shanju.ledger import service as ledger
from shanju.payments.models import IntentStatus, PaymentIntent, ProviderEvent
from tests.factories import make_campaign, make_org, make_pool, make_project, make_user


@dataclasses.dataclass
class Day:
    campaign_id: int
    project_id: int
    donor_id: int
    paid_at: dt.datetime  # when its orders were paid


@pytest.fixture
def day(db: Database) -> Day:
    # Paid an hour before the test's now, with microseconds (both databases must keep them).
    paid_at = utcnow().replace(microsecond=123456) - dt.timedelta(hours=1)
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=1_000_00, params={"ratio_num": 1})
        return Day(campaign.id, project.id, make_user(s).id, paid_at)


def open_order(db: Database, day: Day, amount_fen: int = 5_000,
               status: IntentStatus = IntentStatus.REQUIRES_PAYMENT,
               provider_txn_id: str | None = None) -> str:
    """A giving-day payment order as the checkout writes it (gifts.flows.open_order)."""
    order_id = public_id("pi")
    with db.transaction() as s:
        s.add(PaymentIntent(
            id=order_id, provider="wechatpay", amount_fen=amount_fen, status=status,
            idempotency_scope=f"user:{day.donor_id}", idempotency_key=order_id,
            request_hash="x" * 64, merchant_id="1900000109", project_id=day.project_id,
            campaign_id=day.campaign_id, channel="wechat_h5", donor_id=day.donor_id,
            donor_name="小林", message="加油", province="广东",
            provider_txn_id=provider_txn_id,
            succeeded_at=day.paid_at if status == IntentStatus.SUCCEEDED else None))
    return order_id


def notified(day: Day, order_id: str, event_id: str, *, txn: str = "4200000001",
             amount_fen: int = 5_000, payer_hash: str = "p" * 32) -> PaidGift:
    """What the intake submits for a verified TRANSACTION.SUCCESS of ``order_id``."""
    return PaidGift(
        order_id=order_id, campaign_id=day.campaign_id, project_id=day.project_id,
        donor_id=day.donor_id, donor_name="小林", anonymous=False, message="加油",
        province="广东", amount_fen=amount_fen, provider="wechatpay", provider_txn_id=txn,
        payer_hash=payer_hash, device_hash="", paid_at=day.paid_at,
        notice=OrderNotice(event_id=event_id, event_type="payment.paid",
                           payload=json.dumps({"out_trade_no": order_id, "trade_state":
                                               "SUCCESS", "transaction_id": txn})))


def batch(db: Database, gifts: list[PaidGift]) -> list[str]:
    with db.transaction() as s:
        return [r.outcome for r in apply_batch(s, gifts, worker="test")]


def events(db: Database) -> list[tuple[str, str | None, str, str]]:
    with db.transaction(write=False) as s:
        return [(e.event_id, e.intent_id, e.outcome, e.event_type) for e in s.scalars(
            select(ProviderEvent).order_by(ProviderEvent.id))]


def order(db: Database, order_id: str) -> dict[str, Any]:
    with db.transaction(write=False) as s:
        intent = s.get_one(PaymentIntent, order_id)
        return {"status": intent.status, "txn": intent.provider_txn_id,
                "payer_hash": intent.payer_hash, "succeeded_at": intent.succeeded_at}


def gifts(db: Database, order_id: str) -> int:
    with db.transaction(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(CampaignGift)
                            .where(CampaignGift.order_id == order_id)) or 0)


def books_balance(db: Database) -> None:
    with db.transaction(write=False) as s:
        assert ledger.check(s).ok


def test_a_notified_gift_marks_its_order_paid_and_records_the_event(
        db: Database, day: Day) -> None:
    order_id = open_order(db, day)
    assert batch(db, [notified(day, order_id, "ev-1")]) == ["credited"]
    assert order(db, order_id) == {"status": IntentStatus.SUCCEEDED, "txn": "4200000001",
                                   "payer_hash": "p" * 32, "succeeded_at": day.paid_at}
    assert events(db) == [("ev-1", order_id, "to_engine", "payment.paid")]
    with db.transaction(write=False) as s:
        stored = s.scalars(select(ProviderEvent)).one()
        assert stored.payload["transaction_id"] == "4200000001"
        assert stored.received_at is not None
    assert gifts(db, order_id) == 1
    books_balance(db)


def test_the_same_event_twice_in_one_batch_is_stored_once_and_credited_once(
        db: Database, day: Day) -> None:
    order_id = open_order(db, day)
    gift = notified(day, order_id, "ev-1")
    assert batch(db, [gift, gift, notified(day, order_id, "ev-1")]) == [
        "credited", "duplicate", "duplicate"]
    assert events(db) == [("ev-1", order_id, "to_engine", "payment.paid")]
    assert order(db, order_id)["status"] == IntentStatus.SUCCEEDED
    assert gifts(db, order_id) == 1
    books_balance(db)


def test_the_same_event_in_a_later_batch_changes_nothing(db: Database, day: Day) -> None:
    order_id = open_order(db, day)
    assert batch(db, [notified(day, order_id, "ev-1")]) == ["credited"]
    first = order(db, order_id)
    # The provider's retry: the same event (a later batch may be anyone's, e.g. another
    # process's engine on PostgreSQL).
    assert batch(db, [notified(day, order_id, "ev-1")]) == ["duplicate"]
    assert events(db) == [("ev-1", order_id, "to_engine", "payment.paid")]
    assert order(db, order_id) == first
    assert gifts(db, order_id) == 1
    books_balance(db)


def test_one_order_under_two_event_ids_is_paid_once_and_both_are_recorded(
        db: Database, day: Day) -> None:
    one, two = open_order(db, day), open_order(db, day)
    # One batch: order one under two ids; across batches: order two under two ids.
    assert batch(db, [notified(day, one, "a-1", txn="4201"), notified(day, two, "b-1",
                                                                      txn="4202"),
                      notified(day, one, "a-2", txn="4201")]) == [
        "credited", "credited", "duplicate"]
    assert batch(db, [notified(day, two, "b-2", txn="4202")]) == ["duplicate"]
    assert sorted(events(db)) == [("a-1", one, "to_engine", "payment.paid"),
                                  ("a-2", one, "already_applied", "payment.paid"),
                                  ("b-1", two, "to_engine", "payment.paid"),
                                  ("b-2", two, "already_applied", "payment.paid")]
    assert (order(db, one)["txn"], order(db, two)["txn"]) == ("4201", "4202")
    assert gifts(db, one) == gifts(db, two) == 1
    books_balance(db)


def test_an_order_paid_by_its_own_transaction_is_accepted_and_not_changed(
        db: Database, day: Day) -> None:
    """apply_report (the order query, reconciliation, the engine's fallback) paid the order
    first; the engine writes the gift (its exactly-once guard) and leaves the order as is."""
    order_id = open_order(db, day, status=IntentStatus.SUCCEEDED, provider_txn_id="4299")
    assert batch(db, [notified(day, order_id, "late", txn="4299")]) == ["credited"]
    assert order(db, order_id) == {"status": IntentStatus.SUCCEEDED, "txn": "4299",
                                   "payer_hash": "", "succeeded_at": day.paid_at}
    assert events(db) == [("late", order_id, "already_applied", "payment.paid")]
    assert gifts(db, order_id) == 1


def test_a_failed_order_paid_late_is_marked_paid(db: Database, day: Day) -> None:
    order_id = open_order(db, day, status=IntentStatus.FAILED)
    assert batch(db, [notified(day, order_id, "ev-1")]) == ["credited"]
    assert order(db, order_id)["status"] == IntentStatus.SUCCEEDED
    assert events(db)[0][2] == "to_engine"


def test_an_event_recorded_before_keeps_its_first_outcome(db: Database, day: Day) -> None:
    order_id = open_order(db, day)
    with db.transaction() as s:
        s.add(ProviderEvent(provider="wechatpay", event_id="ev-1", event_type="payment.paid",
                            intent_id=order_id, payload={}, outcome="received",
                            received_at=utcnow()))
    assert batch(db, [notified(day, order_id, "ev-1")]) == ["credited"]
    assert events(db) == [("ev-1", order_id, "received", "payment.paid")]
    assert order(db, order_id)["status"] == IntentStatus.SUCCEEDED


def test_a_gift_without_a_notice_leaves_orders_and_events_alone(db: Database,
                                                                  day: Day) -> None:
    order_id = open_order(db, day)
    plain = dataclasses.replace(notified(day, order_id, "ev-1"), notice=None)
    assert batch(db, [plain]) == ["credited"]
    assert events(db) == []
    assert order(db, order_id)["status"] == IntentStatus.REQUIRES_PAYMENT


def test_a_transaction_id_of_another_order_fails_the_batch_whole(db: Database,
                                                                  day: Day) -> None:
    """Only a provider's bug could send it (the notification is signed): the unique index
    refuses it, nothing of the batch is written, and the engine retries gift by gift."""
    taken = open_order(db, day, status=IntentStatus.SUCCEEDED, provider_txn_id="4200")
    order_id, other = open_order(db, day), open_order(db, day)
    with pytest.raises(Exception, match="(?i)unique"):  # the driver's IntegrityError
        batch(db, [notified(day, other, "ok"), notified(day, order_id, "bad", txn="4200")])
    assert events(db) == [] and gifts(db, other) == 0
    assert order(db, other)["status"] == IntentStatus.REQUIRES_PAYMENT
    assert order(db, taken)["txn"] == "4200"
