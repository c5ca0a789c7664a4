"""Decisions the engine makes before any pool keep what their explanations name: the opening
hours (for the donor), the reviewer's reason for freezing a project's matching (for reviewers)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from shanju.campaigns import explain
from shanju.campaigns.engine import apply_batch
from shanju.campaigns.models import CampaignGift, Enrolment
from shanju.core.clock import CHINA_TZ
from shanju.core.db import Database
from tests.factories import make_campaign, make_org, make_paid_gift, make_pool, make_project


def test_outside_hours_and_frozen_keep_their_parameters(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        open_p, frozen_p = make_project(s, org=org), make_project(s, org=org)
        campaign = make_campaign(s, projects=[open_p, frozen_p], opens_at="10:00",
                                 closes_at="22:00")
        make_pool(s, campaign=campaign)
        enrolment = s.scalars(select(Enrolment).where(Enrolment.project_id == frozen_p.id)).one()
        enrolment.matching_frozen = True
        enrolment.frozen_reason = "项目信息核查中"
        ids = (campaign.id, open_p.id, frozen_p.id, campaign.starts_on)
    cid, open_id, frozen_id, day = ids
    early = dt.datetime.combine(day, dt.time(9, 30), CHINA_TZ)
    noon = dt.datetime.combine(day, dt.time(12, 0), CHINA_TZ)
    gifts = [make_paid_gift(campaign_id=cid, project_id=open_id, paid_at=early),
             make_paid_gift(campaign_id=cid, project_id=frozen_id, paid_at=noon)]
    with db.transaction() as s:
        results = apply_batch(s, gifts)
    assert [r.reason for r in results] == ["outside_hours", "matching_frozen"]
    with db.transaction(write=False) as s:
        rows = {g.order_id: g for g in s.scalars(select(CampaignGift))}
        hours, frozen = rows[gifts[0].order_id], rows[gifts[1].order_id]
        assert hours.reason_params == {"opens_at": "10:00", "closes_at": "22:00"}
        assert frozen.reason_params == {"frozen_reason": "项目信息核查中"}
        said = explain.explain_gift(hours, "en")
        assert "10:00" in said.donor and "22:00" in said.donor, said.donor
        # The freeze reason is for reviewers; the donor is told matching is paused.
        assert "项目信息核查中" in explain.explain_gift(frozen, "zh_CN").reviewer
