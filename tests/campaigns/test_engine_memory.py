"""The writer's memory (issue 15): a writer keeps its campaign's counters between batches and
trusts them only while the campaign's ``lock_version`` is the one its last batch left. Every
other holder of the campaign lock — a refund, a top-up, a second writer — moves it, and the
writer reads the counters again; a failed batch forgets everything. Caps stay exact."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from shanju.accounts.models import Role, User
from shanju.campaigns import engine, flows
from shanju.campaigns.check import check as campaigns_check
from shanju.campaigns.engine import GroupCommitEngine, PaidGift, WriterMemory, apply_batch
from shanju.campaigns.models import Campaign
from shanju.core.db import Database
from shanju.core.errors import NotFound
from tests.factories import (
    make_campaign,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)


def setup(db: Database, params: dict[str, Any]) -> dict[str, Any]:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=1_000_000, params=params)
        return {"campaign": campaign.id, "project": project.id, "pool": pool.id,
                "staff": make_user(s, role=Role.ORG_STAFF, organization_id=org.id).id}


def gift(ids: dict[str, Any], amount: int, **kw: Any) -> PaidGift:
    return make_paid_gift(campaign_id=ids["campaign"], project_id=ids["project"],
                          amount_fen=amount, **kw)


def batch(db: Database, memory: WriterMemory, gifts: list[PaidGift]) -> list[engine.GiftResult]:
    """One batch as the writer runs it: adopt what it staged once it committed."""
    try:
        with db.transaction() as s:
            results = apply_batch(s, gifts, worker="test", memory=memory)
    except BaseException:
        memory.forget()
        raise
    memory.adopt()
    return results


def lock_version(db: Database, campaign_id: int) -> int:
    with db.transaction(write=False) as s:
        return s.scalars(select(Campaign.lock_version).where(Campaign.id == campaign_id)).one()


def reconciles(db: Database) -> None:
    with db.transaction(write=False) as s:
        report = campaigns_check(s)
        assert report.ok, report.problems


def test_every_lock_holder_moves_the_lock_version(db: Database) -> None:
    ids = setup(db, {})
    start = lock_version(db, ids["campaign"])
    batch(db, WriterMemory(), [gift(ids, 100)])
    assert lock_version(db, ids["campaign"]) == start + 1
    with db.transaction() as s:
        flows.top_up_pool(session=s, actor=s.get_one(User, ids["staff"]), pool_id=ids["pool"],
                          amount_fen=100)
    assert lock_version(db, ids["campaign"]) == start + 2


def test_counters_are_read_once_then_remembered(db: Database) -> None:
    ids = setup(db, {"per_donor_daily_cap_fen": 15_000})
    memory = WriterMemory()
    [first] = batch(db, memory, [gift(ids, 10_000, payer_hash="p1")])
    assert first.matched_fen == 10_000
    misses = memory.misses
    assert misses > 0 and memory.hits == 0
    # The same donor again: every counter it needs is remembered, none is read.
    [second] = batch(db, memory, [gift(ids, 10_000, payer_hash="p1")])
    assert (second.matched_fen, second.reason) == (5_000, "donor_daily_cap")
    assert memory.misses == misses and memory.hits > 0 and memory.reloads == 0
    reconciles(db)


def test_a_refund_between_batches_is_seen(db: Database) -> None:
    ids = setup(db, {"per_donor_daily_cap_fen": 1_000})
    memory = WriterMemory()
    [first] = batch(db, memory, [gift(ids, 1_000, payer_hash="p1")])
    [capped] = batch(db, memory, [gift(ids, 1_000, payer_hash="p1")])
    assert (first.matched_fen, capped.reason) == (1_000, "donor_daily_cap")
    with db.transaction() as s:
        flows.refund_gift(session=s, actor=s.get_one(User, ids["staff"]),
                          gift_id=first.gift_id, reason="退款")
    # The refund freed the donor's cap in the database; the writer's memory says it is
    # used. The lock version tells it to read again.
    [again] = batch(db, memory, [gift(ids, 600, payer_hash="p1")])
    assert again.matched_fen == 600 and memory.reloads == 1
    reconciles(db)


def test_two_writers_alternating_never_exceed_a_cap(db: Database) -> None:
    ids = setup(db, {"per_donor_daily_cap_fen": 2_500})
    one, two = WriterMemory(), WriterMemory()
    results = [batch(db, (one, two)[n % 2], [gift(ids, 1_000, payer_hash="p1")])[0]
               for n in range(6)]
    # Each writer's own memory would allow 2 × 1,000 + 500; together they may not.
    assert [r.matched_fen for r in results] == [1_000, 1_000, 500, 0, 0, 0]
    assert one.reloads + two.reloads >= 4
    reconciles(db)


def test_a_failed_batch_forgets(db: Database) -> None:
    ids = setup(db, {"per_donor_daily_cap_fen": 1_500})
    memory = WriterMemory()
    batch(db, memory, [gift(ids, 1_000, payer_hash="p1")])
    bad = make_paid_gift(campaign_id=ids["campaign"], project_id=10**6)
    with pytest.raises(NotFound):  # the missing project fails the batch
        batch(db, memory, [gift(ids, 1_000, payer_hash="p1"), bad])
    # Nothing of the failed batch stands, in the database or in memory.
    [r] = batch(db, memory, [gift(ids, 1_000, payer_hash="p1")])
    assert (r.matched_fen, r.reason) == (500, "donor_daily_cap")
    reconciles(db)


def test_the_engine_remembers_and_answers_a_loop_once_per_batch(db: Database) -> None:
    ids = setup(db, {"per_donor_daily_cap_fen": 3_000})
    eng = GroupCommitEngine(db, max_wait_ms=50, max_batch=1_000)
    eng.start()
    try:
        async def give_all() -> list[engine.GiftResult]:
            return await asyncio.gather(*[eng.submit_async(gift(ids, 1_000, payer_hash="p1"))
                                          for _ in range(5)])

        first = asyncio.run(give_all())
        second = asyncio.run(give_all())
    finally:
        eng.stop()
    assert sum(r.matched_fen for r in first + second) == 3_000
    assert eng.memory.hits > 0
    reconciles(db)


def test_a_gift_that_cannot_be_written_fails_at_submit(db: Database) -> None:
    ids = setup(db, {})
    eng = GroupCommitEngine(db)
    eng.start()
    try:
        future = eng.submit(gift(ids, 0))
        assert future.done() and isinstance(future.exception(), ValueError)
        assert eng.submit(gift(ids, 100)).result(timeout=30).outcome == "credited"
    finally:
        eng.stop()


def test_array_literals_carry_any_text(db: Database) -> None:
    """PostgreSQL gets a batch's lists as array literals (``engine.pg_array``)."""
    if db.is_sqlite:
        pytest.skip("PostgreSQL only")
    texts = ["a", "", "NULL", 'q"uote', "back\\slash", "{brace}", "comma,", " space ", "中文",
             "x\\\"y"]
    with db.transaction(write=False) as s:
        sql = engine._Sql(s)
        assert sql.rows("SELECT ?::text[]", (engine.pg_array(texts),))[0][0] == texts
        assert sql.rows("SELECT ?::bigint[]", (engine.pg_array([1, -2, 3]),))[0][0] == [1, -2, 3]
        where, arg = sql.in_list("x", texts)
        assert sql.rows(f"SELECT count(*) FROM unnest(?::text[]) AS t(x) WHERE {where}",
                        (engine.pg_array(texts), arg))[0][0] == len(texts)
