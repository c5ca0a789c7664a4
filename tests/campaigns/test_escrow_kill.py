"""Writers killed mid-lease (issue 15): on PostgreSQL four writer processes on escrow leases,
on SQLite its one writer, give overlapping orders (each order to two writers, as a provider's
retries would) to pools with tight caps while the test SIGKILLs writers at random moments —
between reserving and spending, mid-batch, while idle — and restarts them (a restarted writer
gets its callbacks again). At the end, from the database alone: every order credited exactly
once, no pool or cap over-spent (recomputed from the gift rows against the rules), the ledger
balanced, every fen of escrow back in its pool, and the transparency log complete."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from shanju.campaigns import escrow
from shanju.campaigns.check import check as campaigns_check
from shanju.campaigns.models import CampaignGift, LeaseSlice, MatchPool
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.ledger.models import AccountKind, LedgerAccount
from shanju.transparency import sequencer
from shanju.transparency.check import check as log_check
from tests.factories import make_campaign, make_org, make_paid_gift, make_pool, make_project

CHILD = textwrap.dedent(
    """
    import datetime as dt, json, random, sys, time
    from shanju.core.db import Database
    from shanju.campaigns import escrow
    from shanju.campaigns.engine import PaidGift
    from shanju.campaigns.escrow_writer import EscrowEngine

    job = json.load(open(sys.argv[1]))
    rng = random.Random()
    prepare = escrow.EscrowLeases.prepare

    def slow_prepare(self, gifts):
        # Widen the window between reserving and spending: kills land mid-lease often.
        view = prepare(self, gifts)
        time.sleep(rng.random() * 0.03)
        return view

    escrow.EscrowLeases.prepare = slow_prepare
    db = Database(job["url"])
    engine = EscrowEngine(db, max_wait_ms=5, max_batch=25, lease_ttl_s=job["ttl"],
                          worker=job["name"])
    engine.start()
    gifts = [PaidGift(**{**g, "paid_at": dt.datetime.fromisoformat(g["paid_at"])})
             for g in job["gifts"]]
    futures = [engine.submit(g) for g in gifts]
    results = [f.result(timeout=120) for f in futures]
    engine.stop()
    json.dump([[r.order_id, r.outcome, r.gift_id, r.matched_fen] for r in results],
              open(job["out"], "w"))
    """
)


@pytest.mark.slow
def test_writers_killed_mid_lease_never_overspend_lose_or_double(db: Database,
                                                                  tmp_path: Path) -> None:
    pg = db.url.startswith("postgresql")
    writers, orders, kills = (4, 400, 5) if pg else (1, 240, 4)
    with db.transaction() as s:
        orgs = [make_org(s), make_org(s)]
        projects = [make_project(s, org=orgs[i % 2]) for i in range(4)]
        campaign = make_campaign(s, projects=projects)
        pools = [
            make_pool(s, campaign=campaign, budget_fen=60_000, priority=1, params={
                "per_donor_daily_cap_fen": 3_000, "per_project_daily_cap_fen": 20_000,
                "per_org_cap_fen": 35_000, "daily_pot_fen": 50_000}),
            make_pool(s, campaign=campaign, budget_fen=25_000, priority=2, params={
                "random": [{"weight": 1, "num": 0, "den": 1}, {"weight": 2, "num": 1, "den": 2}],
                "floor_fen": 100, "seed": 99, "max_match_per_gift_fen": 800}),
        ]
        cid, pids, pool_ids = campaign.id, [p.id for p in projects], [p.id for p in pools]
    rng = random.Random(15)
    now = utcnow()
    gifts = [make_paid_gift(campaign_id=cid, project_id=rng.choice(pids),
                            amount_fen=rng.choice([100, 500, 1_000, 2_000, 5_000]),
                            order_id=f"o_kill{i:04d}", payer_hash=f"payer{rng.randrange(40)}",
                            paid_at=now - dt.timedelta(seconds=rng.randrange(30)))
             for i in range(orders)]
    encoded = [{**dataclasses.asdict(g), "paid_at": g.paid_at.isoformat()} for g in gifts]
    shares: list[list[dict[str, Any]]] = [[] for _ in range(writers)]
    for g in encoded:  # each order to two writers (one, on SQLite)
        for w in rng.sample(range(writers), min(2, writers)):
            shares[w].append(g)

    def spawn(w: int, run: int) -> subprocess.Popen[bytes]:
        job = tmp_path / f"job{w}_{run}.json"
        job.write_text(json.dumps({"url": db.url, "gifts": shares[w], "ttl": 2.0,
                                   "name": f"writer{w}.{run}",
                                   "out": str(tmp_path / f"out{w}.json")}))
        with (tmp_path / f"err{w}_{run}.txt").open("wb") as err:
            return subprocess.Popen([sys.executable, "-c", CHILD, str(job)],  # noqa: S603
                                    stdout=subprocess.DEVNULL, stderr=err)

    runs = [0] * writers
    procs = [spawn(w, 0) for w in range(writers)]
    killed = 0
    started = time.monotonic()
    try:
        while killed < kills and time.monotonic() - started < 25:
            time.sleep(rng.uniform(0.6, 1.5))
            w = rng.randrange(writers)
            if procs[w].poll() is None:
                procs[w].send_signal(signal.SIGKILL)
                procs[w].wait(timeout=30)
                killed += 1
            runs[w] += 1
            procs[w] = spawn(w, runs[w])  # restarted: the provider delivers again
        for w, proc in enumerate(procs):
            assert proc.wait(timeout=120) == 0, (
                tmp_path / f"err{w}_{runs[w]}.txt").read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert killed >= 1

    # The last run of every writer answered all its orders: the same gift for everyone.
    answers: dict[str, set[tuple[int, int]]] = {}
    for w in range(writers):
        for order, outcome, gift_id, matched in json.loads(
                (tmp_path / f"out{w}.json").read_text()):
            assert outcome in ("credited", "duplicate")
            answers.setdefault(order, set()).add((gift_id, matched))
    assert set(answers) == {g.order_id for g in gifts}
    assert all(len(v) == 1 for v in answers.values())

    # Dead writers' leases come back (their holders are gone), the log is sequenced.
    time.sleep(2.1)
    escrow.reap(db)
    sequencer.drain(db)
    with db.transaction(write=False) as s:
        rows = {g.order_id: (g.id, g.matched_fen) for g in s.scalars(select(CampaignGift))}
        assert len(rows) == orders  # none lost, none doubled (one row per order)
        assert {o: {v} for o, v in rows.items()} == answers
        report = campaigns_check(s)  # caps and pools recomputed from the gift rows
        assert report.ok, report.problems
        assert ledger.check(s).ok
        assert s.scalar(select(func.coalesce(func.sum(LeaseSlice.reserved_fen), 0))) == 0
        escrowed = s.scalars(select(LedgerAccount.balance_fen).where(
            LedgerAccount.kind == AccountKind.MATCH_ESCROW)).all()
        assert escrowed and set(escrowed) == {0}  # every fen leased came back
        matched = sum(m for _, m in rows.values())
        spent = sum(p.committed_fen - p.remaining_fen
                    for p in s.scalars(select(MatchPool).where(MatchPool.id.in_(pool_ids))))
        assert spent == matched
        assert all(p.remaining_fen >= 0 for p in s.scalars(select(MatchPool)))
        raised = sum(ledger.balance(s, ledger.project_fund(p)) for p in pids)
        assert raised == sum(g.amount_fen for g in gifts) + matched
        logged = log_check(s)
        assert logged.ok, dict(logged.problems)
        assert logged.pending == 0
