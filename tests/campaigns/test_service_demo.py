"""The demo's giving day: live today, four sponsors' pools committed through the ledger with
different rules, and the demo's fundraising projects enrolled within the quota."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from shanju.accounts.models import Role
from shanju.campaigns import service as campaigns
from shanju.campaigns.models import CampaignStatus, Enrolment, EnrolmentStatus, PoolKind
from shanju.core.clock import today_cn
from shanju.core.db import Database
from shanju.demo.campaign import ORG_QUOTA, seed_campaign
from shanju.demo.seed import seed
from shanju.ledger import service as ledger
from shanju.projects.models import Project, ProjectStatus
from shanju.projects.service import filing_valid_on
from tests.factories import make_org, make_project, make_user
from tests.projects.helpers import audit_count


def test_demo_giving_day_on_the_demo_data(db: Database) -> None:
    with db.transaction() as session:
        seed(session, scale=0.05)  # the seeder calls seed_campaign, then gives through the engine
    with db.transaction(write=False) as session:
        campaign = campaigns.get_campaign_by_slug(session=session, slug="99")
        assert campaign.status is CampaignStatus.LIVE and campaign.slug == "99"
        assert campaign.starts_on == today_cn() and campaign.days == 3
        assert (campaign.opens_at, campaign.closes_at) == ("00:00", "23:59")
        sponsors = campaigns.list_sponsors(session=session, campaign_id=campaign.id)
        assert [s.name for s in sponsors][0] == "腾讯公益" and len(sponsors) == 4
        pools = campaigns.list_pools(session=session, campaign_id=campaign.id)
        assert len(pools) == 4
        first = pools[0]
        assert (first.rule.ratio_num, first.rule.ratio_den) == (1, 1)
        assert first.rule.per_donor_daily_cap_fen == 999_00
        assert pools[1].rule.random is not None and pools[1].rule.floor_fen > 0
        assert pools[2].rule.per_project_daily_cap_fen is not None
        assert pools[3].pool.kind is PoolKind.QUADRATIC
        for view in pools:
            assert 0 <= view.pool.remaining_fen <= view.pool.committed_fen
            assert view.pool.committed_fen > 0
            assert ledger.balance(session, ledger.match_pool(view.pool.id)) == \
                view.pool.remaining_fen
        assert ledger.check(session).ok
        enrolled = list(session.scalars(select(Enrolment).where(
            Enrolment.campaign_id == campaign.id)))
        fundraising = Counter(p.recipient_org_id for p in session.scalars(select(Project).where(
            Project.status == ProjectStatus.FUNDRAISING)) if filing_valid_on(p, today_cn()))
        expected = min(20, sum(min(n, ORG_QUOTA) for n in fundraising.values()))
        assert expected >= 1 and len(enrolled) == expected
        assert all(e.status is EnrolmentStatus.APPROVED for e in enrolled)
        assert max(Counter(e.organization_id for e in enrolled).values()) <= ORG_QUOTA
        assert audit_count(session, "campaigns.campaign.started") == 1


def test_enrolment_stops_at_twenty_projects_and_the_quota(db: Database) -> None:
    with db.transaction() as session:
        make_user(session, role=Role.ADMIN)
        orgs = [make_org(session) for _ in range(8)]
        for org in orgs:
            for _ in range(4):
                make_project(session, org=org)
        report = seed_campaign(session)
        assert len(report.project_ids) == 20
        per_org = Counter(e.organization_id for e in session.scalars(select(Enrolment)))
        assert sorted(per_org.values()) == [2, 3, 3, 3, 3, 3, 3]
        # A second demo giving day cannot take the same slug.
        with pytest.raises(campaigns.Conflict):
            seed_campaign(session)


def test_needs_a_platform_account(db: Database) -> None:
    with db.transaction() as session, pytest.raises(RuntimeError):
        seed_campaign(session)
