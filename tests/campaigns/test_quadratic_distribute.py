"""Distributing a quadratic-funding round through the ledger, once, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from shanju.accounts.models import Role
from shanju.campaigns import quadratic
from shanju.campaigns.models import (
    CampaignStatus,
    Enrolment,
    EnrolmentStatus,
    GiftStatus,
    MatchPool,
    PoolKind,
    PoolStatus,
    QuadraticShare,
)
from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.core.errors import Conflict, InvalidInput, PermissionDenied
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry
from tests.factories import (
    make_campaign,
    make_campaign_gift,
    make_org,
    make_pool,
    make_project,
    make_user,
)

POOL = 1_000_000  # ¥10,000


def build_round(db: Database, *, params: dict[str, Any] | None = None,
                status: CampaignStatus = CampaignStatus.ENDED) -> dict[str, Any]:
    """The round of test_quadratic.test_hand_computed_round, plus gifts that must not count."""
    with db.transaction() as session:
        org = make_org(session)
        p1, p2, p3, frozen, applied = (make_project(session, org=org) for _ in range(5))
        campaign = make_campaign(session, projects=[p1, p2, p3, frozen, applied], status=status)
        for enrolment in session.scalars(select(Enrolment).where(
                Enrolment.campaign_id == campaign.id)):
            if enrolment.project_id == frozen.id:
                enrolment.matching_frozen = True
            if enrolment.project_id == applied.id:
                enrolment.status = EnrolmentStatus.APPLIED
        other = make_campaign(session, projects=[p1])
        pool = make_pool(session, campaign=campaign, budget_fen=POOL, kind=PoolKind.QUADRATIC,
                         params=params)
        donors = [make_user(session).id for _ in range(14)]
        a, b, c, d, e, *nine = donors

        def give(project: Any, amount: int, donor: int | None, **kw: Any) -> None:
            make_campaign_gift(session, campaign=campaign, project=project, amount_fen=amount,
                               donor_id=donor, **kw)

        give(p1, 100, a)
        give(p1, 300, a)  # a's two gifts to p1 are one contribution of 400
        give(p1, 100, b)
        give(p1, 100, c)
        give(p1, 2_500, d)
        give(p2, 10_000, e)
        for donor in nine[:8]:
            give(p3, 900, donor)
        give(p3, 900, None, payer_hash="payer-without-account")  # counts, by payer
        # None of these count:
        give(p2, 5_000, a, status=GiftStatus.REFUNDED)
        give(p3, 900, b, reason="staff_own_org")
        give(p3, 900, None)  # neither account nor payer
        give(frozen, 10_000, a)
        give(applied, 10_000, a)
        make_campaign_gift(session, campaign=other, project=p1, amount_fen=10_000, donor_id=b)
        admin = make_user(session, role=Role.ADMIN)
        return {"pool": pool.id, "projects": [p1.id, p2.id, p3.id], "admin": admin,
                "campaign": campaign.id}


def distribute(db: Database, world: dict[str, Any], **kw: Any) -> list[QuadraticShare]:
    with db.transaction() as session:
        return quadratic.distribute(session=session, actor=world["admin"],
                                    pool_id=world["pool"], **kw)


def test_round_is_shared_exactly_through_one_entry(db: Database) -> None:
    world = build_round(db)
    p1, p2, p3 = world["projects"]
    rows = distribute(db, world)
    assert {r.project_id: r.share_fen for r in rows} == {p1: 89_011, p2: 109_890, p3: 801_099}
    assert {r.project_id: (r.contributors, r.contributed_fen) for r in rows} == {
        p1: (4, 3_100), p2: (1, 10_000), p3: (9, 8_100)}
    with db.transaction(write=False) as session:
        pool = session.get_one(MatchPool, world["pool"])
        assert pool.status == PoolStatus.CLOSED
        assert pool.remaining_fen == 0 == ledger.balance(session, ledger.match_pool(pool.id))
        assert ledger.balances(session, [ledger.project_fund(p) for p in (p1, p2, p3)]) == {
            ledger.project_fund(p1): 89_011, ledger.project_fund(p2): 109_890,
            ledger.project_fund(p3): 801_099}
        entries = session.scalars(select(JournalEntry).where(
            JournalEntry.kind == "quadratic.distributed")).all()
        assert len(entries) == 1
        assert {r.entry_id for r in rows} == {entries[0].id}
        assert entries[0].actor_id == world["admin"].id
        audits = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "campaigns.pool.distributed")).all()
        assert [(a.object_id, a.data["new"]["distributed_fen"]) for a in audits] == [
            (str(pool.id), POOL)]
        assert ledger.check(session).ok


def test_a_round_is_distributed_once(db: Database) -> None:
    world = build_round(db)
    distribute(db, world)
    with pytest.raises(Conflict) as refused:
        distribute(db, world)
    assert refused.value.code == "quadratic_already_distributed"
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(QuadraticShare)) == 3
        assert session.scalar(select(func.count()).select_from(JournalEntry).where(
            JournalEntry.kind == "quadratic.distributed")) == 1


def test_the_rules_per_project_cap_applies(db: Database) -> None:
    world = build_round(db, params={"per_project_daily_cap_fen": 500_000})
    p1, p2, p3 = world["projects"]
    rows = distribute(db, world)
    assert {r.project_id: r.share_fen for r in rows} == {p1: 223_757, p2: 276_243, p3: 500_000}


def test_when_every_project_is_capped_the_rest_stays_in_the_pool(db: Database) -> None:
    world = build_round(db)
    rows = distribute(db, world, cap_fen=100_000)
    assert [r.share_fen for r in rows] == [100_000] * 3
    with db.transaction(write=False) as session:
        pool = session.get_one(MatchPool, world["pool"])
        assert pool.status == PoolStatus.CLOSED
        assert pool.remaining_fen == 700_000 == ledger.balance(
            session, ledger.match_pool(pool.id))
        assert ledger.check(session).ok


def test_refused_before_the_campaign_ends(db: Database) -> None:
    world = build_round(db, status=CampaignStatus.LIVE)
    with pytest.raises(Conflict) as refused:
        distribute(db, world)
    assert refused.value.code == "quadratic_round_not_ended"
    with db.transaction(write=False) as session:
        pool = session.get_one(MatchPool, world["pool"])
        assert (pool.status, pool.remaining_fen) == (PoolStatus.ACTIVE, POOL)


def test_only_quadratic_pools_and_only_admins(db: Database) -> None:
    world = build_round(db)
    with db.transaction() as session:
        campaign = session.get_one(MatchPool, world["pool"]).campaign_id
        from shanju.campaigns.models import Campaign

        matching = make_pool(session, campaign=session.get_one(Campaign, campaign)).id
        reviewer = make_user(session, role=Role.REVIEWER)
    with pytest.raises(InvalidInput) as wrong_kind, db.transaction() as session:
        quadratic.distribute(session=session, actor=world["admin"], pool_id=matching)
    assert wrong_kind.value.code == "not_quadratic"
    with pytest.raises(PermissionDenied), db.transaction() as session:
        quadratic.distribute(session=session, actor=reviewer, pool_id=world["pool"])


def test_a_round_without_contributions_closes_with_the_pool_whole(db: Database) -> None:
    with db.transaction() as session:
        org = make_org(session)
        campaign = make_campaign(session, projects=[make_project(session, org=org)],
                                 status=CampaignStatus.ENDED)
        pool_id = make_pool(session, campaign=campaign, budget_fen=POOL,
                            kind=PoolKind.QUADRATIC).id
    with db.transaction() as session:
        assert quadratic.distribute(session=session, actor=None, pool_id=pool_id) == []
    with db.transaction(write=False) as session:
        pool = session.get_one(MatchPool, pool_id)
        assert (pool.status, pool.remaining_fen) == (PoolStatus.CLOSED, POOL)
