"""Reporting a message (anyone; once per reporter; rate limited) and the organization's
review: who may hide and show, reasons, the audit log, reports closed by decisions."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.core.audit import AuditEntry
from shanju.core.db import Database
from shanju.core.ratelimit import HOUR, LIMITS, RateLimiter
from shanju.moderation.models import MessageReport, Resolution
from shanju.projects.models import Project
from tests.core.test_ratelimit import Clock
from tests.factories import make_user
from tests.moderation.helpers import ORDINARY_MESSAGE, World, as_user, make_world
from tests.projects.helpers import api_token, paid_donation


@pytest.fixture
def clock(app) -> Clock:  # type: ignore[no-untyped-def]
    """The clock of the app's rate limiter (a fresh in-memory limiter)."""
    clock = Clock(1_800_000_000.0 + 5)
    app.state.ratelimiter = RateLimiter("memory://", clock=clock)
    return clock


def _report(client: TestClient, gift_id: str, reason: str = "abuse",
            headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/gift-messages/{gift_id}/reports", json={"reason": reason},
                       headers=headers or {})


def _reports(db: Database, gift_id: str) -> list[MessageReport]:
    with db.transaction(write=False) as s:
        rows = list(s.scalars(select(MessageReport).where(MessageReport.gift_id == gift_id)
                              .order_by(MessageReport.id)))
        s.expunge_all()
        return rows


def test_reporting_twice_is_one_report_per_reporter(client: TestClient, db: Database) -> None:
    w = make_world(db)
    client.cookies.clear()
    first = _report(client, w.donation_id)  # a visitor, signed out: known by their address
    assert first.status_code == 201, first.text
    again = _report(client, w.donation_id, reason="advertising")
    assert again.status_code == 200 and again.json() == first.json()  # the first, unchanged
    reader = make_user_in(db)
    signed_in = _report(client, w.donation_id, headers=api_token(db, reader))
    assert signed_in.status_code == 201 and signed_in.json()["id"] != first.json()["id"]
    assert _report(client, w.donation_id, "privacy",
                   headers=api_token(db, reader)).status_code == 200
    rows = _reports(db, w.donation_id)
    assert [(r.reporter_id, r.reason.value) for r in rows] == [(None, "abuse"),
                                                               (reader, "abuse")]
    # The visitor's address is not stored, only a keyed hash of it.
    assert rows[0].reporter_key.startswith("a") and "testclient" not in rows[0].reporter_key


def make_user_in(db: Database) -> int:
    with db.transaction() as s:
        return make_user(s).id


def test_reporting_through_the_page_thanks_the_reporter_once(client: TestClient,
                                                             db: Database) -> None:
    w = make_world(db)
    token = as_user(client, db, None)
    form = client.get(f"/gift-messages/{w.donation_id}/report")
    assert form.status_code == 200 and ORDINARY_MESSAGE in form.text
    missing = client.post(f"/gift-messages/{w.donation_id}/report",
                          data={"csrf_token": token})
    assert missing.status_code == 422 and 'data-code="report_reason_invalid"' in missing.text
    sent = client.post(f"/gift-messages/{w.donation_id}/report",
                       data={"csrf_token": token, "reason": "privacy"})
    assert sent.status_code == 201 and 'data-again="false"' in sent.text
    again = client.post(f"/gift-messages/{w.donation_id}/report",
                        data={"csrf_token": token, "reason": "abuse"})
    assert again.status_code == 200 and 'data-again="true"' in again.text
    assert [r.reason.value for r in _reports(db, w.donation_id)] == ["privacy"]
    # The project page links each shown message to its report page.
    page = client.get(f"/projects/{w.project_id}").text
    assert f'href="/gift-messages/{w.donation_id}/report"' in page


def test_reporting_is_rate_limited_per_account(client: TestClient, db: Database,
                                               clock: Clock) -> None:
    limit = LIMITS["message_report.user"].amount
    with db.transaction() as s:
        project = s.get_one(Project, make_world(db).project_id)
        gift_ids = [paid_donation(s, project, message=f"加油 {n}").public_id
                    for n in range(limit + 1)]
        reader = make_user(s).id
    client.cookies.clear()
    headers = api_token(db, reader)
    for gift_id in gift_ids[:limit]:
        assert _report(client, gift_id, headers=headers).status_code == 201
    refused = _report(client, gift_ids[limit], headers=headers)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    assert _reports(db, gift_ids[limit]) == []
    clock.now += HOUR
    assert _report(client, gift_ids[limit], headers=headers).status_code == 201


def test_only_a_message_everyone_sees_can_be_reported(client: TestClient, db: Database) -> None:
    w = make_world(db, ordinary_message="加我微信领红包")  # held by the word list
    client.cookies.clear()
    assert _report(client, w.donation_id).json()["error"]["code"] == "message_not_found"
    assert _report(client, "d_nosuchgift").status_code == 404
    assert _report(client, "x" * 41).status_code == 422  # longer than any gift id
    assert _report(client, w.gift_order, reason="spam").status_code == 422
    with db.transaction() as s:
        silent = paid_donation(s, s.get_one(Project, w.project_id), message="").public_id
    assert _report(client, silent).status_code == 404
    assert _reports(db, w.donation_id) == _reports(db, silent) == []


def _audit(db: Database, action: str) -> list[AuditEntry]:
    with db.transaction(write=False) as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)
                              .order_by(AuditEntry.id)))
        s.expunge_all()
        return rows


def test_staff_see_reports_and_hiding_closes_them_with_the_reason_audited(
        client: TestClient, db: Database) -> None:
    w = make_world(db)
    client.cookies.clear()
    _report(client, w.donation_id, "abuse")
    _report(client, w.donation_id, "abuse", headers=api_token(db, w.donor_id))
    _report(client, w.gift_order, "advertising")
    queue = client.get("/api/v1/gift-messages", headers=api_token(db, w.staff_id)).json()
    assert [(m["gift_id"], m["reports"], m["reasons"]) for m in queue["reported"]] == [
        (w.donation_id, 2, {"abuse": 2}), (w.gift_order, 1, {"advertising": 1})]
    assert queue["reported"][0]["message"] == ORDINARY_MESSAGE
    assert queue["reported"][0]["donor"] == "张**"  # staff see names masked here too

    # Hiding needs a reason, given on the page's form.
    csrf = as_user(client, db, w.staff_id)
    page = client.get("/console/messages")
    assert page.status_code == 200 and f'data-gift-id="{w.donation_id}"' in page.text
    no_reason = client.post(f"/console/messages/{w.donation_id}/hide",
                            data={"csrf_token": csrf, "reason": "  "})
    assert no_reason.status_code == 422 and 'data-code="reason_required"' in no_reason.text
    hidden = client.post(f"/console/messages/{w.donation_id}/hide",
                         data={"csrf_token": csrf, "reason": "辱骂他人"},
                         follow_redirects=False)
    assert hidden.status_code == 303 and hidden.headers["location"].endswith("done=hidden")
    assert {r.resolution for r in _reports(db, w.donation_id)} == {Resolution.HIDDEN}
    entry, = _audit(db, "moderation.message.hidden")
    assert entry.actor_id == w.staff_id and entry.object_id == w.donation_id
    assert entry.data["new"] == {"decision": "hidden", "reason": "辱骂他人", "reports_closed": 2}

    # Kept: the reports close, the message stays shown.
    kept = client.post(f"/console/messages/{w.gift_order}/keep", data={"csrf_token": csrf},
                       follow_redirects=False)
    assert kept.status_code == 303
    assert {r.resolution for r in _reports(db, w.gift_order)} == {Resolution.KEPT}
    again = client.post(f"/api/v1/gift-messages/{w.gift_order}/keep",
                        headers=api_token(db, w.staff_id))
    assert again.status_code == 409 and again.json()["error"]["code"] == "no_open_reports"

    queue = client.get("/api/v1/gift-messages", headers=api_token(db, w.staff_id)).json()
    assert queue["reported"] == []
    assert [(m["gift_id"], m["status"], m["hidden_reason"]) for m in queue["hidden"]] == [
        (w.donation_id, "hidden", "辱骂他人")]

    # Unhiding is audited too, and a second report after it is a new report to review.
    shown = client.post(f"/console/messages/{w.donation_id}/show", data={"csrf_token": csrf},
                        follow_redirects=False)
    assert shown.status_code == 303
    assert [e.data["old"]["decision"] for e in _audit(db, "moderation.message.shown")] == [
        "hidden"]
    client.cookies.clear()
    assert _report(client, w.donation_id, headers=api_token(db, w.other_staff_id)
                   ).status_code == 201
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "moderation.report.filed")) == 4


def test_only_the_organization_and_reviewers_may_hide_or_show(client: TestClient,
                                                              db: Database) -> None:
    w: World = make_world(db)
    client.cookies.clear()
    body = {"reason": "不当内容"}
    assert client.post(f"/api/v1/gift-messages/{w.donation_id}/hide",
                       json=body).status_code == 401
    for outsider in (w.other_staff_id, w.donor_id):
        refused = client.post(f"/api/v1/gift-messages/{w.donation_id}/hide", json=body,
                              headers=api_token(db, outsider))
        assert refused.status_code == 403, refused.text
    assert client.get("/api/v1/gift-messages",
                      headers=api_token(db, w.donor_id)).status_code == 403
    csrf = as_user(client, db, w.other_staff_id)
    assert client.post(f"/console/messages/{w.donation_id}/hide",
                       data={"csrf_token": csrf, "reason": "x"}).status_code == 403
    assert _audit(db, "moderation.message.hidden") == []
    # A platform reviewer may.
    client.cookies.clear()
    done = client.post(f"/api/v1/gift-messages/{w.donation_id}/hide", json=body,
                       headers=api_token(db, w.reviewer_id))
    assert done.status_code == 200 and done.json()["status"] == "hidden"
    too_long = client.post(f"/api/v1/gift-messages/{w.gift_order}/hide",
                           json={"reason": "长" * 201}, headers=api_token(db, w.staff_id))
    assert too_long.status_code == 422
    assert too_long.json()["error"]["code"] == "reason_too_long"
