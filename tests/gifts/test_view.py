"""The ``gifts`` view: one row per gift of either kind, the same columns, one vocabulary.

Gifts are made the way the platform makes them: ordinary donations through the donation flows
and the sandbox's signed callbacks (paid, partly and wholly refunded, failed, pending),
giving-day gifts through the group-commit engine's ``apply_batch`` (matched), a held match
settled by ``settle_held``, a refund by ``refund_gift``.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError

from shanju.accounts.models import User
from shanju.campaigns import flows as campaign_flows
from shanju.campaigns.models import Campaign, MatchPool, MatchStatus
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.gifts.models import Gift, GiftKind, GiftStatus
from shanju.projects.models import Project
from tests.factories import make_campaign_gift
from tests.gifts.helpers import World, donate, give_on_giving_day, refund


def row(w: World, public_id: str) -> Gift:
    """The gift's row in the view, detached."""
    with w.db.transaction(write=False) as s:
        gift = s.get(Gift, public_id)
        assert gift is not None
        s.expunge(gift)
        return gift


def test_the_view_has_exactly_the_mapped_columns(db: Database) -> None:
    # The migration's SQL and the mapping are written apart; they must agree.
    columns = [c["name"] for c in inspect(db.engine).get_columns("gifts")]
    assert columns == [c.name for c in Gift.__table__.columns]
    assert "gifts" in inspect(db.engine).get_view_names()
    assert "gifts" not in inspect(db.engine).get_table_names()


def test_an_ordinary_donation_paid_then_partly_and_wholly_refunded(world: World) -> None:
    w = world
    public_id = donate(w, 80_00, message="加油", anonymous=True)
    gift = row(w, public_id)
    assert (gift.kind, gift.status, gift.amount_fen, gift.refunded_fen, gift.matched_fen) == (
        GiftKind.DONATION, GiftStatus.PAID, 80_00, 0, 0)
    assert gift.campaign_id is None and gift.match_status == MatchStatus.NONE
    assert (gift.project_id, gift.organization_id, gift.donor_id) == (
        w.project_id, w.org_id, w.donor_id)
    assert (gift.donor_name, gift.anonymous, gift.message, gift.province) == (
        "李雷", True, "加油", "云南")
    assert gift.provider == "sandbox" and gift.payer_hash == ""
    assert gift.paid_at is not None and gift.paid_at.tzinfo is not None
    assert gift.refunded_at is None
    assert gift.log_ref == f"donation:{public_id}"

    refund(w, public_id, 30_00)
    gift = row(w, public_id)
    # Partly refunded: still paid, with what was given back.
    assert (gift.status, gift.refunded_fen, gift.refunded_at) == (GiftStatus.PAID, 30_00, None)

    refund(w, public_id)  # the rest
    gift = row(w, public_id)
    assert (gift.status, gift.refunded_fen) == (GiftStatus.REFUNDED, 80_00)
    assert gift.refunded_at is not None


def test_unpaid_and_failed_donations_are_in_the_view_as_such(world: World) -> None:
    pending = donate(world, 10_00, pay=None)
    failed = donate(world, 20_00, pay="payment.failed")
    assert (row(world, pending).status, row(world, pending).paid_at) == (GiftStatus.PENDING, None)
    assert (row(world, failed).status, row(world, failed).paid_at) == (GiftStatus.FAILED, None)


def test_a_giving_day_gift_matched_then_refunded(world: World) -> None:
    w = world
    order_id = give_on_giving_day(w, 60_00, payer_hash="p" * 32, province="四川")
    gift = row(w, order_id)
    assert (gift.kind, gift.status, gift.amount_fen, gift.refunded_fen, gift.matched_fen) == (
        GiftKind.GIVING_DAY, GiftStatus.PAID, 60_00, 0, 60_00)
    assert (gift.campaign_id, gift.match_status) == (w.campaign_id, MatchStatus.MATCHED)
    assert (gift.project_id, gift.organization_id, gift.donor_id) == (
        w.project_id, w.org_id, w.donor_id)
    assert (gift.donor_name, gift.anonymous, gift.province, gift.provider) == (
        "张三", False, "四川", "sandbox")
    assert gift.payer_hash == "p" * 32 and gift.paid_at is not None
    assert gift.log_ref == f"gift:{order_id}"

    with w.db.transaction() as s:
        campaign_flows.refund_gift(session=s, actor=s.get_one(User, w.reviewer_id),
                                   order_id=order_id, reason="捐赠人申请退款")
    gift = row(w, order_id)
    # Wholly refunded, and its match went back to the pool: nothing stands in the project.
    assert (gift.status, gift.refunded_fen, gift.matched_fen, gift.match_status) == (
        GiftStatus.REFUNDED, 60_00, 0, MatchStatus.REVERSED)
    assert gift.refunded_at is not None


def test_a_held_match_counts_only_once_it_settles(world: World) -> None:
    w = world
    with w.db.transaction() as s:
        held = make_campaign_gift(
            s, campaign=s.get_one(Campaign, w.campaign_id),
            project=s.get_one(Project, w.project_id), amount_fen=50_00, match_status="held",
            matched_fen=50_00, pool=s.get_one(MatchPool, w.pool_id), hold_days=7)
        order_id = held.order_id
    gift = row(w, order_id)
    assert (gift.status, gift.matched_fen, gift.match_status) == (
        GiftStatus.PAID, 0, MatchStatus.HELD)
    with w.db.transaction() as s:
        assert campaign_flows.settle_held(session=s, now=utcnow() + dt.timedelta(days=8)) == 1
    gift = row(w, order_id)
    assert (gift.matched_fen, gift.match_status) == (50_00, MatchStatus.MATCHED)


def test_public_ids_are_unique_across_both_kinds(world: World) -> None:
    donate(world, 10_00)
    give_on_giving_day(world, 10_00)
    with world.db.transaction(write=False) as s:
        rows = s.execute(select(Gift.kind, Gift.public_id)).all()
    assert {k for k, _ in rows} == {GiftKind.DONATION, GiftKind.GIVING_DAY}
    assert len({p for _, p in rows}) == len(rows) == 2


def test_nobody_can_write_through_the_view(world: World) -> None:
    donate(world, 10_00)
    with pytest.raises(DBAPIError), world.db.transaction() as s:
        s.execute(text("UPDATE gifts SET amount_fen = 1"))
    with pytest.raises(DBAPIError), world.db.transaction() as s:
        s.execute(text("DELETE FROM gifts"))
