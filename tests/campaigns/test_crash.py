"""A writer process killed with SIGKILL in the middle of a batch — everything written, nothing
committed — loses nothing and counts nothing twice: the restarted writer gets the payment
callbacks again (the same paid gifts) and credits each order exactly once within every cap."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from shanju.campaigns.check import check as campaigns_check
from shanju.campaigns.engine import GroupCommitEngine, PaidGift
from shanju.campaigns.models import CampaignCounter, CampaignGift, CampaignStat, MatchPool
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry
from shanju.transparency import service as ts
from shanju.transparency.check import check as log_check
from tests.factories import make_campaign, make_org, make_paid_gift, make_pool, make_project

CHILD = textwrap.dedent(
    """
    import datetime as dt, json, sys, time
    from pathlib import Path
    from sqlalchemy import event
    from sqlalchemy.orm import Session
    from shanju.core.db import Database
    from shanju.campaigns.engine import GroupCommitEngine, PaidGift

    job = json.load(open(sys.argv[1]))
    marker = Path(job["marker"])
    armed = False

    @event.listens_for(Session, "before_commit")
    def stall(session):
        # The batch is written and flushed; stall before COMMIT until the test kills us.
        if armed:
            marker.write_text("in the middle of a batch")
            time.sleep(120)

    def paid(g):
        return PaidGift(**{**g, "paid_at": dt.datetime.fromisoformat(g["paid_at"])})

    db = Database(job["url"])
    engine = GroupCommitEngine(db, max_wait_ms=20, max_batch=1000)
    engine.start()
    first = [engine.submit(paid(g)) for g in job["first"]]
    for f in first:
        f.result(timeout=60)          # the first half is committed
    armed = True
    second = [engine.submit(paid(g)) for g in job["second"]]
    for f in second:
        f.result(timeout=300)         # never: the process dies first
    """
)


def snapshot(db: Database, pool_ids: list[int]) -> dict[str, Any]:
    with db.transaction(write=False) as s:
        return {
            "gifts": s.scalar(select(func.count()).select_from(CampaignGift)),
            "entries": s.scalar(select(func.count()).select_from(JournalEntry)),
            "counters": sorted((c.key, c.value) for c in s.scalars(select(CampaignCounter))),
            "stats": sorted((st.dim, st.key, st.gifts, st.raised_fen, st.matched_fen)
                            for st in s.scalars(select(CampaignStat))),
            "pools": [s.get(MatchPool, p).remaining_fen for p in pool_ids],  # type: ignore[union-attr]
            "log": (ts.head(s).size, ts.head(s).root),
        }


def test_writer_killed_mid_batch_then_callbacks_replayed(db: Database, tmp_path: Path) -> None:
    with db.transaction() as s:
        org = make_org(s)
        projects = [make_project(s, org=org) for _ in range(3)]
        campaign = make_campaign(s, projects=projects)
        pools = [
            make_pool(s, campaign=campaign, budget_fen=30_000, priority=1, params={
                "per_donor_daily_cap_fen": 2_000, "per_project_daily_cap_fen": 12_000}),
            make_pool(s, campaign=campaign, budget_fen=9_000, priority=2,
                      params={"ratio_num": 1, "ratio_den": 2, "daily_pot_fen": 5_000}),
        ]
        cid, pids, pool_ids = campaign.id, [p.id for p in projects], [p.id for p in pools]
    now = utcnow()
    gifts = [make_paid_gift(campaign_id=cid, project_id=pids[i % 3],
                            amount_fen=[300, 1_000, 2_500][i % 3], payer_hash=f"p{i % 17}",
                            order_id=f"o_crash{i:04d}",
                            paid_at=now - dt.timedelta(seconds=i % 50))
             for i in range(120)]
    first, second = gifts[:50], gifts[50:]

    def encode(gs: list[PaidGift]) -> list[dict[str, Any]]:
        return [{**dataclasses.asdict(g), "paid_at": g.paid_at.isoformat()} for g in gs]

    marker = tmp_path / "stalled"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"url": db.url, "marker": str(marker),
                               "first": encode(first), "second": encode(second)}))
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as err:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(job)],  # noqa: S603
                                 stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, errors.read_text()[-2000:]
            assert time.monotonic() < deadline, "the writer never reached its second batch"
            time.sleep(0.05)
        before_kill = snapshot(db, pool_ids)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # Only the first half survived; the half-written batch left no trace.
    after_kill = snapshot(db, pool_ids)
    assert after_kill == before_kill
    assert after_kill["gifts"] == len(first)
    with db.transaction(write=False) as s:
        report = campaigns_check(s)
        assert report.ok, report.problems
        # The transparency log holds exactly the surviving postings: no leaf of the killed
        # batch, no posting without its leaves.
        logged = log_check(s)
        assert logged.ok, dict(logged.problems)
        assert len(ts.leaves_by_ref(s, f"gift:{second[0].order_id}")) == 0

    # The writer restarts; the provider delivers every callback again (twice, even).
    engine = GroupCommitEngine(db, max_wait_ms=5, max_batch=64)
    engine.start()
    try:
        futures = [engine.submit(g) for g in gifts]
        results = [f.result(timeout=120) for f in futures]
        again = [engine.submit(g).result(timeout=120) for g in gifts[::7]]
    finally:
        engine.stop()
    assert [r.outcome for r in results] == ["duplicate"] * 50 + ["credited"] * 70
    assert {r.outcome for r in again} == {"duplicate"}
    with db.transaction(write=False) as s:
        report = campaigns_check(s)
        assert report.ok, report.problems
        assert report.gifts == len(gifts)
        matched = sum(r.matched_fen for r in results)
        raised = sum(ledger.balance(s, ledger.project_fund(p)) for p in pids)
        assert raised == sum(g.amount_fen for g in gifts) + matched  # no fen lost or doubled
        spent = sum(p.committed_fen - p.remaining_fen
                    for p in s.scalars(select(MatchPool).where(MatchPool.id.in_(pool_ids))))
        assert spent == matched
        logged = log_check(s)
        assert logged.ok, dict(logged.problems)
        # Every gift is in the log exactly once (its gift leaf; its match leaf if matched).
        for g, r in zip(gifts, results, strict=True):
            kinds = sorted(json.loads(leaf.data)["kind"]
                           for leaf in ts.leaves_by_ref(s, f"gift:{g.order_id}"))
            assert kinds == (["campaign.gift", "campaign.match"] if r.matched_fen
                             else ["campaign.gift"])
