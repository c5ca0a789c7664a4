"""Property tests: any interleaving of gifts, refunds, rule changes (new versions with new
caps), top-ups and retried callbacks keeps every cap and pool within bounds, the ledger
balanced and the giving-day state reconciled — and the same seed gives the same decisions,
on either database."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shanju.accounts.models import Role, User
from shanju.campaigns import flows
from shanju.campaigns.check import check as campaigns_check
from shanju.campaigns.engine import PaidGift, apply_batch
from shanju.core.clock import utcnow
from shanju.core.db import Database
from tests.factories import (
    make_campaign,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)

_examples = itertools.count(1)

caps = st.one_of(st.none(), st.integers(1, 3_000))
random_ratio = st.one_of(st.none(), st.lists(
    st.fixed_dictionaries({"weight": st.integers(1, 3), "num": st.integers(0, 2),
                           "den": st.integers(1, 2)}), min_size=1, max_size=3))


@st.composite
def rule(draw: st.DrawFn) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ratio_num": draw(st.integers(0, 2)), "ratio_den": draw(st.integers(1, 2)),
        "floor_fen": draw(st.integers(0, 200)), "seed": draw(st.integers(0, 1_000)),
        "min_gift_fen": draw(st.integers(1, 200)),
        "max_match_per_gift_fen": draw(caps), "per_donor_daily_cap_fen": draw(caps),
        "per_project_daily_cap_fen": draw(caps), "per_org_cap_fen": draw(caps),
        "daily_pot_fen": draw(caps),
    }
    r = draw(random_ratio)
    if r is not None:
        params["random"] = r
    return params


gift_spec = st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(1, 2_500))
ops = st.lists(st.one_of(
    st.tuples(st.just("gifts"), st.lists(gift_spec, min_size=1, max_size=8)),
    st.tuples(st.just("retry"), st.integers(0, 50)),
    st.tuples(st.just("refund"), st.integers(0, 50)),
    st.tuples(st.just("rule"), st.integers(0, 1), rule()),
    st.tuples(st.just("top_up"), st.integers(0, 1), st.integers(1, 3_000)),
), min_size=1, max_size=10)


def play(db: Database, prefix: str, first_rules: tuple[dict[str, Any], dict[str, Any]],
         budgets: tuple[int, int], steps: list[Any], *, check_each: bool
         ) -> dict[str, tuple[int, str, str]]:
    """Run the steps on a fresh campaign in ``db``; return each order's decision."""
    with db.transaction() as s:
        orgs = [make_org(s), make_org(s)]
        projects = [make_project(s, org=orgs[i % 2]) for i in range(3)]
        campaign = make_campaign(s, projects=projects)
        pools = [make_pool(s, campaign=campaign, budget_fen=budgets[i], params=first_rules[i],
                           priority=i) for i in range(2)]
        reviewer = make_user(s, role=Role.REVIEWER)
        cid, pids, pool_ids, rid = (campaign.id, [p.id for p in projects],
                                    [p.id for p in pools], reviewer.id)
    now = utcnow()
    batches: list[list[PaidGift]] = []
    credited: list[int] = []
    decisions: dict[str, tuple[int, str, str]] = {}
    n = 0
    for step in steps:
        with db.transaction() as s:
            actor = s.get(User, rid)
            assert actor is not None
            if step[0] == "gifts":
                gifts = []
                for project, donor, amount in step[1]:
                    n += 1
                    gifts.append(make_paid_gift(
                        campaign_id=cid, project_id=pids[project], amount_fen=amount,
                        order_id=f"{prefix}-{n}", payer_hash=f"payer{donor}", paid_at=now))
                batches.append(gifts)
                for g, r in zip(gifts, apply_batch(s, gifts), strict=True):
                    assert r.outcome == "credited"
                    credited.append(r.gift_id)
                    decisions[g.order_id] = (r.matched_fen, r.match_status, r.reason)
            elif step[0] == "retry" and batches:
                again = batches[step[1] % len(batches)]
                for g, r in zip(again, apply_batch(s, again), strict=True):
                    assert r.outcome == "duplicate"
                    assert decisions[g.order_id][0] == r.matched_fen
            elif step[0] == "refund" and credited:
                gift_id = credited.pop(step[1] % len(credited))
                gift = flows.refund_gift(session=s, actor=actor, gift_id=gift_id, reason="退款")
                decisions[gift.order_id] = (*decisions[gift.order_id][:2], "refunded")
            elif step[0] == "rule":
                flows.add_rule_version(session=s, actor=actor, pool_id=pool_ids[step[1]],
                                       params=step[2])
            elif step[0] == "top_up":
                flows.top_up_pool(session=s, actor=actor, pool_id=pool_ids[step[1]],
                                  amount_fen=step[2])
        if check_each:
            with db.transaction(write=False) as s:
                report = campaigns_check(s)
                assert report.ok, report.problems
    return decisions


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(first_rules=st.tuples(rule(), rule()),
       budgets=st.tuples(st.integers(0, 5_000), st.integers(0, 20_000)), steps=ops)
def test_interleavings_keep_caps_pools_and_ledger_exact_and_decisions_reproducible(
    db: Database, sqlite_template: Path, tmp_path: Path,
    first_rules: tuple[dict[str, Any], dict[str, Any]], budgets: tuple[int, int],
    steps: list[Any],
) -> None:
    prefix = f"o_p{next(_examples)}"
    decisions = play(db, prefix, first_rules, budgets, steps, check_each=True)
    # The same steps with the same seeds on a fresh SQLite database: the same decisions.
    replay_path = tmp_path / f"{prefix}.sqlite3"
    shutil.copy(sqlite_template, replay_path)
    replay = Database(f"sqlite:///{replay_path}")
    try:
        assert play(replay, prefix, first_rules, budgets, steps, check_each=False) == decisions
    finally:
        replay.dispose()
        replay_path.unlink()
