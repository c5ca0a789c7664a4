"""Project pages, the organization console and the reviewers' pages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.accounts.models import Role
from shanju.core.db import Database
from shanju.core.files import Attachment
from shanju.organizations.models import Organization
from shanju.projects.models import Project, ProjectStatus, ProjectUpdate
from tests.factories import make_org, make_project, make_user
from tests.projects.helpers import PNG, paid_donation, reviewer, sign_in, staff_of

S = ProjectStatus


def test_project_page_shows_required_disclosures_and_masked_names(
    client: TestClient, db: Database
) -> None:
    with db.transaction() as s:
        org = make_org(s, qualified=False, name="云南山区助学促进会")
        partner = make_org(s, name="中国乡村发展基金会")
        project = make_project(s, org=org, recipient=partner, title="乡村学校冬季温暖包")
        donor = make_user(s, email="zhangsanfeng@example.org", display_name="张三丰")
        paid_donation(s, project, donor=donor, name="张三丰", message="加油!")
        paid_donation(s, project, name="李四光", anonymous=True)
        pid = project.id
        expected = [partner.name, partner.uscc, org.name, org.uscc, partner.fundraising_cert_no,
                    project.filing_number, str(project.filing_valid_from),
                    str(project.filing_valid_until), project.fundraising_plan,
                    partner.contact_phone]
    page = client.get(f"/projects/{pid}")
    assert page.status_code == 200
    for text in expected:
        assert text and text in page.text
    assert "张**" in page.text and "加油!" in page.text
    assert "张三丰" not in page.text and "李四光" not in page.text
    assert "zhangsanfeng@example.org" not in page.text
    assert f'action="/projects/{pid}/donate"' in page.text
    assert "<svg" in page.text  # the share QR code
    assert "/complaints/new?organization_id=" in page.text
    assert "¥200" in page.text  # two gifts of ¥100 raised


def test_project_not_fundraising_shows_a_notice_instead_of_the_form(
    client: TestClient, db: Database
) -> None:
    with db.transaction() as s:
        pid = make_project(s, org=make_org(s), status=S.PAUSED).id
    page = client.get(f"/projects/{pid}")
    assert page.status_code == 200
    assert "/donate" not in page.text and 'data-status="paused"' in page.text


def test_unpublished_projects_are_not_found_for_the_public(client: TestClient,
                                                           db: Database) -> None:
    with db.transaction() as s:
        pid = make_project(s, org=make_org(s), status=S.SUBMITTED).id
    assert client.get(f"/projects/{pid}").status_code == 404
    assert client.get("/projects/999999").status_code == 404


def test_project_list_puts_fundraising_first_and_filters(client: TestClient,
                                                        db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s, province="云南")
        done = make_project(s, org=org, status=S.COMPLETED, title="已完成的项目")
        live = make_project(s, org=org, title="正在筹款的项目")
        make_project(s, org=org, status=S.DRAFT, title="草稿项目")
        other = make_project(s, org=make_org(s, province="四川"), title="四川项目")
        ids = (done.id, live.id, other.id)
    page = client.get("/projects")
    assert page.status_code == 200 and "草稿项目" not in page.text
    order = [int(m) for m in re.findall(r'data-project-id="(\d+)"', page.text)]
    assert order.index(ids[1]) < order.index(ids[0])
    filtered = client.get("/projects", params={"province": "四川", "category": "other"})
    assert "四川项目" in filtered.text and "正在筹款的项目" not in filtered.text


def test_console_create_edit_submit_flow(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        uid = staff_of(s, org).id
    csrf = sign_in(client, db, uid)
    form = {"csrf_token": csrf, "title": "乡村学校冬季温暖包", "summary": "送温暖",
            "category": "children", "province": "云南", "goal": "0",
            "fundraising_plan": "采购温暖包", "filing_number": "53100000500021676Q20260009",
            "filing_valid_from": "2020-01-01", "filing_valid_until": "2099-12-31"}
    bad = client.post("/console/projects/new", data=form, follow_redirects=False)
    assert bad.status_code == 422 and "乡村学校冬季温暖包" in bad.text
    assert 'data-code="amount_not_positive"' in bad.text
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Project)) == 0
    form["goal"] = "50000"
    ok = client.post("/console/projects/new", data=form, files={"cover": ("c.png", PNG,
                                                                          "image/png")},
                     follow_redirects=False)
    assert ok.status_code == 303
    pid = int(ok.headers["location"].rsplit("/", 1)[-1])
    with db.transaction() as s:
        project = s.get(Project, pid)
        assert project is not None and project.goal_fen == 5_000_000
        assert project.cover_image_id is not None
        cover_id = project.cover_image_id
    cover = client.get(f"/files/{cover_id}")
    assert cover.status_code == 200 and cover.headers["content-type"] == "image/webp"
    assert client.get("/console").status_code == 200
    edit = client.post(f"/console/projects/{pid}/edit", data={**form, "title": "新标题"},
                       follow_redirects=False)
    assert edit.status_code == 303
    submitted = client.post(f"/console/projects/{pid}/actions/submit",
                            data={"csrf_token": csrf}, follow_redirects=False)
    assert submitted.status_code == 303
    # The console says what happens next: review, and a notification of the decision.
    console = client.get(f"/console/projects/{pid}").text
    assert 'data-next="review"' in console
    assert "已提交审核。平台审核员会审核这个项目" in console
    again = client.post(f"/console/projects/{pid}/actions/submit", data={"csrf_token": csrf})
    assert again.status_code == 409 and 'data-code="illegal_transition"' in again.text
    with db.transaction() as s:
        project = s.get(Project, pid)
        assert project is not None and project.status == S.SUBMITTED
        assert project.title == "新标题"


def test_console_refuses_another_organizations_project(client: TestClient,
                                                       db: Database) -> None:
    with db.transaction() as s:
        org, other = make_org(s), make_org(s)
        pid = make_project(s, org=org).id
        uid = staff_of(s, other).id
    csrf = sign_in(client, db, uid)
    page = client.get(f"/console/projects/{pid}")
    assert page.status_code == 403 and "not_your_project" in page.text
    for path in (f"/console/projects/{pid}/actions/end", f"/console/projects/{pid}/updates",
                 f"/console/projects/{pid}/fund-usages", f"/console/projects/{pid}/edit"):
        response = client.post(path, data={"csrf_token": csrf, "title": "x", "body": "y",
                                           "amount": "1", "purpose": "p"})
        assert response.status_code == 403, path
    with db.transaction() as s:
        assert s.get(Project, pid).status == S.FUNDRAISING  # type: ignore[union-attr]
        assert s.scalar(select(func.count()).select_from(ProjectUpdate)) == 0


def test_console_requires_sign_in_and_staff(client: TestClient, db: Database) -> None:
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    with db.transaction() as s:
        uid = make_user(s).id
    sign_in(client, db, uid)
    assert client.get("/console").status_code == 403


def test_console_sends_staff_without_an_organization_to_register_it(
    client: TestClient, db: Database
) -> None:
    with db.transaction() as s:
        uid = make_user(s, role=Role.ORG_STAFF).id
    sign_in(client, db, uid)
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/organizations/register"
    assert client.get("/organizations/register").status_code == 200


def test_console_update_with_photo_and_bad_file(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        pid = make_project(s, org=org).id
        uid = staff_of(s, org).id
    csrf = sign_in(client, db, uid)
    bad = client.post(f"/console/projects/{pid}/updates",
                      data={"csrf_token": csrf, "title": "进展", "body": "内容"},
                      files=[("photos", ("evil.png", b"<html>", "image/png"))])
    assert bad.status_code == 422 and "evil.png" in bad.text
    ok = client.post(f"/console/projects/{pid}/updates",
                     data={"csrf_token": csrf, "title": "进展", "body": "内容"},
                     files=[("photos", ("p.png", PNG, "image/png"))], follow_redirects=False)
    assert ok.status_code == 303
    overdraft = client.post(f"/console/projects/{pid}/fund-usages",
                            data={"csrf_token": csrf, "amount": "10", "purpose": "采购",
                                  "spent_on": "2020-01-01"})
    assert overdraft.status_code == 409 and "insufficient_funds" in overdraft.text
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(ProjectUpdate)) == 1
        assert s.scalar(select(func.count()).select_from(Attachment)) == 1
    page = client.get(f"/projects/{pid}")
    assert "进展" in page.text and "/files/" in page.text


def test_reviewer_pages(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        submitted = make_project(s, org=org, status=S.SUBMITTED, title="待审核项目")
        make_project(s, org=org, status=S.FUNDRAISING, title="筹款中项目")
        pid = submitted.id
        uid = reviewer(s).id
    csrf = sign_in(client, db, uid)
    listing = client.get("/review/projects")
    assert listing.status_code == 200
    assert listing.text.index("待审核项目") < listing.text.index("筹款中项目")
    assert client.get(f"/review/projects/{pid}").status_code == 200
    no_reason = client.post(f"/review/projects/{pid}/actions/reject",
                            data={"csrf_token": csrf, "reason": ""})
    assert no_reason.status_code == 422 and "reason_required" in no_reason.text
    approved = client.post(f"/review/projects/{pid}/actions/approve",
                           data={"csrf_token": csrf}, follow_redirects=False)
    assert approved.status_code == 303
    with db.transaction() as s:
        assert s.get(Project, pid).status == S.APPROVED  # type: ignore[union-attr]
    no_csrf = client.post(f"/review/projects/{pid}/actions/take_down", data={"reason": "x"})
    assert no_csrf.status_code == 403
    with db.transaction() as s:
        assert s.get(Project, pid).status == S.APPROVED  # type: ignore[union-attr]
        assert s.scalar(select(func.count()).select_from(Organization)) == 1
