"""Filing reports (pages and API), the reviewers' list with overdue highlighting, answers."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient

from shanju.accounts.models import Role
from shanju.complaints import service
from shanju.complaints.models import Complaint, ComplaintStatus
from shanju.complaints.schemas import ComplaintCreate
from shanju.core.clock import today_cn
from shanju.core.db import Database
from shanju.organizations.models import OrgStatus
from shanju.projects.models import ProjectStatus
from tests.factories import make_org, make_project
from tests.organizations.helpers import (
    api_token,
    audit_actions,
    count,
    csrf,
    new_user,
    notifications,
    run,
    sign_in,
)

CONTENT = "项目页面上的受助儿童照片与另一家机构的项目完全相同，怀疑虚假信息。"


def _org_and_project(db: Database) -> tuple[int, int]:
    def seed(session):  # type: ignore[no-untyped-def]
        o = make_org(session)
        return o.id, make_project(session, org=o).id

    return run(db, seed)


def _file(client: TestClient, **fields: str) -> object:
    data = {"category": "false_information", "content": CONTENT, "contact": "",
            "csrf_token": csrf(client), **fields}
    return client.post("/complaints", data=data, follow_redirects=False)


def test_anonymous_visitor_files_a_report_from_the_project_page_link(
    client: TestClient, db: Database
) -> None:
    org_id, project_id = _org_and_project(db)
    form = client.get(f"/complaints/new?organization_id={org_id}&project_id={project_id}")
    assert form.status_code == 200
    assert 'name="csrf_token"' in form.text

    response = _file(client, organization_id=str(org_id), project_id=str(project_id),
                     contact="微信 zhang_san")

    assert response.status_code == 303  # type: ignore[attr-defined]
    thanks = client.get(response.headers["location"])  # type: ignore[attr-defined]
    complaint = run(db, lambda s: s.query(Complaint).one())
    assert complaint.project_id == project_id and complaint.organization_id == org_id
    assert complaint.reporter_id is None
    assert complaint.reporter_contact == "微信 zhang_san"
    assert complaint.status == ComplaintStatus.OPEN
    assert complaint.due_on == service.deadline_for(today_cn())
    assert service.complaint_number(complaint) in thanks.text
    assert complaint.due_on.isoformat() in thanks.text
    # The receipt leads back to the reported page.
    assert f'class="btn secondary" href="/projects/{project_id}"' in thanks.text
    assert audit_actions(db, "complaint", complaint.id) == ["complaints.complaint.filed"]


def test_signed_in_reporter_is_recorded_and_told_of_the_answer(
    client: TestClient, db: Database
) -> None:
    org_id, _ = _org_and_project(db)
    reporter = new_user(db)
    sign_in(client, db, reporter)
    assert _file(client, organization_id=str(org_id)).status_code == 303  # type: ignore[attr-defined]
    complaint = run(db, lambda s: s.query(Complaint).one())
    assert complaint.reporter_id == reporter

    reviewer = new_user(db, Role.REVIEWER)
    sign_in(client, db, reviewer)
    empty = client.post(f"/review/complaints/{complaint.id}/answer",
                        data={"answer": "  ", "csrf_token": csrf(client)})
    assert empty.status_code == 422
    assert 'data-code="answer_required"' in empty.text
    assert run(db, lambda s: s.get(Complaint, complaint.id)).status == ComplaintStatus.OPEN

    answered = client.post(f"/review/complaints/{complaint.id}/answer",
                           data={"answer": "经核实，该机构已更正项目图片。",
                                 "csrf_token": csrf(client)},
                           follow_redirects=False)
    assert answered.status_code == 303
    after = run(db, lambda s: s.get(Complaint, complaint.id))
    assert after.status == ComplaintStatus.ANSWERED
    assert after.answered_by_id == reviewer and after.answered_at is not None
    assert audit_actions(db, "complaint", complaint.id)[-1] == "complaints.complaint.answered"
    assert [n.kind for n in notifications(db, reporter)] == ["complaint.answered"]
    sign_in(client, db, reporter)
    page = client.get("/me").text
    assert f"您的举报 {service.complaint_number(after)} 已得到平台答复。" in page
    assert "平台答复：经核实，该机构已更正项目图片。" in page


@pytest.mark.parametrize(
    ("fields", "code", "status"),
    [
        ({"content": "太短了"}, "content_too_short", 422),
        ({"content": "长" * 2001}, "content_too_long", 422),
        ({"category": "spam"}, "invalid_category", 422),
        ({"contact": "x" * 121}, "contact_too_long", 422),
        ({"organization_id": "999999"}, "organization_not_found", 404),
        ({"organization_id": "abc"}, "invalid_id", 422),
        ({"organization_id": ""}, "target_required", 422),
    ],
)
def test_report_errors_change_nothing(
    client: TestClient, db: Database, fields: dict[str, str], code: str, status: int
) -> None:
    org_id, _ = _org_and_project(db)
    response = _file(client, **{"organization_id": str(org_id), **fields})
    assert response.status_code == status  # type: ignore[attr-defined]
    assert f'data-code="{code}"' in response.text  # type: ignore[attr-defined]
    assert count(db, Complaint) == 0


def test_report_keeps_the_input_on_error(client: TestClient, db: Database) -> None:
    org_id, _ = _org_and_project(db)
    response = _file(client, organization_id=str(org_id), category="", contact="13800000000")
    assert 'data-code="invalid_category"' in response.text  # type: ignore[attr-defined]
    assert CONTENT in response.text and "13800000000" in response.text  # type: ignore[attr-defined]


def test_report_without_csrf_is_refused(client: TestClient, db: Database) -> None:
    org_id, _ = _org_and_project(db)
    response = client.post("/complaints", data={
        "organization_id": str(org_id), "category": "fraud", "content": CONTENT})
    assert response.status_code == 403
    assert count(db, Complaint) == 0


def test_hidden_org_or_project_cannot_be_reported(client: TestClient, db: Database) -> None:
    def seed(session):  # type: ignore[no-untyped-def]
        pending = make_org(session, status=OrgStatus.PENDING)
        o = make_org(session)
        other = make_org(session)
        draft = make_project(session, org=o, status=ProjectStatus.DRAFT)
        return pending.id, o.id, other.id, draft.id, make_project(session, org=other).id

    pending, org_id, other, draft, other_project = run(db, seed)
    assert client.get(f"/complaints/new?organization_id={pending}").status_code == 404
    assert client.get(f"/complaints/new?project_id={draft}").status_code == 404
    wrong = _file(client, organization_id=str(org_id), project_id=str(other_project))
    assert 'data-code="project_not_of_organization"' in wrong.text  # type: ignore[attr-defined]
    # The project alone names its organization.
    assert client.get(f"/complaints/new?project_id={other_project}").status_code == 200
    assert count(db, Complaint) == 0


def test_due_date_skips_a_weekend_and_a_holiday(db: Database) -> None:
    org_id, _ = _org_and_project(db)

    def file(session, day):  # type: ignore[no-untyped-def]
        return service.do_file(
            session=session,
            data=ComplaintCreate(organization_id=org_id, category="fraud", content=CONTENT),
            actor=None, today=day,
        ).due_on

    # Friday 2026-11-27 → the next Friday (weekend skipped).
    assert run(db, lambda s: file(s, dt.date(2026, 11, 27))) == dt.date(2026, 12, 4)
    # Wednesday 2026-09-30 → Thu 8, Fri 9, Sat 10 (make-up), Mon 12, Tue 13 Oct.
    assert run(db, lambda s: file(s, dt.date(2026, 9, 30))) == dt.date(2026, 10, 13)


def test_review_list_puts_open_first_by_due_date_and_highlights_overdue(
    client: TestClient, db: Database
) -> None:
    today = today_cn()

    def seed(session):  # type: ignore[no-untyped-def]
        o = make_org(session, name="被举报基金会")
        rows = {}
        for key, due, status in (
            ("later", today + dt.timedelta(days=4), ComplaintStatus.OPEN),
            ("late", today - dt.timedelta(days=2), ComplaintStatus.OPEN),
            ("done", today - dt.timedelta(days=9), ComplaintStatus.ANSWERED),
            ("today", today, ComplaintStatus.OPEN),
        ):
            c = Complaint(organization_id=o.id, category="fraud", content=CONTENT,
                          due_on=due, status=status)
            session.add(c)
            session.flush()
            rows[key] = c.id
        return rows

    ids = run(db, seed)
    sign_in(client, db, new_user(db, Role.REVIEWER))

    page = client.get("/review/complaints?status=all").text
    order = [int(i) for i in re.findall(r'data-complaint-id="(\d+)"', page)]
    assert order == [ids["late"], ids["today"], ids["later"], ids["done"]]
    classes = {int(i): cls for cls, i in
               re.findall(r'<tr class="([^"]*)" data-complaint-id="(\d+)"', page)}
    assert "overdue" in classes[ids["late"]]
    assert all("overdue" not in classes[ids[k]] for k in ("today", "later", "done"))
    assert page.count('badge bad') == 1
    open_page = client.get("/review/complaints").text
    assert f'data-complaint-id="{ids["done"]}"' not in open_page

    api = client.get("/api/v1/complaints", headers=api_token(db, new_user(db, Role.REVIEWER)))
    items = api.json()["items"]
    assert [i["id"] for i in items] == order
    assert [i["overdue"] for i in items] == [True, False, False, False]
    assert items[0]["days_remaining"] == -2 and items[2]["days_remaining"] == 4
    assert items[0]["organization_name"] == "被举报基金会"


def test_api_file_list_and_answer(client: TestClient, db: Database) -> None:
    org_id, project_id = _org_and_project(db)
    filed = client.post("/api/v1/complaints", json={
        "project_id": project_id, "category": "commercial_ads", "content": CONTENT})
    assert filed.status_code == 201, filed.text
    receipt = filed.json()
    assert receipt["status"] == "open"
    assert receipt["due_on"] == service.deadline_for(today_cn()).isoformat()
    assert receipt["number"].startswith("JB")

    bad = client.post("/api/v1/complaints", json={"organization_id": org_id,
                                                  "category": "fraud", "content": "短"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "content_too_short"
    assert count(db, Complaint) == 1

    donor = api_token(db, new_user(db))
    assert client.get("/api/v1/complaints", headers=donor).status_code == 403
    refused = client.post(f"/api/v1/complaints/{receipt['id']}/answer",
                          json={"answer": "已处理"}, headers=donor)
    assert refused.status_code == 403
    assert client.get("/api/v1/complaints").status_code == 401

    reviewer = api_token(db, new_user(db, Role.REVIEWER))
    listing = client.get("/api/v1/complaints", headers=reviewer).json()
    assert listing["total"] == 1 and listing["items"][0]["project_id"] == project_id
    empty = client.post(f"/api/v1/complaints/{receipt['id']}/answer", json={"answer": ""},
                        headers=reviewer)
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "answer_required"
    answered = client.post(f"/api/v1/complaints/{receipt['id']}/answer",
                           json={"answer": "已要求机构撤下商业广告。"}, headers=reviewer)
    assert answered.status_code == 200
    assert answered.json()["status"] == "answered"
    assert client.post("/api/v1/complaints/999/answer", json={"answer": "x"},
                       headers=reviewer).status_code == 404
