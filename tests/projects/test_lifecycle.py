"""The project lifecycle: every allowed move, every illegal one, and who may make them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shanju.accounts import service as accounts
from shanju.accounts.models import Notification
from shanju.core.clock import today_cn
from shanju.core.db import Database
from shanju.core.errors import Conflict, InvalidInput, PermissionDenied
from shanju.organizations.models import OrgStatus
from shanju.projects import service
from shanju.projects.models import Project, ProjectStatus
from tests.factories import (
    make_campaign,
    make_campaign_gift,
    make_org,
    make_project,
    make_user,
)
from tests.projects.helpers import audit_count, days, paid_donation, reviewer, staff_of

S = ProjectStatus


def _fields(**overrides: object) -> service.ProjectFields:
    today = today_cn()
    base = service.ProjectFields(
        title="乡村学校冬季温暖包", summary="为云南山区学校的孩子送去过冬物资",
        description="每个温暖包含羽绒服、棉鞋和手套。", category="children", province="云南",
        goal_fen=5_000_000, fundraising_plan="募集50000元,用于采购1000个温暖包。",
        filing_number="53100000500021676Q20260001", filing_valid_from=today - days(5),
        filing_valid_until=today + days(90),
    )
    for key, value in overrides.items():
        setattr(base, key, value)
    return base


def test_full_lifecycle_draft_to_completed(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        staff = staff_of(s, org)
        rev = reviewer(s)
        project = service.do_create_project(session=s, actor=staff, fields=_fields())
        assert project.status == S.DRAFT and project.recipient_org_id == org.id
        steps = [("submit", staff, S.SUBMITTED), ("approve", rev, S.APPROVED),
                 ("start", staff, S.FUNDRAISING), ("end", staff, S.ENDED),
                 ("execute", staff, S.EXECUTING), ("complete", staff, S.COMPLETED)]
        for action, actor, expected in steps:
            service.do_transition(session=s, project=project, actor=actor, action=action)
            assert project.status == expected
        pid = project.id
    with db.transaction() as s:
        assert s.get(Project, pid).status == S.COMPLETED  # type: ignore[union-attr]
        for verb in ("created", "submitted", "approved", "fundraising_started",
                     "fundraising_ended", "execution_started", "completed"):
            assert audit_count(s, f"projects.project.{verb}") == 1


def test_reject_needs_reason_then_edit_and_resubmit(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        staff = staff_of(s, org)
        rev = reviewer(s)
        project = make_project(s, org=org, status=S.SUBMITTED)
        with pytest.raises(InvalidInput) as err:
            service.do_transition(session=s, project=project, actor=rev, action="reject",
                                  reason="  ")
        assert err.value.code == "reason_required"
        assert project.status == S.SUBMITTED
        service.do_transition(session=s, project=project, actor=rev, action="reject",
                              reason="筹款计划缺少预算明细")
        assert project.status == S.REJECTED and project.review_note == "筹款计划缺少预算明细"
        fields = service.fields_of(project)
        fields.fundraising_plan = "预算:温暖包1000个 × 50元。"
        service.do_update_project(session=s, actor=staff, project=project, fields=fields)
        service.do_transition(session=s, project=project, actor=staff, action="submit")
        assert project.status == S.SUBMITTED and project.review_note is None


def test_the_decision_on_a_submission_is_notified_to_the_staff(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        staff = staff_of(s, org)
        other = staff_of(s, make_org(s))
        rev = reviewer(s)
        first = make_project(s, org=org, status=S.SUBMITTED, title="山区孩子营养午餐")
        second = make_project(s, org=org, status=S.SUBMITTED, title="乡村图书角")
        service.do_transition(session=s, project=first, actor=rev, action="approve")
        service.do_transition(session=s, project=second, actor=rev, action="reject",
                              reason="缺少预算明细")
        notes = s.scalars(select(Notification).order_by(Notification.id)).all()
        assert [(n.user_id, n.kind, n.link) for n in notes] == [
            (staff.id, "projects.approve", f"/console/projects/{first.id}"),
            (staff.id, "projects.reject", f"/console/projects/{second.id}"),
        ]
        assert other.id not in {n.user_id for n in notes}
        # Stored as msgids with values; each reader sees them in their own language.
        zh = accounts.render_notifications(notes, locale="zh_CN")
        assert [(n.title, n.body) for n in zh] == [
            ("您的项目「山区孩子营养午餐」已通过审核。", ""),
            ("您的项目「乡村图书角」未通过审核。", "审核意见：缺少预算明细"),
        ]
        en = accounts.render_notifications(notes, locale="en")
        assert [(n.title, n.body) for n in en] == [
            ("Your project “山区孩子营养午餐” was approved.", ""),
            ("Your project “乡村图书角” was not approved.", "Reviewer's note: 缺少预算明细"),
        ]


def _illegal_cases() -> list[tuple[ProjectStatus, str]]:
    return [(status, action) for status in ProjectStatus for action in service.ACTIONS
            if service.find_transition(action, status) is None]


@pytest.mark.parametrize(("status", "action"), _illegal_cases())
def test_every_illegal_transition_is_refused_and_changes_nothing(
    db: Database, status: ProjectStatus, action: str
) -> None:
    with db.transaction() as s:
        org = make_org(s)
        actor = (staff_of(s, org) if service.Actor.ORG in service.ACTION_BY[action]
                 else reviewer(s))
        project = make_project(s, org=org, status=status)
        pid = project.id
    with db.transaction() as s:
        project = s.get(Project, pid)
        assert project is not None
        with pytest.raises(Conflict) as err:
            service.do_transition(session=s, project=project, actor=s.merge(actor),
                                  action=action, reason="理由")
        assert err.value.code == "illegal_transition"
        assert status.value in err.value.message
        target = service.ACTION_TARGET[action]
        if target is not None:
            assert target.value in err.value.message
    with db.transaction() as s:
        assert s.get(Project, pid).status == status  # type: ignore[union-attr]
        assert audit_count(s, f"projects.project.{action}") == 0


@pytest.mark.parametrize("action", ["approve", "reject", "take_down"])
def test_org_staff_cannot_make_platform_moves(db: Database, action: str) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org, status=S.SUBMITTED)
        with pytest.raises(PermissionDenied) as err:
            service.do_transition(session=s, project=project, actor=staff_of(s, org),
                                  action=action, reason="x")
        assert err.value.code == "reviewer_only"
        assert project.status == S.SUBMITTED


@pytest.mark.parametrize("action", ["submit", "start", "end", "execute", "complete"])
def test_reviewers_cannot_make_organization_moves(db: Database, action: str) -> None:
    with db.transaction() as s:
        project = make_project(s, org=make_org(s), status=S.DRAFT)
        with pytest.raises(PermissionDenied) as err:
            service.do_transition(session=s, project=project, actor=reviewer(s), action=action)
        assert err.value.code == "org_staff_only"


def test_another_organizations_staff_is_refused_and_nothing_changes(db: Database) -> None:
    with db.transaction() as s:
        org, other = make_org(s), make_org(s)
        intruder = staff_of(s, other)
        project = make_project(s, org=org, status=S.FUNDRAISING)
        draft = make_project(s, org=org, status=S.DRAFT)
        for action in ("end", "pause"):
            with pytest.raises(PermissionDenied) as err:
                service.do_transition(session=s, project=project, actor=intruder,
                                      action=action, reason="x")
            assert err.value.code == "not_your_project"
        with pytest.raises(PermissionDenied) as err:
            service.do_update_project(session=s, actor=intruder, project=draft,
                                      fields=_fields(title="被篡改"))
        assert err.value.code == "not_your_project"
        assert project.status == S.FUNDRAISING and draft.title != "被篡改"
        donor = make_user(s)
        with pytest.raises(PermissionDenied):
            service.do_transition(session=s, project=project, actor=donor, action="end")


@pytest.mark.parametrize("source", [S.FUNDRAISING, S.ENDED, S.EXECUTING])
def test_pause_and_resume_by_the_organization_returns_to_the_state_before(
    db: Database, source: ProjectStatus
) -> None:
    with db.transaction() as s:
        org = make_org(s)
        staff = staff_of(s, org)
        project = make_project(s, org=org, status=source)
        with pytest.raises(InvalidInput) as err:
            service.do_transition(session=s, project=project, actor=staff, action="pause")
        assert err.value.code == "reason_required" and project.status == source
        service.do_transition(session=s, project=project, actor=staff, action="pause",
                              reason="物资采购暂缓")
        assert project.status == S.PAUSED and project.status_before_pause == source
        assert service.allowed_actions(project, service.Actor.ORG) == ["resume"]
        service.do_transition(session=s, project=project, actor=staff, action="resume")
        assert project.status == source and project.status_before_pause is None


def test_platform_pause_can_only_be_lifted_by_the_platform(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        staff = staff_of(s, org)
        rev = reviewer(s)
        project = make_project(s, org=org)
        service.do_transition(session=s, project=project, actor=rev, action="pause",
                              reason="收到举报,核查中")
        with pytest.raises(PermissionDenied) as err:
            service.do_transition(session=s, project=project, actor=staff, action="resume")
        assert err.value.code == "paused_by_platform" and project.status == S.PAUSED
        assert service.allowed_actions(project, service.Actor.ORG) == []
        service.do_transition(session=s, project=project, actor=rev, action="resume")
        assert project.status == S.FUNDRAISING


def test_take_down_notifies_every_donor_and_the_staff_and_is_final(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        staff = staff_of(s, org)
        rev = reviewer(s)
        project = make_project(s, org=org)
        donors = [make_user(s) for _ in range(3)]
        for donor in donors:
            paid_donation(s, project, donor=donor)
        paid_donation(s, project, donor=donors[0])  # gave twice: told once
        paid_donation(s, project, donor=None, name="匿名")  # a guest: nobody to tell
        bystander = make_user(s)
        with pytest.raises(InvalidInput):
            service.do_transition(session=s, project=project, actor=rev, action="take_down")
        service.do_transition(session=s, project=project, actor=rev, action="take_down",
                              reason="项目信息虚假")
        ids = {"donors": [d.id for d in donors], "staff": staff.id, "bystander": bystander.id,
               "pid": project.id, "title": project.title}
    with db.transaction() as s:
        rows = s.scalars(select(Notification)).all()
        told = sorted(n.user_id for n in rows)
        assert told == sorted([*ids["donors"], ids["staff"]])
        texts = accounts.render_notifications(rows, locale="zh_CN")
        assert all(n.body == "原因：项目信息虚假" for n in texts)
        assert {n.title for n in texts if n.link == f"/projects/{ids['pid']}"} == {
            f"您支持的项目「{ids['title']}」已被平台下架。"}
        assert audit_count(s, "projects.project.taken_down") == 1
        project = s.get(Project, ids["pid"])
        assert project is not None and project.status == S.TAKEN_DOWN
        assert service.allowed_actions(project, service.Actor.PLATFORM) == []


@pytest.mark.parametrize("action", ["pause", "take_down"])
def test_a_platform_action_reaches_giving_day_donors_too(db: Database, action: str) -> None:
    # Issue 12: the notice used to read ordinary donations only, so whoever gave on a giving
    # day never heard that the project they supported was paused or taken down.
    with db.transaction() as s:
        org = make_org(s)
        staff = staff_of(s, org)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        ordinary, giving_day = make_user(s), make_user(s)
        paid_donation(s, project, donor=ordinary)
        make_campaign_gift(s, campaign=campaign, project=project, donor=giving_day)
        make_campaign_gift(s, campaign=campaign, project=project, donor=None)  # a guest
        service.do_transition(session=s, project=project, actor=reviewer(s), action=action,
                              reason="核查")
        donors, staff_id, pid = sorted([ordinary.id, giving_day.id]), staff.id, project.id
    with db.transaction() as s:
        told = {n.user_id: n.link for n in s.scalars(select(Notification))}
    assert told == {donors[0]: f"/projects/{pid}", donors[1]: f"/projects/{pid}",
                    staff_id: f"/console/projects/{pid}"}


def test_platform_pause_notifies_donors_but_organization_pause_does_not(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        staff = staff_of(s, org)
        project = make_project(s, org=org)
        paid_donation(s, project, donor=make_user(s))
        service.do_transition(session=s, project=project, actor=staff, action="pause",
                              reason="暂缓")
        assert s.scalar(select(func.count()).select_from(Notification)) == 0
        service.do_transition(session=s, project=project, actor=staff, action="resume")
        service.do_transition(session=s, project=project, actor=reviewer(s), action="pause",
                              reason="核查")
        assert s.scalar(select(func.count()).select_from(Notification)) == 2


def test_submit_requires_an_approved_organization(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s, status=OrgStatus.PENDING)
        project = make_project(s, org=org, status=S.DRAFT)
        with pytest.raises(Conflict) as err:
            service.do_transition(session=s, project=project, actor=staff_of(s, org),
                                  action="submit")
        assert err.value.code == "organization_not_approved" and project.status == S.DRAFT


def test_filing_is_required_and_checked_at_submit_and_at_start(db: Database) -> None:
    today = today_cn()
    with db.transaction() as s:
        org = make_org(s)
        staff = staff_of(s, org)
        project = make_project(s, org=org, status=S.DRAFT)
        project.filing_number = None
        with pytest.raises(InvalidInput) as err:
            service.do_transition(session=s, project=project, actor=staff, action="submit")
        assert err.value.code == "filing_required" and project.status == S.DRAFT
        project.filing_number = "53100000500021676Q20260002"
        project.filing_valid_from, project.filing_valid_until = today - days(60), today - days(1)
        with pytest.raises(InvalidInput) as err:
            service.do_transition(session=s, project=project, actor=staff, action="submit")
        assert err.value.code == "filing_not_valid" and project.status == S.DRAFT

        approved = make_project(s, org=org, status=S.APPROVED)
        approved.filing_valid_from = today + days(3)
        approved.filing_valid_until = today + days(90)
        with pytest.raises(InvalidInput) as err:
            service.do_transition(session=s, project=approved, actor=staff, action="start")
        assert err.value.code == "filing_not_valid" and approved.status == S.APPROVED
        assert str(approved.filing_valid_from) in err.value.message
        # On a day inside the window the same project starts.
        service.do_transition(session=s, project=approved, actor=staff, action="start",
                              on=today + days(3))
        assert approved.status == S.FUNDRAISING


def test_check_accepts_donations(db: Database) -> None:
    today = today_cn()
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        service.check_accepts_donations(project=project, on=today)
        with pytest.raises(Conflict) as err:
            service.check_accepts_donations(project=project, on=today + days(365))
        assert err.value.code == "project_not_fundraising"
        paused = make_project(s, org=org, status=S.PAUSED)
        with pytest.raises(Conflict) as err:
            service.check_accepts_donations(project=paused, on=today)
        assert err.value.code == "project_not_fundraising"
        assert err.value.details["status"] == "paused"


def test_partner_rule(db: Database) -> None:
    with db.transaction() as s:
        unqualified = make_org(s, qualified=False)
        staff = staff_of(s, unqualified)
        partner = make_org(s)
        pending_partner = make_org(s, status=OrgStatus.PENDING)
        unqualified_partner = make_org(s, qualified=False)
        for bad in (None, unqualified.id, pending_partner.id, unqualified_partner.id, 999_999):
            with pytest.raises(InvalidInput) as err:
                service.do_create_project(session=s, actor=staff,
                                          fields=_fields(recipient_org_id=bad))
            assert err.value.code == "partner_required"
            assert err.value.field == "recipient_org_id"
        assert s.scalar(select(func.count()).select_from(Project)) == 0
        project = service.do_create_project(session=s, actor=staff,
                                            fields=_fields(recipient_org_id=partner.id))
        assert project.recipient_org_id == partner.id
        # A qualified organization always receives its own funds.
        qualified = make_org(s)
        own = service.do_create_project(session=s, actor=staff_of(s, qualified),
                                        fields=_fields(recipient_org_id=partner.id))
        assert own.recipient_org_id == qualified.id


def test_start_refused_when_the_partner_lost_its_qualification(db: Database) -> None:
    today = today_cn()
    with db.transaction() as s:
        org = make_org(s, qualified=False)
        partner = make_org(s)
        project = make_project(s, org=org, recipient=partner, status=S.APPROVED)
        partner.fundraising_valid_until = today - days(1)
        with pytest.raises(InvalidInput) as err:
            service.do_transition(session=s, project=project, actor=staff_of(s, org),
                                  action="start")
        assert err.value.code == "partner_required" and project.status == S.APPROVED


@pytest.mark.parametrize(("goal", "code"), [
    ("0", "amount_not_positive"), ("-5", "amount_not_positive"), ("abc", "amount_not_a_number"),
    ("1.234", "amount_not_whole_fen"), ("", "goal_required"),
])
def test_goal_errors(goal: str, code: str) -> None:
    form = {"title": "t", "summary": "s", "province": "北京", "fundraising_plan": "p",
            "goal": goal}
    with pytest.raises(InvalidInput) as err:
        service.parse_form(form)
    assert err.value.code == code and err.value.field == "goal"


def test_field_errors_name_the_field(db: Database) -> None:
    with db.transaction() as s:
        staff = staff_of(s, make_org(s))
        cases = [
            (_fields(title="长" * 81), "title_too_long"),
            (_fields(title=" "), "title_required"),
            (_fields(province="火星"), "invalid_province"),
            (_fields(category="casino"), "invalid_category"),
            (_fields(goal_fen=0), "goal_not_positive"),
            (_fields(fundraising_plan=""), "fundraising_plan_required"),
            (_fields(filing_valid_from=today_cn(), filing_valid_until=today_cn() - days(1)),
             "filing_dates_reversed"),
        ]
        for fields, code in cases:
            with pytest.raises(InvalidInput) as err:
                service.do_create_project(session=s, actor=staff, fields=fields)
            assert err.value.code == code
        assert s.scalar(select(func.count()).select_from(Project)) == 0
        assert len(service.parse_form({
            "title": "t", "summary": "s", "goal": "12.5", "province": "北京",
            "fundraising_plan": "p"}).title) == 1


def test_editing_only_while_draft_or_rejected(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org, status=S.FUNDRAISING)
        with pytest.raises(Conflict) as err:
            service.do_update_project(session=s, actor=staff_of(s, org), project=project,
                                      fields=_fields(goal_fen=1))
        assert err.value.code == "project_not_editable"
        assert project.goal_fen == 1_000_000
