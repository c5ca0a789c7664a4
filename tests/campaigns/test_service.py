"""Campaign configuration and enrolment: validation codes, status checks, pools committed
through the ledger, rule versions that never change, quotas, freezing, and the audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.campaigns import service as campaigns
from shanju.campaigns.models import (
    Campaign,
    CampaignStatus,
    EnrolmentStatus,
    MatchPool,
    PoolRule,
    PoolStatus,
    SponsorKind,
)
from shanju.core.audit import AuditEntry
from shanju.core.clock import today_cn
from shanju.core.db import Database
from shanju.core.errors import DomainError
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry
from shanju.projects.models import ProjectStatus
from tests.factories import make_campaign, make_org, make_pool, make_project, make_user
from tests.projects.helpers import audit_count, reviewer, staff_of

CS = CampaignStatus


def fields(**overrides: Any) -> campaigns.CampaignFields:
    values: dict[str, Any] = {
        "slug": "day99", "name": "99公益日", "name_en": "99 Giving Day", "summary": "一起做好事",
        "starts_on": today_cn(), "days": 3, "opens_at": "10:00", "closes_at": "23:59",
        "org_quota": 2, "hold_days": 7,
    }
    values.update(overrides)
    return campaigns.CampaignFields(**values)


def code_of(call: Any) -> str:
    with pytest.raises(DomainError) as info:
        call()
    return info.value.code


def new_campaign(session: Session, actor: User, **overrides: Any) -> Campaign:
    return campaigns.do_create_campaign(session=session, actor=actor, fields=fields(**overrides))


def test_create_validates_with_specific_codes(db: Database) -> None:
    with db.transaction() as s:
        rev = reviewer(s)
        donor = make_user(s)

        def create(**kw: Any) -> Any:
            return lambda: new_campaign(s, rev, **kw)

        assert code_of(lambda: new_campaign(s, donor)) == "reviewer_only"
        assert code_of(create(slug="Bad Slug!")) == "invalid_slug"
        assert code_of(create(slug="-x")) == "invalid_slug"
        assert code_of(create(name="  ")) == "required"
        assert code_of(create(name="好" * 81)) == "too_long"
        assert code_of(create(days=0)) == "invalid_days"
        assert code_of(create(days=32)) == "invalid_days"
        assert code_of(create(opens_at="25:00")) == "invalid_time"
        assert code_of(create(opens_at="12:00", closes_at="10:00")) == "closes_before_opens"
        assert code_of(create(starts_on=today_cn() - dt.timedelta(days=1))) == "starts_in_past"
        assert code_of(create(org_quota=0)) == "invalid_quota"
        assert code_of(create(hold_days=-1)) == "invalid_hold_days"
        assert code_of(lambda: campaigns.do_create_campaign(
            session=s, actor=rev, fields=campaigns.CampaignFields(name="x"))) == "required"
        campaign = new_campaign(s, rev, slug="Day99 ".strip().lower())
        assert campaign.status is CS.DRAFT and campaign.created_by_id == rev.id
        assert code_of(create(slug="day99")) == "slug_taken"
        assert audit_count(s, "campaigns.campaign.created") == 1


def test_schedule_is_locked_once_live_and_everything_once_ended(db: Database) -> None:
    with db.transaction() as s:
        rev = reviewer(s)
        campaign = new_campaign(s, rev)
        campaigns.do_update_campaign(session=s, actor=rev, campaign=campaign,
                                     fields=campaigns.CampaignFields(days=5, opens_at="09:00"))
        assert (campaign.days, campaign.opens_at) == (5, "09:00")
        entry = s.scalar(select(AuditEntry).where(
            AuditEntry.action == "campaigns.campaign.updated"))
        assert entry is not None and entry.data["old"] == {"days": 3, "opens_at": "10:00"}
        campaign.status = CS.LIVE
        s.flush()
        assert code_of(lambda: campaigns.do_update_campaign(
            session=s, actor=rev, campaign=campaign,
            fields=campaigns.CampaignFields(days=2))) == "schedule_locked"
        campaigns.do_update_campaign(session=s, actor=rev, campaign=campaign,
                                     fields=campaigns.CampaignFields(org_quota=4, days=5))
        assert campaign.org_quota == 4
        campaign.status = CS.ENDED
        s.flush()
        assert code_of(lambda: campaigns.do_update_campaign(
            session=s, actor=rev, campaign=campaign,
            fields=campaigns.CampaignFields(hold_days=1))) == "campaign_ended"


def test_going_live_needs_a_funded_pool_and_an_approved_project(db: Database) -> None:
    with db.transaction() as s:
        rev = reviewer(s)
        org = make_org(s)
        project = make_project(s, org=org)
        staff = staff_of(s, org)
        campaign = new_campaign(s, rev)
        move = campaigns.do_campaign_transition
        assert code_of(lambda: move(session=s, actor=rev, campaign=campaign,
                                    action="start")) == "illegal_transition"
        assert code_of(lambda: move(session=s, actor=rev, campaign=campaign,
                                    action="fly")) == "unknown_action"
        move(session=s, actor=rev, campaign=campaign, action="publish")
        assert campaign.status is CS.SCHEDULED
        assert code_of(lambda: move(session=s, actor=rev, campaign=campaign,
                                    action="start")) == "no_funded_pool"
        sponsor = campaigns.do_add_sponsor(session=s, actor=rev, campaign=campaign,
                                           name="爱心企业")
        pool = campaigns.do_create_pool(session=s, actor=rev, campaign=campaign,
                                        sponsor=sponsor, name="一比一", budget_fen=100_00)
        campaigns.do_set_pool_status(session=s, actor=rev, campaign=campaign, pool=pool,
                                     action="pause")
        assert code_of(lambda: move(session=s, actor=rev, campaign=campaign,
                                    action="start")) == "no_funded_pool"
        campaigns.do_set_pool_status(session=s, actor=rev, campaign=campaign, pool=pool,
                                     action="resume")
        assert code_of(lambda: move(session=s, actor=rev, campaign=campaign,
                                    action="start")) == "no_enrolled_projects"
        enrolment = campaigns.do_apply(session=s, actor=staff, campaign=campaign,
                                       project=project)
        campaigns.do_decide_enrolment(session=s, actor=rev, enrolment=enrolment, approve=True)
        assert code_of(lambda: move(session=s, actor=staff, campaign=campaign,
                                    action="start")) == "reviewer_only"
        move(session=s, actor=rev, campaign=campaign, action="start")
        assert campaign.status is CS.LIVE
        assert campaigns.allowed_campaign_actions(campaign) == ["end"]
        move(session=s, actor=rev, campaign=campaign, action="end")
        assert campaign.status is CS.ENDED
        for verb in ("published", "started", "ended"):
            assert audit_count(s, f"campaigns.campaign.{verb}") == 1
        assert audit_count(s, "campaigns.pool.paused") == 1
        assert audit_count(s, "campaigns.pool.resumed") == 1


def test_campaign_whose_days_are_over_cannot_be_published(db: Database) -> None:
    with db.transaction() as s:
        rev = reviewer(s)
        campaign = make_campaign(s, status=CS.DRAFT)
        campaign.starts_on = today_cn() - dt.timedelta(days=5)
        s.flush()
        assert code_of(lambda: campaigns.do_campaign_transition(
            session=s, actor=rev, campaign=campaign, action="publish")) == "campaign_over"


def test_pool_commitment_and_top_up_go_through_the_ledger(db: Database) -> None:
    with db.transaction() as s:
        rev = reviewer(s)
        campaign = new_campaign(s, rev)
        platform = campaigns.do_add_sponsor(session=s, actor=rev, campaign=campaign,
                                            name="腾讯公益", kind="platform")
        assert platform.kind is SponsorKind.PLATFORM
        assert code_of(lambda: campaigns.do_add_sponsor(
            session=s, actor=rev, campaign=campaign, name="腾讯公益")) == "sponsor_exists"
        assert code_of(lambda: campaigns.do_add_sponsor(
            session=s, actor=rev, campaign=campaign, name="x", kind="bank")) == \
            "invalid_sponsor_kind"

        def create(**kw: Any) -> Any:
            args: dict[str, Any] = {"session": s, "actor": rev, "campaign": campaign,
                                    "sponsor": platform, "name": "配捐", "budget_fen": 100}
            return lambda: campaigns.do_create_pool(**{**args, **kw})

        assert code_of(create(budget_fen=0)) == "amount_not_positive"
        assert code_of(create(budget_fen=1.5)) == "amount_not_whole_fen"
        assert code_of(create(budget_fen=campaigns.MAX_POOL_FEN + 1)) == "amount_too_large"
        assert code_of(create(params={"ratio_den": 0})) == "invalid_rule"
        assert code_of(create(params={"bogus": 1})) == "invalid_rule"
        assert code_of(create(priority=-1)) == "invalid_priority"
        assert code_of(create(kind="lottery")) == "invalid_pool_kind"
        assert s.scalar(select(MatchPool.id)) is None  # nothing was written by refusals
        pool = campaigns.do_create_pool(
            session=s, actor=rev, campaign=campaign, sponsor=platform, name="一比一配捐",
            budget_fen=9_999_00, params={"per_donor_daily_cap_fen": 999_00})
        campaigns.do_top_up_pool(session=s, actor=rev, campaign=campaign, pool=pool,
                                 amount_fen=1_00)
        campaigns.do_top_up_pool(session=s, actor=rev, campaign=campaign, pool=pool,
                                 amount_fen=2_00)
        assert code_of(lambda: campaigns.do_top_up_pool(
            session=s, actor=rev, campaign=campaign, pool=pool, amount_fen=0)) == \
            "amount_not_positive"
        pool_id, sponsor_id = pool.id, platform.id
    with db.transaction(write=False) as s:
        pool = s.get(MatchPool, pool_id)
        assert pool is not None
        assert (pool.committed_fen, pool.remaining_fen) == (10_002_00, 10_002_00)
        assert ledger.balance(s, ledger.match_pool(pool_id)) == pool.remaining_fen
        assert ledger.balance(s, ledger.sponsor(sponsor_id)) == -10_002_00
        kinds = sorted(s.scalars(select(JournalEntry.kind)))
        assert kinds == ["pool.committed", "pool.topped_up", "pool.topped_up"]
        assert ledger.check(s).ok
        assert audit_count(s, "campaigns.pool.created") == 1
        assert audit_count(s, "campaigns.pool.topped_up") == 2
        assert audit_count(s, "campaigns.sponsor.created") == 1
        view = campaigns.list_pools(session=s, campaign_id=pool.campaign_id)[0]
        assert view.rule.per_donor_daily_cap_fen == 999_00 and view.versions == 1


def test_a_rule_change_adds_a_version_and_keeps_the_old_one(db: Database) -> None:
    with db.transaction() as s:
        rev = reviewer(s)
        campaign = make_campaign(s)
        pool = make_pool(s, campaign=campaign, params={"ratio_num": 1, "ratio_den": 1})
        v2 = campaigns.do_set_rule(session=s, actor=rev, campaign=campaign, pool=pool,
                                   params={"ratio_num": 1, "ratio_den": 2,
                                           "per_project_daily_cap_fen": 5_000_00})
        assert v2.version == 2 and pool.rule_version == 2
        assert code_of(lambda: campaigns.do_set_rule(
            session=s, actor=rev, campaign=campaign, pool=pool,
            params={"ratio_num": 1, "ratio_den": 2,
                    "per_project_daily_cap_fen": 5_000_00})) == "rule_unchanged"
        assert code_of(lambda: campaigns.do_set_rule(
            session=s, actor=rev, campaign=campaign, pool=pool,
            params={"random": []})) == "invalid_rule"
        assert code_of(lambda: campaigns.do_set_rule(
            session=s, actor=rev, campaign=campaign, pool=pool,
            params={"windows": [{"start": "12:00", "end": "10:00"}]})) == "invalid_rule"
        campaigns.do_set_rule(session=s, actor=rev, campaign=campaign, pool=pool,
                              params={"ratio_num": 2, "ratio_den": 1})
        pool_id = pool.id
    with db.transaction(write=False) as s:
        rules = campaigns.list_rules(session=s, pool_id=pool_id)
        assert [r.version for r in rules] == [1, 2, 3]
        assert rules[0].params["ratio_den"] == 1 and rules[1].params["ratio_den"] == 2
        assert rules[2].params["ratio_num"] == 2
        pool = s.get(MatchPool, pool_id)
        assert pool is not None and pool.rule_version == 3
        assert campaigns.current_rule(session=s, pool=pool).ratio_num == 2
        assert audit_count(s, "campaigns.rule.created") == 2
        assert len(list(s.scalars(select(PoolRule)))) == 3


def test_enrolment_quota_status_and_ownership(db: Database) -> None:
    with db.transaction() as s:
        rev = reviewer(s)
        org = make_org(s)
        other = make_org(s)
        staff = staff_of(s, org)
        p1, p2, p3 = (make_project(s, org=org) for _ in range(3))
        draft = make_project(s, org=org, status=ProjectStatus.DRAFT)
        foreign = make_project(s, org=other)
        campaign = make_campaign(s, status=CS.SCHEDULED, org_quota=2)
        apply = campaigns.do_apply
        donor = make_user(s, role=Role.DONOR)
        assert code_of(lambda: apply(session=s, actor=donor, campaign=campaign,
                                     project=p1)) == "org_staff_only"
        assert code_of(lambda: apply(session=s, actor=staff, campaign=campaign,
                                     project=foreign)) == "not_your_project"
        assert code_of(lambda: apply(session=s, actor=staff, campaign=campaign,
                                     project=draft)) == "project_not_fundraising"
        e1 = apply(session=s, actor=staff, campaign=campaign, project=p1)
        assert code_of(lambda: apply(session=s, actor=staff, campaign=campaign,
                                     project=p1)) == "already_enrolled"
        e2 = apply(session=s, actor=staff, campaign=campaign, project=p2)
        assert e1.organization_id == org.id and e1.status is EnrolmentStatus.APPLIED
        assert code_of(lambda: apply(session=s, actor=staff, campaign=campaign,
                                     project=p3)) == "org_quota_reached"
        assert campaigns.quota_left(session=s, campaign=campaign, organization_id=org.id) == 0
        # Withdrawing frees a place; a rejection frees one too.
        campaigns.do_withdraw(session=s, actor=staff, enrolment=e2)
        e3 = apply(session=s, actor=staff, campaign=campaign, project=p3)
        assert code_of(lambda: campaigns.do_decide_enrolment(
            session=s, actor=rev, enrolment=e3, approve=False)) == "required"
        campaigns.do_decide_enrolment(session=s, actor=rev, enrolment=e3, approve=False,
                                      note="材料不全")
        assert e3.status is EnrolmentStatus.REJECTED and e3.note == "材料不全"
        assert code_of(lambda: campaigns.do_decide_enrolment(
            session=s, actor=rev, enrolment=e3, approve=True)) == "illegal_transition"
        # A withdrawn project may apply again.
        again = apply(session=s, actor=staff, campaign=campaign, project=p2)
        assert again.id == e2.id and again.status is EnrolmentStatus.APPLIED
        assert code_of(lambda: campaigns.do_decide_enrolment(
            session=s, actor=staff, enrolment=e1, approve=True)) == "reviewer_only"
        campaigns.do_decide_enrolment(session=s, actor=rev, enrolment=e1, approve=True)
        assert e1.status is EnrolmentStatus.APPROVED and e1.decided_by_id == rev.id
        other_staff = staff_of(s, other)
        assert code_of(lambda: campaigns.do_withdraw(
            session=s, actor=other_staff, enrolment=e1)) == "not_your_project"
        # Closed campaigns take no applications.
        campaign.status = CS.ENDED
        s.flush()
        assert code_of(lambda: apply(session=s, actor=staff, campaign=campaign,
                                     project=p3)) == "enrolment_closed"
        for verb, n in (("applied", 4), ("withdrawn", 1), ("rejected", 1), ("approved", 1)):
            assert audit_count(s, f"campaigns.enrolment.{verb}") == n, verb
        views = campaigns.list_enrolments(session=s, campaign_id=campaign.id)
        assert [v.enrolment.status for v in views][:2] == [EnrolmentStatus.APPLIED,
                                                            EnrolmentStatus.APPROVED]
        assert views[0].organization_name == org.name


def test_partner_receiving_funds_may_enrol_and_quota_counts_for_it(db: Database) -> None:
    with db.transaction() as s:
        publisher = make_org(s, qualified=False)
        partner = make_org(s)
        project = make_project(s, org=publisher, recipient=partner)
        campaign = make_campaign(s, status=CS.LIVE, org_quota=1)
        enrolment = campaigns.do_apply(session=s, actor=staff_of(s, partner),
                                       campaign=campaign, project=project)
        assert enrolment.organization_id == partner.id
        campaigns.do_withdraw(session=s, actor=staff_of(s, publisher), enrolment=enrolment)
        assert enrolment.status is EnrolmentStatus.WITHDRAWN


def test_freezing_needs_a_reason_and_is_audited(db: Database) -> None:
    with db.transaction() as s:
        rev = reviewer(s)
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        enrolment = campaigns.list_enrolments(session=s, campaign_id=campaign.id)[0].enrolment
        freeze = campaigns.do_set_frozen
        assert code_of(lambda: freeze(session=s, actor=rev, enrolment=enrolment,
                                      frozen=True)) == "required"
        freeze(session=s, actor=rev, enrolment=enrolment, frozen=True, reason="疑似自捐")
        assert enrolment.matching_frozen and enrolment.frozen_reason == "疑似自捐"
        assert code_of(lambda: freeze(session=s, actor=rev, enrolment=enrolment, frozen=True,
                                      reason="再次")) == "already_frozen"
        freeze(session=s, actor=rev, enrolment=enrolment, frozen=False)
        assert not enrolment.matching_frozen and enrolment.frozen_reason == ""
        assert code_of(lambda: freeze(session=s, actor=rev, enrolment=enrolment,
                                      frozen=False)) == "not_frozen"
        entry = s.scalar(select(AuditEntry).where(
            AuditEntry.action == "campaigns.enrolment.frozen"))
        assert entry is not None and entry.actor_id == rev.id
        assert entry.data["reason"] == "疑似自捐"
        assert audit_count(s, "campaigns.enrolment.unfrozen") == 1


def test_rule_form_reads_yuan_and_gives_fen() -> None:
    params = campaigns.parse_rule_form({"mode": "ratio", "ratio": "1:1",
                                        "donor_daily_cap": "999", "windows": ""})
    assert params == {"ratio_num": 1, "ratio_den": 1, "per_donor_daily_cap_fen": 999_00}
    random = campaigns.parse_rule_form({
        "mode": "random", "random": "60×1:1\n30x1:2\n10×0:1", "floor": "0.5",
        "min_gift": "1", "project_daily_cap": "5,000", "windows": "10:00-12:00, 20:00-22:00",
        "seed": "7"})
    assert random["random"][1] == {"weight": 30, "num": 1, "den": 2}
    assert random["floor_fen"] == 50 and random["min_gift_fen"] == 100
    assert random["per_project_daily_cap_fen"] == 5_000_00 and random["seed"] == 7
    assert random["windows"] == [{"start": "10:00", "end": "12:00"},
                                 {"start": "20:00", "end": "22:00"}]
    back = campaigns.rule_form_values(campaigns.check_rule_params(random))
    assert back["random"].splitlines()[0] == "60×1:1" and back["project_daily_cap"] == "5000"
    assert campaigns.parse_rule_form(back) == random
    for bad, code in (({"ratio": "one"}, "invalid_ratio"),
                      ({"mode": "random", "random": "lots"}, "invalid_random_option"),
                      ({"donor_daily_cap": "1.234"}, "amount_not_whole_fen"),
                      ({"donor_daily_cap": "-1"}, "amount_not_positive"),
                      ({"windows": "12:00-10:00"}, "invalid_window"),
                      ({"ratio": "1:0"}, "invalid_rule")):
        assert code_of(lambda bad=bad: campaigns.parse_rule_form(bad)) == code, bad


def test_public_reads_hide_drafts(db: Database) -> None:
    with db.transaction() as s:
        rev = reviewer(s)
        draft = new_campaign(s, rev, slug="draft-day")
        live = make_campaign(s)
        items, total = campaigns.list_campaigns(session=s,
                                                statuses=campaigns.PUBLIC_STATUSES)
        assert [c.id for c in items] == [live.id] and total == 1
        assert code_of(lambda: campaigns.get_visible_campaign(
            session=s, campaign_id=draft.id, viewer=None)) == "campaign_not_found"
        assert campaigns.get_visible_campaign(session=s, campaign_id=draft.id,
                                              viewer=rev) is draft
        assert campaigns.get_campaign_by_slug(session=s, slug=live.slug) is live
        assert code_of(lambda: campaigns.get_campaign_by_slug(
            session=s, slug="draft-day")) == "campaign_not_found"
        assert campaigns.enrolment_counts(session=s, campaign_id=live.id)["approved"] == 0
        assert PoolStatus.ACTIVE.value == "active"
