"""The reviewers' workflow: who may decide, what each decision does, what the console shows."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient

from shanju.accounts import service as accounts
from shanju.accounts.models import Role
from shanju.complaints.models import Complaint, ComplaintStatus
from shanju.core.clock import today_cn
from shanju.core.db import Database
from shanju.organizations import uscc
from shanju.organizations.models import (
    Organization,
    OrgStatus,
    OrgType,
    PaymentRoute,
    RouteProvider,
    RouteStatus,
)
from shanju.projects.models import ProjectStatus
from tests.factories import make_org, make_project
from tests.organizations.helpers import (
    api_token,
    audit_actions,
    csrf,
    new_org,
    new_staff,
    new_user,
    notifications,
    org,
    run,
    sign_in,
)


def _pending(db: Database) -> tuple[int, int]:
    org_id = new_org(db, status=OrgStatus.PENDING)
    return org_id, new_staff(db, org_id)


def _decide(client: TestClient, org_id: int, decision: str, reason: str = "") -> object:
    return client.post(f"/review/organizations/{org_id}/{decision}",
                       data={"reason": reason, "csrf_token": csrf(client)},
                       follow_redirects=False)


def test_reviewer_approves_on_the_page_and_staff_are_notified(
    client: TestClient, db: Database
) -> None:
    org_id, staff_id = _pending(db)
    reviewer = new_user(db, Role.REVIEWER)
    sign_in(client, db, reviewer)
    assert client.get(f"/review/organizations/{org_id}").status_code == 200

    response = _decide(client, org_id, "approve")

    assert response.status_code == 303  # type: ignore[attr-defined]
    assert org(db, org_id).status == OrgStatus.APPROVED
    assert org(db, org_id).reviewed_at is not None
    assert audit_actions(db, "organization", org_id) == ["organizations.organization.approved"]
    notes = notifications(db, staff_id)
    assert [n.kind for n in notes] == ["organization.approved"]
    name = org(db, org_id).name
    assert [(n.title, n.body) for n in accounts.render_notifications(notes, locale="zh_CN")] == [
        (f"您的机构「{name}」已通过平台审核。", "")]
    assert accounts.render_notifications(notes, locale="en")[0].title == (
        f"The platform approved your organization “{name}”.")


def test_reject_needs_a_reason(client: TestClient, db: Database) -> None:
    org_id, staff_id = _pending(db)
    sign_in(client, db, new_user(db, Role.REVIEWER))

    response = _decide(client, org_id, "reject", "   ")

    assert response.status_code == 422  # type: ignore[attr-defined]
    assert 'data-code="reason_required"' in response.text  # type: ignore[attr-defined]
    assert org(db, org_id).status == OrgStatus.PENDING
    assert audit_actions(db, "organization", org_id) == []
    assert notifications(db, staff_id) == []

    ok = _decide(client, org_id, "reject", "登记证书照片不清晰，请重新上传。")
    assert ok.status_code == 303  # type: ignore[attr-defined]
    rejected = org(db, org_id)
    assert rejected.status == OrgStatus.REJECTED
    assert rejected.review_note == "登记证书照片不清晰，请重新上传。"
    [note] = accounts.render_notifications(notifications(db, staff_id), locale="zh_CN")
    assert note.body == f"审核意见：{rejected.review_note}"


def test_suspended_org_disappears_from_public_and_can_be_reinstated(
    client: TestClient, db: Database
) -> None:
    org_id = new_org(db)
    sign_in(client, db, new_user(db, Role.REVIEWER))
    assert _decide(client, org_id, "suspend", "涉嫌虚假宣传，暂停待查。").status_code == 303  # type: ignore[attr-defined]
    assert org(db, org_id).status == OrgStatus.SUSPENDED
    client.cookies.delete("sj_session")
    assert client.get(f"/organizations/{org_id}").status_code == 404
    sign_in(client, db, new_user(db, Role.REVIEWER))
    assert _decide(client, org_id, "approve").status_code == 303  # type: ignore[attr-defined]
    assert org(db, org_id).status == OrgStatus.APPROVED


def test_impossible_decision_is_a_conflict(client: TestClient, db: Database) -> None:
    org_id = new_org(db)  # already approved
    headers = api_token(db, new_user(db, Role.REVIEWER))
    response = client.post(f"/api/v1/organizations/{org_id}/reject",
                           json={"reason": "重复登记"}, headers=headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"
    assert org(db, org_id).status == OrgStatus.APPROVED


def test_api_approve_and_reject(client: TestClient, db: Database) -> None:
    first, _ = _pending(db)
    second, _ = _pending(db)
    headers = api_token(db, new_user(db, Role.REVIEWER))

    approved = client.post(f"/api/v1/organizations/{first}/approve", headers=headers)
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"
    no_reason = client.post(f"/api/v1/organizations/{second}/reject", json={"reason": ""},
                            headers=headers)
    assert no_reason.status_code == 422
    assert no_reason.json()["error"]["code"] == "reason_required"
    assert org(db, second).status == OrgStatus.PENDING
    rejected = client.post(f"/api/v1/organizations/{second}/reject",
                           json={"reason": "资料不全"}, headers=headers)
    assert rejected.json()["status"] == "rejected"
    missing = client.post("/api/v1/organizations/99999/approve", headers=headers)
    assert missing.status_code == 404


def _outsider(db: Database, who: str, own_staff: int) -> int:
    return {
        "donor": lambda: new_user(db),
        "other_staff": lambda: new_staff(db, new_org(db)),
        "own_staff": lambda: own_staff,
    }[who]()


@pytest.mark.parametrize("who", ["donor", "other_staff", "own_staff"])
def test_only_reviewers_may_review_through_the_api(
    client: TestClient, db: Database, who: str
) -> None:
    org_id, own_staff = _pending(db)
    headers = api_token(db, _outsider(db, who, own_staff))

    for decision in ("approve", "reject", "suspend"):
        api = client.post(f"/api/v1/organizations/{org_id}/{decision}",
                          json={"reason": "理由"}, headers=headers)
        assert api.status_code == 403
        assert api.json()["error"]["code"] == "reviewer_only"
    listing = client.get("/api/v1/complaints", headers=headers)
    assert listing.status_code == 403
    assert org(db, org_id).status == OrgStatus.PENDING
    assert audit_actions(db, "organization", org_id) == []


@pytest.mark.parametrize("who", ["donor", "other_staff", "own_staff"])
def test_only_reviewers_may_review_on_the_pages(
    client: TestClient, db: Database, who: str
) -> None:
    org_id, own_staff = _pending(db)
    sign_in(client, db, _outsider(db, who, own_staff))

    for path in ("/review", "/review/organizations", f"/review/organizations/{org_id}",
                 "/review/complaints"):
        assert client.get(path).status_code == 403, path
    assert _decide(client, org_id, "approve").status_code == 403  # type: ignore[attr-defined]
    assert org(db, org_id).status == OrgStatus.PENDING
    assert audit_actions(db, "organization", org_id) == []


def test_anonymous_is_asked_to_sign_in(client: TestClient, db: Database) -> None:
    org_id, _ = _pending(db)
    page = client.get("/review", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/review"
    assert client.post(f"/api/v1/organizations/{org_id}/approve").status_code == 401


def test_review_index_counts_and_highlights_overdue(client: TestClient, db: Database) -> None:
    def seed(session):  # type: ignore[no-untyped-def]
        make_org(session, status=OrgStatus.PENDING)
        make_org(session, status=OrgStatus.PENDING)
        approved = make_org(session)
        make_project(session, org=approved, status=ProjectStatus.SUBMITTED)
        make_project(session, org=approved, status=ProjectStatus.DRAFT)
        for status in (RouteStatus.PENDING, RouteStatus.APPROVED, RouteStatus.REJECTED):
            session.add(PaymentRoute(organization_id=approved.id,
                                     provider=RouteProvider.WECHATPAY,
                                     merchant_id="1900000109", status=status))
        today = today_cn()
        for due in (today - dt.timedelta(days=2), today + dt.timedelta(days=3)):
            session.add(Complaint(organization_id=approved.id, category="fraud",
                                  content="项目图片是从别处盗用的。", due_on=due))
        session.add(Complaint(organization_id=approved.id, category="other",
                              content="已经处理过的举报内容。", due_on=today,
                              status=ComplaintStatus.ANSWERED, answer="已核实"))

    run(db, seed)
    sign_in(client, db, new_user(db, Role.REVIEWER))
    page = client.get("/review").text
    counts = dict(re.findall(r'id="([a-z-]+)">\s*<b class="count">(\d+)</b>', page))
    assert counts == {"pending-organizations": "2", "pending-projects": "1",
                      "pending-payment-routes": "1", "open-mismatches": "0",
                      "open-complaints": "2", "overdue-complaints": "1"}
    assert 'class="card overdue" href="/review/complaints" id="overdue-complaints"' in page


def test_review_list_shows_credit_code_warnings_pending_first(
    client: TestClient, db: Database
) -> None:
    head = "53110000MJ000555"
    wrong = "1" if uscc.org_code_check(head[8:]) != "1" else "2"
    pilot = head + wrong + uscc.check_digit(head + wrong)

    def seed(session):  # type: ignore[no-untyped-def]
        approved = make_org(session, name="甲基金会")
        flagged = make_org(session, status=OrgStatus.PENDING, name="乙基金会")
        flagged.uscc = pilot
        flagged.uscc_warning = uscc.validate(pilot).warning
        # A social group's code ("51…") registered as a foundation.
        mismatch = make_org(session, status=OrgStatus.PENDING, name="丙协会")
        mismatch.uscc = uscc.make("51110000MJ000556")
        mismatch.org_type = OrgType.FOUNDATION
        return approved.id, flagged.id, mismatch.id

    approved_id, flagged_id, mismatch_id = run(db, seed)
    sign_in(client, db, new_user(db, Role.REVIEWER))
    page = client.get("/review/organizations").text
    assert page.index("乙基金会") < page.index("甲基金会")
    assert page.index("丙协会") < page.index("甲基金会")
    assert page.count("uscc-warning") == 2
    detail = client.get(f"/review/organizations/{flagged_id}").text
    assert "GB 11714" in detail
    mismatch_page = client.get(f"/review/organizations/{mismatch_id}").text
    assert "与注册时选择的组织类型不符" in mismatch_page  # translated (zh_CN is the default)
    assert "uscc-warning" not in client.get(f"/review/organizations/{approved_id}").text
    # The public never sees the warning.
    sign_in(client, db, new_user(db, Role.REVIEWER))
    client.cookies.delete("sj_session")
    assert run(db, lambda s: s.get(Organization, flagged_id)).uscc_warning
    assert client.get(f"/api/v1/organizations/{approved_id}").json().get("uscc_warning") is None
