"""apply_batch and the group-commit engine: gifts credited once, matches decided in order, one
balanced journal entry per batch, counters, pools and stats kept exact."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from shanju.campaigns import engine
from shanju.campaigns.check import check as campaigns_check
from shanju.campaigns.engine import GroupCommitEngine, PaidGift, apply_batch
from shanju.campaigns.models import (
    CampaignBatch,
    CampaignCounter,
    CampaignGift,
    CampaignStat,
    Enrolment,
    MatchPool,
)
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry
from tests.factories import make_campaign, make_org, make_paid_gift, make_pool, make_project


def setup(db: Database, *, budget: int = 1_000_000, params: dict[str, Any] | None = None,
          projects: int = 1, second_pool: dict[str, Any] | None = None) -> dict[str, Any]:
    with db.transaction() as s:
        org = make_org(s)
        ps = [make_project(s, org=org) for _ in range(projects)]
        campaign = make_campaign(s, projects=ps)
        pool = make_pool(s, campaign=campaign, budget_fen=budget, params=params, priority=10)
        ids: dict[str, Any] = {"campaign": campaign.id, "projects": [p.id for p in ps],
                               "org": org.id, "pool": pool.id}
        if second_pool is not None:
            ids["pool2"] = make_pool(s, campaign=campaign, budget_fen=budget,
                                     params=second_pool, priority=20).id
    return ids


def gift(ids: dict[str, Any], amount: int = 10_000, project: int = 0, **kw: Any) -> PaidGift:
    return make_paid_gift(campaign_id=ids["campaign"], project_id=ids["projects"][project],
                          amount_fen=amount, **kw)


def run(db: Database, gifts: list[PaidGift]) -> list[engine.GiftResult]:
    with db.transaction() as s:
        return apply_batch(s, gifts, worker="test")


def assert_reconciles(db: Database) -> None:
    with db.transaction(write=False) as s:
        assert ledger.check(s).ok
        report = campaigns_check(s)
        assert report.ok, report.problems


def test_a_batch_credits_and_matches_in_one_entry(db: Database) -> None:
    ids = setup(db, budget=15_000, params={"ratio_num": 1, "ratio_den": 2})
    gifts = [gift(ids, 10_000), gift(ids, 10_000, provider="other"), gift(ids, 20_000)]
    results = run(db, gifts)
    assert [(r.outcome, r.matched_fen, r.match_status, r.reason) for r in results] == [
        ("credited", 5_000, "matched", ""),
        ("credited", 5_000, "matched", ""),
        ("credited", 5_000, "matched", "pool_exhausted"),  # cut to what was left
    ]
    with db.transaction(write=False) as s:
        project = ids["projects"][0]
        assert ledger.balance(s, ledger.project_fund(project)) == 40_000 + 15_000
        assert ledger.balance(s, ledger.match_pool(ids["pool"])) == 0
        assert ledger.balance(s, ledger.donor_clearing("sandbox")) == -30_000
        pool = s.get(MatchPool, ids["pool"])
        assert pool is not None and pool.remaining_fen == 0 and pool.exhausted_at is not None
        batches = list(s.scalars(select(CampaignBatch)))
        assert len(batches) == 1 and batches[0].gifts == 3 and batches[0].entry_id
        entry = s.get(JournalEntry, batches[0].entry_id)
        assert entry is not None and entry.kind == "campaign.batch"
        assert entry.dedupe_key == f"campaign.batch:{batches[0].id}"
        stats = {(st.dim, st.key): (st.gifts, st.raised_fen, st.matched_fen)
                 for st in s.scalars(select(CampaignStat))}
        assert stats[("total", "all")] == (3, 40_000, 15_000)
        assert stats[("pool", str(ids["pool"]))] == (3, 40_000, 15_000)
        assert stats[("project", str(project))] == (3, 40_000, 15_000)
        assert stats[("province", "北京")] == (3, 40_000, 15_000)
    assert_reconciles(db)
    # The pool is empty: the next gift is credited, not matched.
    [late] = run(db, [gift(ids, 1_000)])
    assert (late.outcome, late.matched_fen, late.match_status, late.reason) == (
        "credited", 0, "none", "pool_exhausted")
    assert_reconciles(db)


def test_duplicates_are_answered_with_the_first_gifts_data(db: Database) -> None:
    ids = setup(db)
    first = gift(ids, 1_000)
    [r1] = run(db, [first])
    again = run(db, [first, first, gift(ids, 2_000, order_id=first.order_id)])
    assert all(r.outcome == "duplicate" and r.gift_id == r1.gift_id for r in again)
    inside = gift(ids, 3_000)
    r2, r3 = run(db, [inside, inside])
    assert (r2.outcome, r3.outcome) == ("credited", "duplicate")
    assert r2.gift_id == r3.gift_id and r3.matched_fen == r2.matched_fen == 3_000
    with db.transaction(write=False) as s:
        assert len(list(s.scalars(select(CampaignGift)))) == 2
        assert ledger.balance(s, ledger.project_fund(ids["projects"][0])) == 8_000
    assert_reconciles(db)


def test_caps_cut_then_refuse_and_counters_persist(db: Database) -> None:
    ids = setup(db, params={"per_donor_daily_cap_fen": 15_000})
    r = run(db, [gift(ids, 10_000, donor_name="a", payer_hash="p1"),
                 gift(ids, 10_000, payer_hash="p1")])
    assert [(x.matched_fen, x.reason) for x in r] == [(10_000, ""), (5_000, "donor_daily_cap")]
    [r3] = run(db, [gift(ids, 10_000, payer_hash="p1")])
    assert (r3.matched_fen, r3.match_status, r3.reason) == (0, "none", "donor_daily_cap")
    [r4] = run(db, [gift(ids, 10_000, payer_hash="p2")])
    assert r4.matched_fen == 10_000
    with db.transaction(write=False) as s:
        keys = {c.key: c.value for c in s.scalars(select(CampaignCounter))}
        assert sorted(v for k, v in keys.items() if k.startswith(f"p{ids['pool']}:d:")) == [
            10_000, 15_000]
    assert_reconciles(db)


def test_second_pool_by_priority_and_first_pools_reason(db: Database) -> None:
    ids = setup(db, budget=1_000, params={"min_gift_fen": 500},
                second_pool={"ratio_num": 1, "ratio_den": 10})
    r = run(db, [gift(ids, 100), gift(ids, 800), gift(ids, 800)])
    assert [(x.matched_fen, x.reason) for x in r] == [
        (10, ""), (800, ""), (200, "pool_exhausted")]
    with db.transaction(write=False) as s:
        pools = [g.pool_id for g in s.scalars(select(CampaignGift).order_by(CampaignGift.id))]
    assert pools == [ids["pool2"], ids["pool"], ids["pool"]]
    assert_reconciles(db)


def test_not_live_outside_hours_not_enrolled_frozen(db: Database) -> None:
    ids = setup(db, projects=3)
    with db.transaction() as s:
        other = make_project(s, org=make_org(s))
        ids["projects"].append(other.id)
        frozen = s.scalars(select(Enrolment).where(
            Enrolment.project_id == ids["projects"][1])).one()
        frozen.matching_frozen = True
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    r = run(db, [gift(ids, 100, project=0, paid_at=yesterday), gift(ids, 100, project=1),
                 gift(ids, 100, project=3), gift(ids, 100, project=2)])
    assert [(x.outcome, x.matched_fen, x.reason) for x in r] == [
        ("credited", 0, "campaign_not_live"), ("credited", 0, "matching_frozen"),
        ("credited", 0, "not_enrolled"), ("credited", 100, "")]
    assert_reconciles(db)


def test_engine_thread_groups_and_answers(db: Database) -> None:
    ids = setup(db, budget=50_000)
    eng = GroupCommitEngine(db, max_wait_ms=20, max_batch=100)
    eng.start()
    try:
        gifts = [gift(ids, 1_000) for _ in range(120)]
        futures = [eng.submit(g) for g in gifts]
        dup = eng.submit(gifts[0])
        results = [f.result(timeout=30) for f in futures]
        assert dup.result(timeout=30).outcome == "duplicate"

        async def one() -> engine.GiftResult:
            return await eng.submit_async(gift(ids, 500))

        assert asyncio.run(one()).outcome == "credited"
    finally:
        eng.stop()
    assert sum(r.matched_fen for r in results) == 50_000
    assert eng.batches >= 2  # 120 gifts, at most 100 a batch
    with pytest.raises(RuntimeError):
        eng.submit(gifts[0])
    assert_reconciles(db)


def test_one_bad_gift_fails_alone(db: Database) -> None:
    ids = setup(db)
    eng = GroupCommitEngine(db, max_wait_ms=50)
    eng.start()
    try:
        good = [eng.submit(gift(ids, 1_000)) for _ in range(3)]
        bad = eng.submit(make_paid_gift(campaign_id=ids["campaign"], project_id=10**6))
        more = eng.submit(gift(ids, 1_000))
        assert all(f.result(timeout=30).outcome == "credited" for f in [*good, more])
        with pytest.raises(Exception, match="project"):
            bad.result(timeout=30)
    finally:
        eng.stop()
    assert_reconciles(db)


def test_stop_drains_what_was_submitted(db: Database) -> None:
    ids = setup(db)
    eng = GroupCommitEngine(db, max_wait_ms=1_000)
    eng.start()
    futures = [eng.submit(gift(ids, 100)) for _ in range(10)]
    eng.stop()
    assert all(f.done() and f.result().outcome == "credited" for f in futures)
