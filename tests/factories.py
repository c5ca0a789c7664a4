"""Test data builders. They write rows directly (fast, explicit); tests of a service's own
behaviour go through the service instead.

Each builder takes a session and flushes; the caller's transaction commits.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.campaigns.engine import PaidGift
from shanju.campaigns.models import (
    Campaign,
    CampaignBatch,
    CampaignGift,
    CampaignStatus,
    Enrolment,
    EnrolmentStatus,
    GiftStatus,
    MatchPool,
    MatchStatus,
    PoolKind,
    PoolRule,
    Sponsor,
)
from shanju.campaigns.rules import RuleParams
from shanju.core.clock import today_cn, utcnow
from shanju.core.security import hash_password
from shanju.ledger import service as ledger
from shanju.organizations import uscc
from shanju.organizations.models import Organization, OrgStatus, OrgType
from shanju.projects.models import Project, ProjectStatus

_seq = itertools.count(1)
PASSWORD = "correct horse battery"
_PASSWORD_HASH = hash_password(PASSWORD)

VALID_USCC = "53100000500021676K"  # a real foundation's code: both checks hold


def unique_uscc(n: int) -> str:
    """A valid, unique code (GB 32100-2015) for the n-th test organization."""
    return uscc.make(f"53100000MJ{n:06d}")


def make_user(session: Session, *, role: Role = Role.DONOR, email: str | None = None,
              display_name: str = "测试用户", organization_id: int | None = None) -> User:
    """A user who can sign in with :data:`PASSWORD`."""
    n = next(_seq)
    user = User(
        email=email or f"user{n}@example.org",
        display_name=display_name,
        password_hash=_PASSWORD_HASH,
        role=role,
        organization_id=organization_id,
    )
    session.add(user)
    session.flush()
    return user


def make_org(session: Session, *, qualified: bool = True, status: OrgStatus = OrgStatus.APPROVED,
             name: str | None = None, province: str = "北京") -> Organization:
    """An organization; ``qualified`` gives it a valid public-fundraising certificate."""
    n = next(_seq)
    today = today_cn()
    org = Organization(
        name=name or f"测试公益基金会{n}",
        uscc=unique_uscc(n),
        org_type=OrgType.FOUNDATION,
        registering_authority="民政部",
        province=province,
        contact_phone="010-12345678",
        status=status,
        fundraising_cert_no=f"公募证{n}" if qualified else None,
        fundraising_valid_from=today - dt.timedelta(days=365) if qualified else None,
        fundraising_valid_until=today + dt.timedelta(days=365) if qualified else None,
    )
    session.add(org)
    session.flush()
    return org


def make_project(session: Session, *, org: Organization, status: ProjectStatus =
                 ProjectStatus.FUNDRAISING, goal_fen: int = 1_000_000,
                 recipient: Organization | None = None, title: str | None = None) -> Project:
    """A project of ``org`` (fundraising by default, with a valid filing number)."""
    n = next(_seq)
    today = today_cn()
    project = Project(
        organization_id=org.id,
        recipient_org_id=(recipient or org).id,
        title=title or f"测试项目{n}",
        summary="为山区孩子送去温暖",
        province=org.province,
        goal_fen=goal_fen,
        fundraising_plan="募集资金用于购买过冬物资。",
        filing_number=f"53100000500021676Q2026{n:05d}",
        filing_valid_from=today - dt.timedelta(days=10),
        filing_valid_until=today + dt.timedelta(days=180),
        status=status,
    )
    session.add(project)
    session.flush()
    return project


def make_campaign(session: Session, *, status: CampaignStatus = CampaignStatus.LIVE,
                  projects: Sequence[Project] = (), days: int = 3, opens_at: str = "00:00",
                  closes_at: str = "23:59", org_quota: int = 10) -> Campaign:
    """A giving-day campaign open all day from today (China time), with ``projects`` enrolled
    and approved."""
    n = next(_seq)
    campaign = Campaign(
        slug=f"day{n}", name=f"测试公益日{n}", name_en=f"Test giving day {n}", status=status,
        starts_on=today_cn(), days=days, opens_at=opens_at, closes_at=closes_at,
        org_quota=org_quota,
    )
    session.add(campaign)
    session.flush()
    for project in projects:
        session.add(Enrolment(
            campaign_id=campaign.id, project_id=project.id,
            organization_id=project.recipient_org_id, status=EnrolmentStatus.APPROVED,
        ))
    session.flush()
    return campaign


def make_pool(session: Session, *, campaign: Campaign, budget_fen: int = 1_000_000,
              params: dict[str, Any] | None = None, kind: PoolKind = PoolKind.MATCHING,
              priority: int = 100, sponsor_name: str | None = None) -> MatchPool:
    """A sponsor and its pool, funded with ``budget_fen`` through the ledger; rule version 1
    has ``params`` (validated as :class:`~shanju.campaigns.rules.RuleParams`)."""
    n = next(_seq)
    sponsor = Sponsor(campaign_id=campaign.id, name=sponsor_name or f"爱心企业{n}")
    session.add(sponsor)
    session.flush()
    pool = MatchPool(
        campaign_id=campaign.id, sponsor_id=sponsor.id, name=f"配捐池{n}", kind=kind,
        priority=priority, committed_fen=budget_fen, remaining_fen=budget_fen, rule_version=1,
    )
    session.add(pool)
    session.flush()
    rule = RuleParams.model_validate(params or {})
    session.add(PoolRule(pool_id=pool.id, version=1, params=rule.model_dump(mode="json")))
    if budget_fen:
        ledger.post(session, ledger.transfer(
            "pool.committed", source=ledger.sponsor(sponsor.id),
            destination=ledger.match_pool(pool.id), amount_fen=budget_fen,
            dedupe_key=f"pool.committed:{pool.id}:1",
        ))
    session.flush()
    return pool


_orders = itertools.count(1)


def make_paid_gift(*, campaign_id: int, project_id: int, amount_fen: int = 10_000,
                   donor_id: int | None = None, order_id: str | None = None,
                   paid_at: dt.datetime | None = None, provider: str = "sandbox",
                   payer_hash: str = "", device_hash: str = "", province: str | None = "北京",
                   donor_name: str = "张三", anonymous: bool = False) -> PaidGift:
    """A confirmed payment for a giving-day order, as the checkout hands it to the engine."""
    n = next(_orders)
    order = order_id or f"o_test{n:08d}"
    return PaidGift(
        order_id=order, campaign_id=campaign_id, project_id=project_id, donor_id=donor_id,
        donor_name=donor_name, anonymous=anonymous, message="", province=province,
        amount_fen=amount_fen, provider=provider, provider_txn_id=f"txn_{order}",
        payer_hash=payer_hash, device_hash=device_hash, paid_at=paid_at or utcnow(),
    )


def make_campaign_gift(session: Session, *, campaign: Campaign, project: Project,
                       donor: User | None = None, donor_id: int | None = None,
                       amount_fen: int = 100_00, status: GiftStatus = GiftStatus.PAID,
                       order_id: str | None = None, match_status: str = "none",
                       matched_fen: int = 0, reason: str = "",
                       reason_params: dict[str, Any] | None = None,
                       pool: MatchPool | None = None, payer_hash: str = "",
                       device_hash: str = "", hold_days: int = 7) -> CampaignGift:
    """A giving-day gift written directly (no engine): its batch, and for a held match the
    ledger's pool → hold move and the pool's remaining money, as the engine leaves them."""
    n = next(_seq)
    batch = CampaignBatch(gifts=1, worker="factory")
    session.add(batch)
    session.flush()
    match = MatchStatus(match_status)
    now = utcnow()
    gift = CampaignGift(
        order_id=order_id or f"o_fx{n:08d}", campaign_id=campaign.id, project_id=project.id,
        organization_id=project.recipient_org_id,
        donor_id=donor.id if donor else donor_id, status=status,
        donor_name=donor.display_name if donor else "张三丰", amount_fen=amount_fen,
        provider="sandbox", provider_txn_id=f"txn{n}", payer_hash=payer_hash,
        device_hash=device_hash, day=today_cn(), pool_id=pool.id if pool else None,
        rule_version=1 if pool else None, matched_fen=matched_fen, match_status=match,
        reason=reason, reason_params=reason_params or {},
        hold_until=now + dt.timedelta(days=hold_days) if match == MatchStatus.HELD else None,
        batch_id=batch.id, paid_at=now,
    )
    session.add(gift)
    if pool is not None and match == MatchStatus.HELD and matched_fen:
        pool.remaining_fen -= matched_fen
        ledger.post(session, ledger.transfer(
            "campaign.batch", source=ledger.match_pool(pool.id),
            destination=ledger.match_hold(pool.id), amount_fen=matched_fen,
            dedupe_key=f"campaign.batch:factory:{n}",
        ))
    session.flush()
    return gift
