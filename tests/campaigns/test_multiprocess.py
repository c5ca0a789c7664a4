"""Four writer processes (on PostgreSQL, and on SQLite where they meet at its write lock), each
with its own engine, submit overlapping gifts (the same orders delivered to several processes,
as a provider's retries would be) to pools with tight caps: every order is credited once, no
cap or pool is exceeded, the ledger balances."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import random
from collections import Counter, defaultdict
from typing import Any

from shanju.campaigns.check import check as campaigns_check
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.ledger import service as ledger
from tests.factories import make_campaign, make_org, make_paid_gift, make_pool, make_project

WRITERS = 4


def writer(url: str, gifts: list[dict[str, Any]]) -> list[tuple[str, str, int, int]]:
    """One writer process: its own Database and GroupCommitEngine; submit everything at once."""
    from shanju.campaigns.engine import GroupCommitEngine, PaidGift

    database = Database(url)
    engine = GroupCommitEngine(database, max_wait_ms=3, max_batch=40)
    engine.start()
    try:
        futures = [engine.submit(PaidGift(**g)) for g in gifts]
        results = [f.result(timeout=120) for f in futures]
    finally:
        engine.stop()
        database.dispose()
    return [(r.order_id, r.outcome, r.gift_id, r.matched_fen) for r in results]


def test_four_writer_processes_credit_each_order_once_within_every_cap(db: Database) -> None:
    with db.transaction() as s:
        orgs = [make_org(s), make_org(s)]
        projects = [make_project(s, org=orgs[i % 2]) for i in range(4)]
        campaign = make_campaign(s, projects=projects)
        make_pool(s, campaign=campaign, budget_fen=60_000, priority=1, params={
            "per_donor_daily_cap_fen": 3_000, "per_project_daily_cap_fen": 20_000,
            "per_org_cap_fen": 35_000, "daily_pot_fen": 50_000})
        make_pool(s, campaign=campaign, budget_fen=25_000, priority=2, params={
            "random": [{"weight": 1, "num": 0, "den": 1}, {"weight": 2, "num": 1, "den": 2}],
            "floor_fen": 100, "seed": 99, "max_match_per_gift_fen": 800})
        cid, pids = campaign.id, [p.id for p in projects]
    rng = random.Random(3)
    now = utcnow()

    def gift(order: str) -> dict[str, Any]:
        g = make_paid_gift(campaign_id=cid, project_id=rng.choice(pids),
                           amount_fen=rng.choice([100, 500, 1_000, 2_000, 5_000]),
                           order_id=order, payer_hash=f"payer{rng.randrange(40)}",
                           paid_at=now - dt.timedelta(seconds=rng.randrange(30)))
        return dataclasses.asdict(g)

    shared = [gift(f"o_mp_shared{i}") for i in range(160)]
    jobs = []
    for w in range(WRITERS):
        own = [gift(f"o_mp_{w}_{i}") for i in range(120)]
        mine = own + rng.sample(shared, 100) + rng.sample(own, 10)  # + plain repeats
        rng.shuffle(mine)
        jobs.append((db.url, mine))
    context = multiprocessing.get_context("spawn")
    with context.Pool(WRITERS) as pool:
        answers = pool.starmap(writer, jobs)

    credited: Counter[str] = Counter()
    ids: dict[str, set[int]] = defaultdict(set)
    matched: dict[str, set[int]] = defaultdict(set)
    for answer in answers:
        for order, outcome, gift_id, matched_fen in answer:
            credited[order] += outcome == "credited"
            ids[order].add(gift_id)
            matched[order].add(matched_fen)
    assert set(credited.values()) == {1}  # every order credited exactly once, by one writer
    assert all(len(v) == 1 for v in ids.values())  # every answer names the same gift
    assert all(len(v) == 1 for v in matched.values())
    submitted = {o for _, gifts in jobs for o in (g["order_id"] for g in gifts)}
    amounts = {g["order_id"]: g["amount_fen"] for _, gifts in jobs for g in gifts}
    assert len(credited) == len(submitted)
    with db.transaction(write=False) as s:
        report = campaigns_check(s)
        assert report.ok, report.problems
        assert report.gifts == len(submitted)
        raised = sum(ledger.balance(s, ledger.project_fund(p)) for p in pids)
        assert raised == sum(amounts.values()) + sum(min(v) for v in matched.values())
        assert ledger.check(s).ok
