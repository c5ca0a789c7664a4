"""A complaint's receipt (its number and what was reported) is for its reporter only (item 7 of
issue 11: ``/complaints/{id}/thanks`` showed any complaint by sequential id)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shanju.complaints import service
from shanju.complaints.models import Complaint
from shanju.core.db import Database
from tests.complaints.test_complaints import CONTENT, _org_and_project
from tests.organizations.helpers import csrf, new_user, run, sign_in


def _file(client: TestClient, org_id: int) -> str:
    response = client.post("/complaints", data={
        "category": "fraud", "content": CONTENT, "contact": "", "organization_id": str(org_id),
        "csrf_token": csrf(client)}, follow_redirects=False)
    assert response.status_code == 303
    return str(response.headers["location"])


def test_the_receipt_opens_with_its_key_and_not_by_counting_ids(client: TestClient,
                                                                db: Database) -> None:
    org_id, _ = _org_and_project(db)
    location = _file(client, org_id)
    complaint = run(db, lambda s: s.query(Complaint).one())
    number = service.complaint_number(complaint)
    assert location.startswith(f"/complaints/{complaint.id}/thanks?key=")
    assert number in client.get(location).text  # the reporter, anonymous, holding the link

    other = TestClient(client.app)
    for guess in (f"/complaints/{complaint.id}/thanks",
                  f"/complaints/{complaint.id}/thanks?key=" + "0" * 32,
                  f"/complaints/{complaint.id + 1}/thanks"):
        page = other.get(guess)
        assert page.status_code == 404, guess
        assert number not in page.text and f"/organizations/{org_id}" not in page.text
    # The key of one complaint does not open another.
    key = location.split("key=", 1)[1]
    assert other.get(f"/complaints/{complaint.id + 1}/thanks?key={key}").status_code == 404


def test_a_signed_in_reporter_sees_their_receipt_without_the_key(client: TestClient,
                                                                 db: Database) -> None:
    org_id, _ = _org_and_project(db)
    reporter = new_user(db)
    sign_in(client, db, reporter)
    _file(client, org_id)
    complaint = run(db, lambda s: s.query(Complaint).one())
    assert client.get(f"/complaints/{complaint.id}/thanks").status_code == 200
    sign_in(client, db, new_user(db))  # someone else, signed in
    assert client.get(f"/complaints/{complaint.id}/thanks").status_code == 404
