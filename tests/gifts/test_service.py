"""Readers of gifts of both kinds: totals, a project's gifts and donors, a donor's summary —
each counts an ordinary donation and a giving-day gift alike."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient

from shanju.accounts.models import User
from shanju.campaigns import flows as campaign_flows
from shanju.campaigns.engine import apply_batch
from shanju.core.clock import utcnow
from shanju.gifts import service as gifts
from shanju.gifts.models import GiftKind
from shanju.ledger import service as ledger
from tests.factories import make_org, make_paid_gift, make_project, make_user
from tests.gifts.helpers import World, donate, give_on_giving_day, refund


def test_totals_count_both_kinds_as_the_fund_holds_them(world: World) -> None:
    w = world
    kept = donate(w, 100_00)
    refund(w, kept, 40_00)  # ¥60 of it stays
    refund(w, donate(w, 30_00))  # wholly refunded: counts for nothing
    donate(w, 5_00, pay=None)  # never paid: nothing
    give_on_giving_day(w, 70_00)  # and its ¥70 match
    gone = give_on_giving_day(w, 20_00)
    with w.db.transaction() as s:
        campaign_flows.refund_gift(session=s, actor=s.get_one(User, w.reviewer_id),
                                   order_id=gone, reason="捐赠人申请退款")
    with w.db.transaction(write=False) as s:
        totals = gifts.project_totals(session=s, project_ids=[w.project_id, 999])
        assert totals[w.project_id] == gifts.ProjectTotals(raised_fen=60_00 + 140_00,
                                                           donations=2)
        assert totals[999] == gifts.ProjectTotals()
        assert totals[w.project_id].raised_fen == ledger.balance(
            s, ledger.project_fund(w.project_id))
        assert gifts.platform_totals(session=s) == gifts.PlatformTotals(
            raised_fen=200_00, donations=2, organizations=1)
        # The donor's own money, without the sponsor's match.
        assert gifts.donor_summary(session=s, donor_id=w.donor_id) == gifts.DonorSummary(
            given_fen=60_00 + 70_00, donations=2, projects=1)


def test_a_projects_paid_gifts_newest_first_whichever_way_they_came(world: World) -> None:
    w = world
    now = utcnow()
    older = give_on_giving_day(w, 11_00, paid_at=now - dt.timedelta(hours=1))
    ordinary = donate(w, 22_00)
    newer = give_on_giving_day(w, 33_00, paid_at=now + dt.timedelta(hours=1))
    donate(w, 44_00, pay="payment.failed")
    with w.db.transaction(write=False) as s:
        page, total = gifts.list_project_gifts(session=s, project_id=w.project_id, limit=2)
        assert total == 3
        assert [(g.public_id, g.kind) for g in page] == [
            (newer, GiftKind.GIVING_DAY), (ordinary, GiftKind.DONATION)]
        rest, _ = gifts.list_project_gifts(session=s, project_id=w.project_id, limit=2,
                                           offset=2)
        assert [g.public_id for g in rest] == [older]
        recent = gifts.recent_gifts(session=s, project_id=w.project_id, limit=20)
        assert [g.amount_fen for g in recent] == [33_00, 22_00, 11_00]


def test_donor_ids_of_project_are_everyone_who_gave_either_way(world: World) -> None:
    w = world
    with w.db.transaction() as s:
        other_project = make_project(s, org=make_org(s))
        giving_day_donor = make_user(s).id
        elsewhere = make_user(s).id
        other_id = other_project.id
    donate(w, 10_00)  # w.donor_id, ordinary
    give_on_giving_day(w, 10_00)  # w.donor_id again: listed once
    with w.db.transaction() as s:
        apply_batch(s, [
            make_paid_gift(campaign_id=w.campaign_id, project_id=w.project_id,
                           donor_id=giving_day_donor),
            make_paid_gift(campaign_id=w.campaign_id, project_id=w.project_id,
                           donor_id=None),  # a guest: nobody to tell
            make_paid_gift(campaign_id=w.campaign_id, project_id=other_id,
                           donor_id=elsewhere),
        ])
    with w.db.transaction(write=False) as s:
        assert gifts.donor_ids_of_project(session=s, project_id=w.project_id) == sorted(
            [w.donor_id, giving_day_donor])
        assert gifts.donor_ids_of_project(session=s, project_id=other_id) == [elsewhere]


def test_is_own_received_gift(world: World) -> None:
    w = world
    paid = donate(w, 10_00)
    pending = donate(w, 20_00, pay=None)
    order = give_on_giving_day(w, 30_00)
    with w.db.transaction(write=False) as s:
        def own(kind: GiftKind, public_id: str, donor_id: int = w.donor_id) -> bool:
            return gifts.is_own_received_gift(session=s, kind=kind, public_id=public_id,
                                              donor_id=donor_id)

        assert own(GiftKind.DONATION, paid) and own(GiftKind.GIVING_DAY, order)
        assert not own(GiftKind.DONATION, pending)  # not paid
        assert not own(GiftKind.GIVING_DAY, paid)  # the wrong kind
        assert not own(GiftKind.DONATION, paid, donor_id=w.staff_id)  # someone else's


def test_the_project_page_and_api_list_giving_day_gifts_too(world: World,
                                                             client: TestClient) -> None:
    w = world
    donate(w, 12_00, message="普通捐赠")
    give_on_giving_day(w, 34_00, donor_name="王小明")
    listed = client.get(f"/api/v1/projects/{w.project_id}/donations").json()
    assert listed["total"] == 2
    assert sorted((d["donor"], d["amount_fen"]) for d in listed["items"]) == [
        ("李*", 12_00), ("王**", 34_00)]
    page = client.get(f"/projects/{w.project_id}").text
    donors = page[page.index('id="donors"'):]
    assert "王**" in donors and "李*" in donors and "普通捐赠" in donors


def test_lists_totals_snapshot_agrees_with_the_exact_sums_and_follows_the_money(
        world: World) -> None:
    w = world
    kept = donate(w, 100_00)
    give_on_giving_day(w, 70_00)  # and its ¥70 match
    now = [1_000.0]

    def clock() -> float:
        return now[0]

    with w.db.transaction(write=False) as s:
        first = gifts.totals_snapshot(session=s, clock=clock)
        assert first.of(w.project_id) == gifts.project_totals(
            session=s, project_ids=[w.project_id])[w.project_id]
        assert first.of(999) == gifts.ProjectTotals()
        assert first.platform == gifts.platform_totals(session=s)
        # Nothing moved: the same snapshot, whoever asks, until the backstop age.
        assert gifts.totals_snapshot(session=s, clock=clock) is first
        now[0] += gifts.SNAPSHOT_MAX_AGE_S - 0.01
        assert gifts.totals_snapshot(session=s, clock=clock) is first
    refund(w, kept, 40_00)  # money moves: a refund's journal entry
    with w.db.transaction(write=False) as s:
        now[0] = 1_000.0 + gifts.SNAPSHOT_MIN_AGE_S / 2  # younger than the minimum age: kept
        assert gifts.totals_snapshot(session=s, clock=clock) is first
        now[0] = 1_000.0 + gifts.SNAPSHOT_MIN_AGE_S  # old enough: summed again
        second = gifts.totals_snapshot(session=s, clock=clock)
        assert second is not first
        assert second.of(w.project_id).raised_fen == 60_00 + 140_00
        assert second.platform == gifts.platform_totals(session=s)
    donate(w, 5_00)  # a new paid donation moves the version too
    with w.db.transaction(write=False) as s:
        now[0] += gifts.SNAPSHOT_MIN_AGE_S
        third = gifts.totals_snapshot(session=s, clock=clock)
        assert third.of(w.project_id).raised_fen == 60_00 + 140_00 + 5_00
        assert third.of(w.project_id).donations == 3
