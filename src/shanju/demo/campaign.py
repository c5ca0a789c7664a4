"""The demo's giving day: "99公益日", live from today for three days and open all day, so that
it is matching whenever the demo runs.

Sponsors and pools go through the campaigns service (audited, each commitment a
``pool.committed`` ledger entry), so the demo's money is as exact as production's. The
pools show the kinds of rule a giving day uses: 1:1 capped at ¥999 per donor per day (the
platform's pot), a random ratio with a floor, a per-project daily cap, and a quadratic round.
Gifts are not made here: the demo seeder sends them through the engine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.campaigns import service as campaigns
from shanju.campaigns.models import Campaign, Enrolment, EnrolmentStatus, PoolKind, SponsorKind
from shanju.core.clock import today_cn
from shanju.projects.models import Project, ProjectStatus
from shanju.projects.service import filing_valid_on

SLUG = "99"
ORG_QUOTA = 3

# (sponsor, kind, pool name, budget in fen, priority, pool kind, rule parameters)
POOLS: tuple[tuple[str, SponsorKind, str, int, int, PoolKind, dict[str, object]], ...] = (
    ("腾讯公益", SponsorKind.PLATFORM, "一比一配捐", 500_000_00, 10, PoolKind.MATCHING,
     {"ratio_num": 1, "ratio_den": 1, "per_donor_daily_cap_fen": 999_00,
      "daily_pot_fen": 200_000_00}),
    ("爱心科技有限公司", SponsorKind.ENTERPRISE, "随机配捐", 200_000_00, 20, PoolKind.MATCHING,
     {"random": [{"weight": 50, "num": 1, "den": 1}, {"weight": 30, "num": 1, "den": 2},
                 {"weight": 20, "num": 0, "den": 1}],
      "floor_fen": 1_00, "min_gift_fen": 1_00, "per_donor_daily_cap_fen": 99_00,
      "seed": 99}),
    ("星河银行", SponsorKind.ENTERPRISE, "项目日限额配捐", 150_000_00, 30, PoolKind.MATCHING,
     {"ratio_num": 1, "ratio_den": 2, "per_project_daily_cap_fen": 5_000_00,
      "per_org_cap_fen": 30_000_00}),
    # Shared out at the round's end by campaigns/quadratic.py; its rule only records defaults.
    ("春风乳业", SponsorKind.ENTERPRISE, "二次方配捐", 100_000_00, 40, PoolKind.QUADRATIC, {}),
)


@dataclass
class CampaignSeedReport:
    """What :func:`seed_campaign` created."""

    campaign_id: int
    sponsor_ids: list[int] = field(default_factory=list)
    pool_ids: list[int] = field(default_factory=list)
    project_ids: list[int] = field(default_factory=list)


def _platform_actor(session: Session) -> User:
    actor = session.scalar(select(User).where(User.role.in_((Role.ADMIN, Role.REVIEWER)))
                           .order_by(User.role == Role.REVIEWER, User.id))
    if actor is None:
        raise RuntimeError("the demo's giving day needs a reviewer or admin account first")
    return actor


def seed_campaign(session: Session, *, actor: User | None = None, max_projects: int = 20,
                  today: dt.date | None = None) -> CampaignSeedReport:
    """Create the live demo giving day with its sponsors, pools and up to ``max_projects``
    enrolled fundraising projects (at most :data:`ORG_QUOTA` per organization), in the
    caller's transaction. ``today`` (China date) is the first day (default: today)."""
    actor = actor or _platform_actor(session)
    today = today or today_cn()
    fields = campaigns.CampaignFields(
        slug=SLUG, name="99公益日", name_en="99 Giving Day",
        summary="一块做好事:三天里,每一笔爱心都有机会获得企业和平台的配捐。"
                "配捐先到先得,每人每天的配捐有上限;可疑的配捐公示7天后再到账。",
        starts_on=today, days=3, opens_at="00:00", closes_at="23:59",
        org_quota=ORG_QUOTA, hold_days=7)
    campaign = campaigns.do_create_campaign(session=session, actor=actor, fields=fields)
    report = CampaignSeedReport(campaign_id=campaign.id)
    for sponsor_name, kind, pool_name, budget, priority, pool_kind, params in POOLS:
        sponsor = campaigns.do_add_sponsor(session=session, actor=actor, campaign=campaign,
                                           name=sponsor_name, kind=kind)
        pool = campaigns.do_create_pool(
            session=session, actor=actor, campaign=campaign, sponsor=sponsor, name=pool_name,
            budget_fen=budget, params=dict(params), kind=pool_kind, priority=priority)
        report.sponsor_ids.append(sponsor.id)
        report.pool_ids.append(pool.id)
    _enrol(session, actor, campaign, report, max_projects=max_projects, today=today)
    campaigns.do_campaign_transition(session=session, actor=actor, campaign=campaign,
                                     action="publish")
    campaigns.do_campaign_transition(session=session, actor=actor, campaign=campaign,
                                     action="start")
    return report


def _enrol(session: Session, actor: User, campaign: Campaign, report: CampaignSeedReport, *,
           max_projects: int, today: dt.date) -> None:
    """Enrol fundraising projects as if their organizations had applied, then approve them
    through the service (the demo's organizations have one staff account at most)."""
    per_org: dict[int, int] = {}
    candidates = session.scalars(select(Project).where(
        Project.status == ProjectStatus.FUNDRAISING).order_by(Project.id))
    for project in candidates:
        if len(report.project_ids) >= max_projects:
            break
        if not filing_valid_on(project, today):
            continue
        org_id = project.recipient_org_id
        if per_org.get(org_id, 0) >= ORG_QUOTA:
            continue
        per_org[org_id] = per_org.get(org_id, 0) + 1
        enrolment = Enrolment(campaign_id=campaign.id, project_id=project.id,
                              organization_id=org_id, status=EnrolmentStatus.APPLIED)
        session.add(enrolment)
        session.flush()
        campaigns.do_decide_enrolment(session=session, actor=actor, enrolment=enrolment,
                                      approve=True, note="欢迎参加99公益日")
        report.project_ids.append(project.id)
