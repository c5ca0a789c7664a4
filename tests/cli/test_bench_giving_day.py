"""``shanju bench giving-day``: the report's shape, its invariants, and checks that can fail."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from shanju import cli
from shanju.bench import giving_day as bench
from shanju.campaigns.engine import GiftResult
from shanju.campaigns.models import CampaignGift, MatchPool, MatchStatus
from shanju.core.clock import CHINA_TZ, today_cn, utcnow
from shanju.core.db import Database
from tests.factories import make_campaign, make_campaign_gift, make_org, make_pool, make_project

runner = CliRunner()
REQUIRED = {"db", "donations", "seconds", "donations_per_s", "p50_ms", "p99_ms",
            "baseline_donations_per_s", "speedup", "pool_exhausted_at_s", "matched_fen",
            "budget_fen", "invariants"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_small_run_reports_every_figure_with_its_invariants_true(
        kind: str, request: pytest.FixtureRequest) -> None:
    left: Callable[..., int] | None = (
        request.getfixturevalue("bench_databases") if kind == "postgresql" else None)
    result = runner.invoke(cli.app, ["bench", "giving-day", "--db", kind, "--donations", "300",
                                     "--baseline", "120", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert REQUIRED <= set(report)
    assert report["db"] == kind
    assert report["donations"] == 300
    assert report["submissions"] == 300 + report["duplicates"] and report["duplicates"] > 0
    assert report["baseline_donations"] <= 120
    assert report["invariants"] == {"ledger_balanced": True, "caps_respected": True,
                                    "exactly_once": True, "pool_remaining_equals_ledger": True,
                                    "log_equals_ledger": True}
    assert all(report["baseline_invariants"].values())
    assert report["errors"] == 0 and report["problems"] == []
    assert 0 < report["matched_fen"] <= report["budget_fen"]
    assert report["donations_per_s"] > 0 and report["baseline_donations_per_s"] > 0
    assert report["p50_ms"] <= report["p99_ms"]
    assert report["quadratic"]["ledger_balanced"] is True
    if left is not None:
        assert left("", "_baseline") == 0  # both throw-away databases were dropped


def test_the_workload_is_reproducible_and_realistic(db: Database) -> None:
    opening = dt.datetime.combine(today_cn(), dt.time(10), tzinfo=CHINA_TZ)  # 10:00 today
    world = bench.setup_world(db, donors=400, opening=opening)
    one = bench.build_workload(world, donations=2_000, opening=opening, seed=7)
    two = bench.build_workload(world, donations=2_000, opening=opening, seed=7)
    assert one == two
    assert len(one.unique) == 2_000
    assert len({g.order_id for g in one.unique}) == 2_000
    repeats = Counter(g.order_id for g in one.submissions)
    assert set(repeats.values()) == {1, 2} and 10 < sum(repeats.values()) - 2_000 < 100
    amounts = [g.amount_fen for g in one.unique]
    assert all(type(a) is int and a > 0 for a in amounts)
    small = sum(1 for a in amounts if a < 10_000) / len(amounts)
    large = sum(1 for a in amounts if a >= 100_000) / len(amounts)
    assert 0.7 < small < 0.9 and 0.005 < large < 0.06
    assert len({g.project_id for g in one.unique}) > 100  # a long tail of projects
    assert Counter(g.payer_hash for g in one.unique).most_common(1)[0][1] > 3  # a shared payer
    assert {g.paid_at.astimezone(bench.CHINA_TZ).date() for g in one.unique} == {world.day}


def test_the_cap_check_finds_an_overspent_cap(db: Database) -> None:
    with db.transaction() as session:
        project = make_project(session, org=make_org(session))
        campaign = make_campaign(session, projects=[project])
        pool = make_pool(session, campaign=campaign, budget_fen=1_000_000,
                         params={"per_donor_daily_cap_fen": 1_000,
                                 "max_match_per_gift_fen": 800})
        for order, matched in (("o_a", 600), ("o_b", 500)):
            gift = make_campaign_gift(session, campaign=campaign, project=project,
                                      amount_fen=600, donor_id=None, order_id=order)
            gift.pool_id, gift.rule_version, gift.matched_fen = pool.id, 1, matched
            gift.match_status = MatchStatus.MATCHED
        session.execute(update(MatchPool).where(MatchPool.id == pool.id)
                        .values(remaining_fen=1_000_000 - 1_100))
        campaign_id = campaign.id
    with db.transaction(write=False) as session:
        found = bench.check_caps(session, campaign_id)
    assert found == [f"pool {pool.id}: 1100 for one donor in a day (cap 1000)"]
    with db.transaction() as session:
        gift = session.scalars(select(CampaignGift).where(CampaignGift.order_id == "o_b")).one()
        gift.matched_fen = 900  # above the per-gift cap and the gift itself
        session.execute(update(MatchPool).where(MatchPool.id == pool.id)
                        .values(remaining_fen=1_000_000 - 1_500))
    with db.transaction(write=False) as session:
        found = bench.check_caps(session, campaign_id)
    assert any("above the per-gift cap" in v for v in found)
    assert any("for a gift of 600" in v for v in found)


def test_exactly_once_fails_when_an_order_is_credited_twice(db: Database) -> None:
    opening = utcnow()
    world = bench.setup_world(db, donors=50, opening=opening)
    workload = bench.build_workload(world, donations=3, opening=opening)
    gift = workload.unique[0]
    answers = [GiftResult(gift.order_id, "credited", 1, 0, "none", "no_pool")] * 2
    checked = bench.check_invariants(db, world, [gift, gift], answers)
    assert checked["exactly_once"] is False
    assert "an order was not credited exactly once" in checked["problems"]
