"""Filters (field, province, organization, giving day, state) and sorts (recommended, ending
soon, nearly there, newest, most donors) of the project list, and the organization directory's
two parts — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from shanju.campaigns.models import CampaignStatus, Enrolment, EnrolmentStatus
from shanju.core.clock import today_cn
from shanju.core.db import Database
from shanju.core.errors import InvalidInput
from shanju.discovery import service as discovery
from shanju.organizations.models import OrgStatus
from shanju.projects import service as projects
from shanju.projects.models import Project, ProjectStatus
from tests.factories import make_campaign, make_org, make_project
from tests.projects.helpers import paid_donation

S = ProjectStatus


def _titles(session: Session, **params: object) -> list[str]:
    query = discovery.check_project_query(session=session, **params)  # type: ignore[arg-type]
    items, total = discovery.search_projects(session=session, query=query, limit=100)
    assert total == len(items)
    return [i.project.title for i in items]


def _project(session: Session, title: str, *, org: object, status: S = S.FUNDRAISING,
             goal_fen: int = 100_000, starts_in: int | None = -10, ends_in: int | None = 30,
             category: str = "other", gifts: tuple[int, ...] = ()) -> Project:
    today = today_cn()
    project = make_project(session, org=org, status=status, goal_fen=goal_fen,  # type: ignore[arg-type]
                           title=title)
    project.category = category
    project.starts_on = today + dt.timedelta(days=starts_in) if starts_in is not None else None
    project.ends_on = today + dt.timedelta(days=ends_in) if ends_in is not None else None
    for amount in gifts:
        paid_donation(session, project, amount_fen=amount)
    session.flush()
    return project


def test_sorts_order_the_projects(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        _project(s, "九成", org=org, gifts=(60_000, 30_000), ends_in=30, starts_in=-5)
        _project(s, "五成", org=org, gifts=(20_000, 20_000, 10_000), ends_in=5, starts_in=-20)
        _project(s, "已筹满", org=org, gifts=(120_000,), ends_in=-1, starts_in=-30)
        _project(s, "刚开始", org=org, ends_in=None, starts_in=-1)
        _project(s, "已结束", org=org, status=S.ENDED, gifts=(95_000,), ends_in=2,
                 starts_in=-60)
        _project(s, "无日期", org=org, starts_in=None, ends_in=None, gifts=(1_000,) * 4)
    with db.transaction(write=False) as s:
        # Fundraising and under the goal, the highest share first; then the rest by state.
        assert _titles(s, sort="nearly_there") == ["九成", "五成", "无日期", "刚开始", "已筹满",
                                                   "已结束"]
        # Fundraising and ending today or later, the nearest first; then the rest by state.
        assert _titles(s, sort="ending_soon") == ["五成", "九成", "已筹满", "无日期", "刚开始",
                                                  "已结束"]
        assert _titles(s, sort="newest") == ["刚开始", "九成", "五成", "已筹满", "已结束",
                                             "无日期"]
        assert _titles(s, sort="most_donors") == ["无日期", "五成", "九成", "已结束", "已筹满",
                                                  "刚开始"]
        # The cards' totals come with the order: the same as everywhere else.
        for sort in ("nearly_there", "most_donors"):
            query = discovery.check_project_query(session=s, sort=sort)
            items, _ = discovery.search_projects(session=s, query=query)
            again = projects.with_totals(session=s, projects=[i.project for i in items])
            assert [(i.raised_fen, i.donations) for i in items] == [
                (i.raised_fen, i.donations) for i in again]
            assert items[0].raised_fen == 90_000 or sort == "most_donors"
        # Recommended: fundraising first, newest first within a state.
        assert _titles(s) == ["无日期", "刚开始", "已筹满", "五成", "九成", "已结束"]
        assert _titles(s, sort="recommended") == _titles(s)


def test_recommended_puts_title_matches_first_then_featured(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        story = _project(s, "山区图书角", org=org)
        story.description = "每本书都为留守儿童准备"
        _project(s, "留守儿童陪伴计划", org=org)
        featured = _project(s, "春蕾女童助学", org=org)
        featured.featured = True
        _project(s, "社区长者食堂", org=org)
    with db.transaction(write=False) as s:
        assert _titles(s, q="儿童") == ["留守儿童陪伴计划", "山区图书角"]
        assert _titles(s)[0] == "春蕾女童助学"


def test_filters_narrow_the_list(db: Database) -> None:
    with db.transaction() as s:
        yn = make_org(s, province="云南", name="云南青山基金会")
        sc = make_org(s, province="四川", qualified=False, name="四川社工中心")
        a = _project(s, "云南助学", org=yn, category="education")
        _project(s, "云南护河", org=yn, category="environment")
        c = _project(s, "四川助学", org=sc, category="education")
        c.recipient_org_id = yn.id  # raised through the qualified partner
        _project(s, "云南已完成", org=yn, status=S.COMPLETED, category="education")
        _project(s, "云南暂停", org=yn, status=S.PAUSED)
        _project(s, "云南草稿", org=yn, status=S.DRAFT)
        day = make_campaign(s, projects=[a])
        applied = _project(s, "申请中的项目", org=sc)
        s.add(Enrolment(campaign_id=day.id, project_id=applied.id, organization_id=sc.id,
                        status=EnrolmentStatus.APPLIED))
        draft_day = make_campaign(s, status=CampaignStatus.DRAFT, projects=[a])
        ids = {"yn": yn.id, "sc": sc.id, "day": day.id, "draft_day": draft_day.id}
    with db.transaction(write=False) as s:
        assert set(_titles(s, field="education")) == {"云南已完成", "云南助学", "四川助学"}
        assert set(_titles(s, province="四川")) == {"四川助学", "申请中的项目"}
        assert set(_titles(s, province="四川省")) == {"四川助学", "申请中的项目"}
        assert set(_titles(s, province="Sichuan")) == {"四川助学", "申请中的项目"}
        # An organization's projects: those it publishes and those it receives the funds of.
        assert set(_titles(s, organization_id=ids["yn"])) == {
            "云南已完成", "云南护河", "云南助学", "四川助学"}
        assert _titles(s, campaign_id=ids["day"]) == ["云南助学"]
        assert _titles(s, status=["completed"]) == ["云南已完成"]
        assert set(_titles(s, status=["paused,completed"])) == {"云南已完成", "云南暂停"}
        assert "云南暂停" not in _titles(s) and "云南草稿" not in _titles(s)
        assert _titles(s, q="助学", field="education", province="云南", status=["fundraising"],
                       organization_id=ids["yn"], campaign_id=ids["day"]) == ["云南助学"]
        with pytest.raises(InvalidInput) as caught:
            discovery.check_project_query(session=s, campaign_id=ids["draft_day"])
        assert caught.value.code == "invalid_campaign"


@pytest.mark.parametrize(("params", "code"), [
    ({"sort": "hot"}, "invalid_sort"),
    ({"field": "sports"}, "invalid_field"),
    ({"province": "火星"}, "invalid_province"),
    ({"status": ["draft"]}, "invalid_status"),
    ({"status": ["fundraising,submitted"]}, "invalid_status"),
    ({"campaign_id": 999_999}, "invalid_campaign"),
    ({"organization_id": 999_999}, "invalid_organization"),
    ({"q": "字" * 51}, "query_too_long"),
])
def test_bad_filters_are_refused_with_a_code(db: Database, params: dict[str, object],
                                             code: str) -> None:
    with db.transaction(write=False) as s, pytest.raises(InvalidInput) as caught:
        discovery.check_project_query(session=s, **params)  # type: ignore[arg-type]
    assert caught.value.code == code


def test_a_pending_organization_is_no_filter(db: Database) -> None:
    with db.transaction() as s:
        pending = make_org(s, status=OrgStatus.PENDING).id
    with db.transaction(write=False) as s, pytest.raises(InvalidInput) as caught:
        discovery.check_project_query(session=s, organization_id=pending)
    assert caught.value.code == "invalid_organization"


def test_the_directory_separates_charities_raising_funds(db: Database) -> None:
    with db.transaction() as s:
        qualified = make_org(s, name="有资格的基金会", province="云南")
        with_project = make_org(s, qualified=False, name="有项目的社工中心", province="四川")
        _project(s, "社区助老", org=with_project, category="elderly")
        partner_of = make_org(s, qualified=False, name="合作方社工中心")
        via = _project(s, "合作项目", org=partner_of, category="children")
        via.recipient_org_id = qualified.id
        make_org(s, qualified=False, name="峰会报名协会", province="云南")
        drafts_only = make_org(s, qualified=False, name="只有草稿的协会")
        _project(s, "草稿", org=drafts_only, status=S.DRAFT)
        expired = make_org(s, name="资格过期的基金会")
        expired.fundraising_valid_until = today_cn() - dt.timedelta(days=1)
        make_org(s, name="待审核的基金会", status=OrgStatus.PENDING)

    def names(kind: str, **params: str) -> set[str]:
        with db.transaction(write=False) as s:
            query = discovery.check_org_query(kind=kind, **params)
            items, total = discovery.search_organizations(session=s, query=query)
            assert total == len(items)
            return {i.organization.name for i in items}

    assert names("fundraising") == {"合作方社工中心", "有资格的基金会", "有项目的社工中心"}
    assert names("other") == {"只有草稿的协会", "峰会报名协会", "资格过期的基金会"}
    assert len(names("all")) == 6
    assert names("fundraising", province="云南") == {"有资格的基金会"}
    assert names("other", province="云南") == {"峰会报名协会"}
    # An organization's fields are those of its listed projects (as publisher or recipient).
    assert names("fundraising", field="children") == {"合作方社工中心", "有资格的基金会"}
    assert names("fundraising", field="elderly") == {"有项目的社工中心"}
    assert names("other", q="协会") == {"只有草稿的协会", "峰会报名协会"}
    with db.transaction(write=False) as s:
        counts = discovery.count_by_kind(session=s, query=discovery.check_org_query(q="基金会"))
        assert counts == {"fundraising": 1, "other": 1, "all": 2}
        query = discovery.check_org_query(kind="fundraising")
        items, _ = discovery.search_organizations(session=s, query=query)
        # The most listed projects first: the qualified partner has one (received).
        listing = {i.organization.name: i for i in items}
        assert listing["有资格的基金会"].projects == 1 and listing["有资格的基金会"].qualified
        assert listing["有项目的社工中心"].projects == 1
        assert all(i.raises_funds for i in items)
    with pytest.raises(InvalidInput) as caught:
        discovery.check_org_query(kind="summit")
    assert caught.value.code == "invalid_kind"
