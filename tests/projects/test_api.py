"""The projects JSON API: shapes, the lifecycle over HTTP, errors and masked donor lists."""

from __future__ import annotations

import io
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import event, func, select

from shanju.core import files
from shanju.core.db import Database
from shanju.projects import service as projects
from shanju.projects.models import FundUsage, Project, ProjectStatus
from tests.factories import make_org, make_project
from tests.projects.helpers import PDF, PNG, api_token, paid_donation, reviewer, staff_of

S = ProjectStatus
NEW = {
    "title": "乡村学校冬季温暖包", "summary": "为山区孩子送去过冬物资", "category": "children",
    "province": "云南", "goal_fen": 5_000_000, "fundraising_plan": "采购1000个温暖包",
    "filing_number": "53100000500021676Q20260003", "filing_valid_from": "2020-01-01",
    "filing_valid_until": "2099-12-31",
}


def test_list_and_detail_show_public_projects_with_totals(client: TestClient,
                                                          db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        live = make_project(s, org=org)
        paid_donation(s, live, amount_fen=2_000, name="王小明")
        make_project(s, org=org, status=S.DRAFT)
        make_project(s, org=org, status=S.SUBMITTED)
        pid = live.id
    page = client.get("/api/v1/projects").json()
    assert page["total"] == 1 and page["limit"] == 20 and page["offset"] == 0
    item = page["items"][0]
    assert item["id"] == pid and item["raised_fen"] == 2_000 and item["donations"] == 1
    assert item["status"] == "fundraising" and item["url"] == f"/projects/{pid}"
    detail = client.get(f"/api/v1/projects/{pid}").json()
    assert detail["organization"]["uscc"] and detail["disclosed_fen"] == 0
    assert client.get("/api/v1/projects?limit=0").status_code == 422
    missing = client.get("/api/v1/projects/424242")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "project_not_found"


def test_lifecycle_over_the_api(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        staff_id, rev_id = staff_of(s, org).id, reviewer(s).id
    staff, rev = api_token(db, staff_id), api_token(db, rev_id)
    created = client.post("/api/v1/projects", json=NEW, headers=staff)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.json()["status"] == "draft"
    patched = client.patch(f"/api/v1/projects/{pid}", json={"goal_fen": 6_000_000},
                           headers=staff)
    assert patched.json()["goal_fen"] == 6_000_000 and patched.json()["title"] == NEW["title"]
    assert client.post(f"/api/v1/projects/{pid}/submit", headers=staff).json()["status"] == \
        "submitted"
    refused = client.post(f"/api/v1/projects/{pid}/approve", headers=staff)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "reviewer_only"
    no_reason = client.post(f"/api/v1/projects/{pid}/reject", json={"reason": ""}, headers=rev)
    assert no_reason.status_code == 422
    assert no_reason.json()["error"]["code"] == "reason_required"
    assert client.post(f"/api/v1/projects/{pid}/approve", headers=rev).json()["status"] == \
        "approved"
    assert client.post(f"/api/v1/projects/{pid}/start", headers=staff).json()["status"] == \
        "fundraising"
    illegal = client.post(f"/api/v1/projects/{pid}/complete", headers=staff)
    assert illegal.status_code == 409
    body = illegal.json()["error"]
    assert body["code"] == "illegal_transition"
    assert "fundraising" in body["message"] and "completed" in body["message"]
    down = client.post(f"/api/v1/projects/{pid}/take-down", json={"reason": "违规"}, headers=rev)
    assert down.json()["status"] == "taken_down"
    with db.transaction() as s:
        assert s.get(Project, pid).status == S.TAKEN_DOWN  # type: ignore[union-attr]


def test_create_errors_are_json_and_create_nothing(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        staff_id = staff_of(s, make_org(s, qualified=False)).id
    staff = api_token(db, staff_id)
    for body, code in [({**NEW, "goal_fen": 0}, "goal_not_positive"),
                       ({**NEW, "goal_fen": 12.5}, "validation_error"),
                       ({**NEW, "title": "长" * 81}, "title_too_long"),
                       (NEW, "partner_required")]:
        response = client.post("/api/v1/projects", json=body, headers=staff)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == code
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Project)) == 0
    # Without a token: refused (the CSRF check answers first for a cookie-less client).
    assert client.post("/api/v1/projects", json=NEW).status_code in (401, 403)


def test_another_organizations_project_is_403_and_unchanged(client: TestClient,
                                                            db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        draft = make_project(s, org=org, status=S.DRAFT, title="原标题")
        live = make_project(s, org=org)
        intruder = staff_of(s, make_org(s)).id
        ids = (draft.id, live.id)
    headers = api_token(db, intruder)
    r1 = client.patch(f"/api/v1/projects/{ids[0]}", json={"title": "被篡改"}, headers=headers)
    r2 = client.post(f"/api/v1/projects/{ids[1]}/end", headers=headers)
    r3 = client.post(f"/api/v1/projects/{ids[1]}/fund-usages", headers=headers,
                     data={"amount_fen": "1", "purpose": "p", "spent_on": "2020-01-01"})
    for r in (r1, r2, r3):
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_your_project"
    with db.transaction() as s:
        assert s.get(Project, ids[0]).title == "原标题"  # type: ignore[union-attr]
        assert s.get(Project, ids[1]).status == S.FUNDRAISING  # type: ignore[union-attr]


def test_donations_are_masked_and_never_show_contact_details(client: TestClient,
                                                             db: Database) -> None:
    with db.transaction() as s:
        project = make_project(s, org=make_org(s))
        paid_donation(s, project, name="张三丰", message="加油")
        paid_donation(s, project, name="李四光", anonymous=True)
        pid = project.id
    page = client.get(f"/api/v1/projects/{pid}/donations").json()
    assert page["total"] == 2
    assert sorted(d["donor"] for d in page["items"]) == ["张**", "爱心人士"]
    assert set(page["items"][0]) == {"donor", "amount_fen", "message", "paid_at"}


def test_updates_and_fund_usage_over_the_api(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        paid_donation(s, project, amount_fen=10_000)
        pid, sid = project.id, staff_of(s, org).id
    headers = api_token(db, sid)
    update = client.post(f"/api/v1/projects/{pid}/updates", headers=headers,
                         data={"title": "物资已送达", "body": "300个温暖包已送到学校。"},
                         files=[("photos", ("a.png", PNG, "image/png"))])
    assert update.status_code == 201, update.text
    photo = update.json()["photos"][0]
    # Stored re-encoded (WebP, metadata stripped) at its own width: 64 px, below 320.
    assert photo["content_type"] == "image/webp"
    assert photo["picture"]["widths"] == [64] and photo["picture"]["height"] == 48
    served = client.get(photo["url"])
    assert served.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(served.content)).size == (64, 48)
    too_big = client.post(f"/api/v1/projects/{pid}/updates", headers=headers,
                          data={"title": "t", "body": "b"},
                          files=[("photos", ("big.png", PNG + b"0" * files.MAX_UPLOAD_BYTES,
                                             "image/png"))])
    assert too_big.status_code == 422
    assert too_big.json()["error"]["code"] == "file_too_large"
    over = client.post(f"/api/v1/projects/{pid}/fund-usages", headers=headers,
                       data={"amount_fen": "10001", "purpose": "采购", "spent_on": "2020-01-01"})
    assert over.status_code == 409 and over.json()["error"]["code"] == "insufficient_funds"
    ok = client.post(f"/api/v1/projects/{pid}/fund-usages", headers=headers,
                     data={"amount_fen": "10000", "purpose": "采购", "spent_on": "2020-01-01"})
    assert ok.status_code == 201 and ok.json()["amount_fen"] == 10_000
    listed = client.get(f"/api/v1/projects/{pid}/fund-usages").json()
    assert [u["amount_fen"] for u in listed] == [10_000]
    assert client.get(f"/api/v1/projects/{pid}").json()["disclosed_fen"] == 10_000
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(FundUsage)) == 1


def test_listing_updates_and_usages_loads_attachments_in_one_query(
        client: TestClient, db: Database, tmp_path: Path) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        paid_donation(s, project, amount_fen=10_000)
        staff = staff_of(s, org)
        for n in range(4):
            projects.do_post_update(
                session=s, actor=staff, project=project, title=f"第{n + 1}次进展", body="已完成",
                photos=[files.Upload(f"{n}a.png", PNG), files.Upload(f"{n}b.png", PNG)],
                upload_dir=tmp_path)
            projects.do_disclose_fund_usage(
                session=s, actor=staff, project=project, amount=1_000, purpose="采购物资",
                spent_on="2020-01-02", attachments=[files.Upload(f"发票{n}.pdf", PDF)],
                upload_dir=tmp_path)
        pid = project.id
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        updates = client.get(f"/api/v1/projects/{pid}/updates").json()
        after_updates = len(statements)
        usages = client.get(f"/api/v1/projects/{pid}/fund-usages").json()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert [len(u["photos"]) for u in updates] == [2, 2, 2, 2]
    assert {p["filename"] for p in updates[0]["photos"]} == {"3a.png", "3b.png"}
    assert [len(u["attachments"]) for u in usages] == [1, 1, 1, 1]
    assert usages[0]["attachments"][0]["filename"] == "发票3.pdf"

    def attachment_queries(sql: list[str]) -> int:
        return len([q for q in sql if "FROM attachments" in q])

    assert attachment_queries(statements[:after_updates]) == 1
    assert attachment_queries(statements[after_updates:]) == 1


def test_openapi_documents_the_project_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/projects", "/api/v1/projects/{project_id}",
                 "/api/v1/projects/{project_id}/take-down", "/api/v1/projects/{project_id}/submit",
                 "/api/v1/projects/{project_id}/fund-usages"):
        assert path in paths
    assert "files" not in str(paths.get("/files/{attachment_id}", ""))
