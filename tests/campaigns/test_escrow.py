"""Escrow leases (``campaigns/escrow.py``): a writer's batches spend headroom reserved in its
lease, never a shared cap or pool row; a revoked lease fences its holder's batch; a dead
writer's headroom comes back through the ledger; the log's sequencer indexes the queued
leaves — on SQLite (one writer, K = 1) and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
import time

import pytest
from sqlalchemy import select

from shanju.campaigns import escrow
from shanju.campaigns.check import check as campaigns_check
from shanju.campaigns.engine import PaidGift, WriterMemory, apply_batch
from shanju.campaigns.escrow_writer import EscrowEngine
from shanju.campaigns.models import CampaignLease, LeaseSlice, LeaseState, MatchPool
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.transparency import sequencer
from shanju.transparency.check import check as log_check
from tests.factories import make_campaign, make_org, make_paid_gift, make_pool, make_project

CAPS = {"per_donor_daily_cap_fen": 3_000, "per_project_daily_cap_fen": 20_000,
        "per_org_cap_fen": 35_000, "daily_pot_fen": 50_000}


def _setup(db: Database) -> tuple[int, list[int], list[int]]:
    with db.transaction() as s:
        orgs = [make_org(s), make_org(s)]
        projects = [make_project(s, org=orgs[i % 2]) for i in range(4)]
        campaign = make_campaign(s, projects=projects)
        pools = [make_pool(s, campaign=campaign, budget_fen=60_000, priority=1, params=CAPS),
                 make_pool(s, campaign=campaign, budget_fen=25_000, priority=2, params={
                     "random": [{"weight": 1, "num": 0, "den": 1},
                                {"weight": 2, "num": 1, "den": 2}],
                     "floor_fen": 100, "seed": 99, "max_match_per_gift_fen": 800})]
        return campaign.id, [p.id for p in projects], [p.id for p in pools]


def _gifts(cid: int, pids: list[int], n: int, seed: int, prefix: str) -> list[PaidGift]:
    rng = random.Random(seed)
    now = utcnow()
    return [make_paid_gift(campaign_id=cid, project_id=rng.choice(pids),
                           amount_fen=rng.choice([100, 500, 1_000, 2_000, 5_000]),
                           donor_id=None, order_id=f"{prefix}{i}",
                           payer_hash=f"payer{rng.randrange(30)}",
                           paid_at=now - dt.timedelta(seconds=rng.randrange(30)))
            for i in range(n)]


def _all_returned(db: Database) -> None:
    with db.transaction(write=False) as s:
        assert all(sl.reserved_fen == 0 for sl in s.scalars(select(LeaseSlice)))
        codes = [a.code for a in ledger.list_accounts(session=s, limit=1000)[0]
                 if a.code.startswith("match_escrow:")]
        assert all(ledger.balance(s, c) == 0 for c in codes)


def test_escrow_engine_credits_within_caps_and_returns_everything(db: Database) -> None:
    cid, pids, pool_ids = _setup(db)
    gifts = _gifts(cid, pids, 300, 1, "o_esc")
    engine = EscrowEngine(db, max_wait_ms=3, max_batch=40)
    engine.start()
    try:
        results = [f.result(timeout=60) for f in [engine.submit(g) for g in gifts]]
        again = [engine.submit(g).result(timeout=60) for g in gifts[::10]]
    finally:
        engine.stop()
    assert {r.outcome for r in results} == {"credited"}
    assert {r.outcome for r in again} == {"duplicate"}
    assert sum(r.matched_fen for r in results) > 0
    sequencer.drain(db)
    _all_returned(db)
    with db.transaction(write=False) as s:
        report = campaigns_check(s)
        assert report.ok, report.problems
        logged = log_check(s)
        assert logged.ok, dict(logged.problems)
        assert logged.pending == 0
        spent = sum(p.committed_fen - p.remaining_fen
                    for p in s.scalars(select(MatchPool).where(MatchPool.id.in_(pool_ids))))
        assert spent == sum(r.matched_fen for r in results)
        leases = list(s.scalars(select(CampaignLease)))
        assert [lease.state for lease in leases] == [LeaseState.RELEASED]


def test_a_revoked_lease_fences_its_batch_and_the_reaper_returns_its_escrow(
        db: Database) -> None:
    cid, pids, _ = _setup(db)
    gifts = _gifts(cid, pids, 50, 2, "o_fence")
    leases = escrow.EscrowLeases(db, "test:1", ttl_s=0.05)
    view = leases.prepare(gifts)
    with db.transaction(write=False) as s:
        campaigns_report = campaigns_check(s)
        assert campaigns_report.ok, campaigns_report.problems  # held headroom is accounted
        held = {sl.key: sl.reserved_fen for sl in s.scalars(select(LeaseSlice))}
    assert held and all(v > 0 for v in held.values())
    # The holder stalls past its expiry; a reaper revokes the lease and returns its slices.
    time.sleep(0.1)
    assert escrow.reap(db) == 1
    _all_returned(db)
    # The stalled holder's batch now fails its fence: nothing of it is written.
    with pytest.raises(escrow.LeaseLost), db.transaction() as s:
        apply_batch(s, gifts, worker="test:1", escrow=view)
    with db.transaction(write=False) as s:
        report = campaigns_check(s)
        assert report.ok, report.problems
        assert report.gifts == 0
    sequencer.drain(db)
    with db.transaction(write=False) as s:
        logged = log_check(s)
        assert logged.ok, dict(logged.problems)


def test_a_classic_writers_memory_is_not_trusted_across_escrow_batches(db: Database) -> None:
    """Escrow reservations move the campaign's lock_version, and a classic writer keeps no
    memory while a lease is active (docs/locking.md, "Escrow and the writer's memory")."""
    with db.transaction() as s:
        project = make_project(s, org=make_org(s))
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=100_000,
                  params={"per_donor_daily_cap_fen": 3_000})
        cid, pid = campaign.id, project.id

    def one(order_id: str) -> PaidGift:
        return make_paid_gift(campaign_id=cid, project_id=pid, amount_fen=2_000, donor_id=None,
                              order_id=order_id, payer_hash="payer1")

    def classic(memory: WriterMemory, order_id: str) -> int:
        with db.transaction() as s:
            [r] = apply_batch(s, [one(order_id)], worker="classic", memory=memory)
        memory.adopt()
        return r.matched_fen

    memory = WriterMemory()
    assert classic(memory, "o_mem1") == 2_000  # the donor's counter (2,000) now in memory
    leases = escrow.EscrowLeases(db, "escrow:1")
    gifts = [one("o_mem2")]
    view = leases.prepare(gifts)
    with db.transaction() as s:
        [r] = apply_batch(s, gifts, worker="escrow:1", escrow=view)
    assert r.matched_fen == 1_000
    leases.close()
    # The reservations moved the version: the writer reads the counter again (3,000).
    assert classic(memory, "o_mem3") == 0
    assert memory.reloads == 1
    # While a lease is active the classic writer neither reads nor keeps memory.
    again = escrow.EscrowLeases(db, "escrow:2")
    again.prepare([one("o_mem4")])
    hits = memory.hits
    assert classic(memory, "o_mem5") == 0
    assert classic(memory, "o_mem6") == 0
    assert memory.hits == hits
    again.close()
    with db.transaction(write=False) as s:
        report = campaigns_check(s)
        assert report.ok, report.problems
