"""After the engine: refunds reverse matches (budget back to the pool, caps freed), held
matches settle or are released, pools are topped up and rules get new versions — each under
the campaign lock, each leaving `shanju campaigns check` true."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from shanju.accounts.models import Role
from shanju.campaigns import flows, fraud
from shanju.campaigns.check import check as campaigns_check
from shanju.campaigns.engine import GiftResult, PaidGift, apply_batch
from shanju.campaigns.models import CampaignGift, CampaignStat, MatchPool
from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.core.errors import Conflict, PermissionDenied
from shanju.ledger import service as ledger
from tests.factories import (
    make_campaign,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)


def setup(db: Database, *, budget: int = 100_000,
          params: dict[str, Any] | None = None) -> dict[str, Any]:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=budget, params=params)
        return {
            "campaign": campaign.id, "project": project.id, "pool": pool.id, "org": org.id,
            "reviewer": make_user(s, role=Role.REVIEWER).id,
            "staff": make_user(s, role=Role.ORG_STAFF, organization_id=org.id).id,
            "other_staff": make_user(s, role=Role.ORG_STAFF,
                                     organization_id=make_org(s).id).id,
            "donor": make_user(s).id,
        }


def give(db: Database, ids: dict[str, Any], amount: int, **kw: Any) -> GiftResult:
    gift: PaidGift = make_paid_gift(campaign_id=ids["campaign"], project_id=ids["project"],
                                    amount_fen=amount, **kw)
    with db.transaction() as s:
        return apply_batch(s, [gift])[0]


def user(s: Any, user_id: int) -> Any:
    from shanju.accounts.models import User
    return s.get(User, user_id)


def reconciles(db: Database) -> None:
    with db.transaction(write=False) as s:
        report = campaigns_check(s)
        assert report.ok, report.problems


def remaining(db: Database, pool_id: int) -> int:
    with db.transaction(write=False) as s:
        pool = s.get(MatchPool, pool_id)
        assert pool is not None
        return pool.remaining_fen


def test_refund_returns_the_match_to_the_pool_and_frees_the_caps(db: Database) -> None:
    ids = setup(db, params={"per_donor_daily_cap_fen": 1_000})
    first = give(db, ids, 1_000, payer_hash="p1")
    capped = give(db, ids, 1_000, payer_hash="p1")
    assert (first.matched_fen, capped.matched_fen, capped.reason) == (1_000, 0,
                                                                    "donor_daily_cap")
    with db.transaction() as s:
        gift = flows.refund_gift(session=s, actor=user(s, ids["staff"]), gift_id=first.gift_id,
                                 reason="捐赠人申请退款")
        assert (gift.status, gift.match_status) == ("refunded", "reversed")
    assert remaining(db, ids["pool"]) == 100_000
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.project_fund(ids["project"])) == 1_000
        assert ledger.balance(s, ledger.match_pool(ids["pool"])) == 100_000
        assert ledger.balance(s, ledger.donor_clearing("sandbox")) == -1_000
        total = s.scalars(select(CampaignStat).where(CampaignStat.dim == "total")).one()
        assert (total.gifts, total.raised_fen, total.matched_fen) == (1, 1_000, 0)
        assert s.scalars(select(AuditEntry).where(
            AuditEntry.action == "campaigns.gift.refunded")).one().actor_id == ids["staff"]
    reconciles(db)
    # The donor's cap is free again.
    assert give(db, ids, 600, payer_hash="p1").matched_fen == 600
    reconciles(db)


def test_refund_is_once_and_only_for_reviewers_and_the_receiving_org(db: Database) -> None:
    ids = setup(db)
    r = give(db, ids, 500)
    for who in ("donor", "other_staff"):
        with db.transaction() as s, pytest.raises(PermissionDenied):
            flows.refund_gift(session=s, actor=user(s, ids[who]), gift_id=r.gift_id,
                              reason="x")
    with db.transaction() as s:
        flows.refund_gift(session=s, actor=user(s, ids["reviewer"]), order_id=r.order_id,
                          reason="重复支付")
    with db.transaction() as s, pytest.raises(Conflict) as exc:
        flows.refund_gift(session=s, actor=user(s, ids["reviewer"]), gift_id=r.gift_id,
                          reason="again")
    assert exc.value.code == "gift_already_refunded"
    reconciles(db)


@pytest.fixture
def holding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anti-fraud holds every match (whatever the real rules are)."""
    def hold(keys: fraud.Keys, counters: dict[str, int], **_: Any) -> fraud.Verdict:
        return fraud.Verdict(fraud.Action.HOLD, "shared_payer", {"accounts": 3})

    monkeypatch.setattr(fraud, "assess_keys", hold)  # what the engine asks


def test_held_match_settles_after_the_notice_period(db: Database, holding: None) -> None:
    ids = setup(db)
    r = give(db, ids, 2_000)
    assert (r.match_status, r.reason, r.matched_fen) == ("held", "shared_payer", 2_000)
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.match_hold(ids["pool"])) == 2_000
        assert ledger.balance(s, ledger.project_fund(ids["project"])) == 2_000
        hold_until = s.get(CampaignGift, r.gift_id).hold_until  # type: ignore[union-attr]
    reconciles(db)
    with db.transaction() as s:
        assert flows.settle_held(session=s) == 0  # not yet
        assert flows.settle_held(session=s, now=hold_until + dt.timedelta(seconds=1)) == 1
    with db.transaction(write=False) as s:
        assert s.get(CampaignGift, r.gift_id).match_status == "matched"  # type: ignore[union-attr]
        assert ledger.balance(s, ledger.match_hold(ids["pool"])) == 0
        assert ledger.balance(s, ledger.project_fund(ids["project"])) == 4_000
    reconciles(db)


def test_released_hold_goes_back_to_the_pool_and_never_settles(db: Database,
                                                               holding: None) -> None:
    ids = setup(db)
    r = give(db, ids, 2_000)
    with db.transaction() as s, pytest.raises(PermissionDenied):
        flows.release_held(session=s, actor=user(s, ids["staff"]), gift_id=r.gift_id,
                           reason="x")
    with db.transaction() as s:
        flows.release_held(session=s, actor=user(s, ids["reviewer"]), gift_id=r.gift_id,
                           reason="同一支付账户")
    assert remaining(db, ids["pool"]) == 100_000
    with db.transaction() as s:
        far = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
        assert flows.settle_held(session=s, now=far) == 0
    with db.transaction() as s, pytest.raises(Conflict):
        flows.release_held(session=s, actor=user(s, ids["reviewer"]), gift_id=r.gift_id,
                           reason="again")
    reconciles(db)


def test_refunding_a_held_gift_empties_the_hold(db: Database, holding: None) -> None:
    ids = setup(db)
    r = give(db, ids, 2_000)
    with db.transaction() as s:
        flows.refund_gift(session=s, actor=user(s, ids["reviewer"]), gift_id=r.gift_id,
                          reason="退款")
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.match_hold(ids["pool"])) == 0
        assert ledger.balance(s, ledger.project_fund(ids["project"])) == 0
        assert ledger.balance(s, ledger.match_pool(ids["pool"])) == 100_000
    reconciles(db)


def test_top_up_revives_an_exhausted_pool(db: Database) -> None:
    ids = setup(db, budget=1_000)
    assert give(db, ids, 1_500).matched_fen == 1_000
    assert give(db, ids, 100).reason == "pool_exhausted"
    with db.transaction() as s:
        pool = flows.top_up_pool(session=s, actor=user(s, ids["reviewer"]),
                                 pool_id=ids["pool"], amount_fen=5_000)
        assert (pool.committed_fen, pool.remaining_fen) == (6_000, 5_000)
    assert give(db, ids, 100).matched_fen == 100
    with db.transaction() as s:
        flows.top_up_pool(session=s, actor=user(s, ids["reviewer"]), pool_id=ids["pool"],
                          amount_fen=1)
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.match_pool(ids["pool"])) == 4_901
    reconciles(db)


def test_a_new_rule_version_counts_what_was_already_matched(db: Database) -> None:
    ids = setup(db)
    assert give(db, ids, 800, payer_hash="p1").matched_fen == 800
    with db.transaction() as s:
        rule = flows.add_rule_version(session=s, actor=user(s, ids["reviewer"]),
                                      pool_id=ids["pool"],
                                      params={"per_donor_daily_cap_fen": 1_000})
        assert rule.version == 2
    r = give(db, ids, 500, payer_hash="p1")
    assert (r.matched_fen, r.reason) == (200, "donor_daily_cap")
    with db.transaction(write=False) as s:
        versions = [g.rule_version for g in s.scalars(
            select(CampaignGift).order_by(CampaignGift.id))]
    assert versions == [1, 2]
    reconciles(db)
    with db.transaction() as s, pytest.raises(Exception, match="not valid"):
        flows.add_rule_version(session=s, actor=user(s, ids["reviewer"]), pool_id=ids["pool"],
                               params={"ratio_den": 0})


def test_a_rule_version_written_elsewhere_gets_its_counters_at_the_next_batch(
        db: Database) -> None:
    from shanju.campaigns.models import PoolRule
    from shanju.campaigns.rules import RuleParams

    ids = setup(db)
    assert give(db, ids, 800, payer_hash="p1").matched_fen == 800
    with db.transaction() as s:  # as a service that only adds the version would
        s.add(PoolRule(pool_id=ids["pool"], version=2, params=RuleParams(
            per_donor_daily_cap_fen=1_000).model_dump(mode="json")))
        pool = s.get(MatchPool, ids["pool"])
        assert pool is not None
        pool.rule_version = 2
    reconciles(db)  # nothing to compare until the counters are rebuilt
    r = give(db, ids, 500, payer_hash="p1")
    assert (r.matched_fen, r.reason) == (200, "donor_daily_cap")
    reconciles(db)
