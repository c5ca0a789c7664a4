"""Summit registration over HTTP: the JSON API and the pages (forms, errors, permissions)."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from shanju.core.db import Database
from shanju.summit.models import SummitStatus
from shanju.summit.registration_views import _ticket_qr
from tests.accounts.helpers import csrf, error_code, login
from tests.factories import make_user
from tests.summit.reg_helpers import make_reviewer, make_staff, make_summit


def world(db: Database, **summit_args: Any) -> dict[str, Any]:
    with db.transaction() as s:
        summit = make_summit(s, **summit_args)
        verified = make_staff(s, verified=True, name="王小明", org_name="北京春苗公益基金会")
        pending = make_staff(s, verified=False, name="赵六", org_name="云南山花公益协会")
        return {"slug": summit.slug, "verified": verified.email, "pending": pending.email,
                "organizer": make_reviewer(s).email,
                "donor": make_user(s, display_name="李四").email}


def as_user(client: TestClient, email: str) -> dict[str, str]:
    client.cookies.clear()
    assert login(client, email).status_code == 303
    return {"X-CSRF-Token": csrf(client)}


def test_api_journey(client: TestClient, db: Database) -> None:
    w = world(db, capacity=3)
    base = f"/api/v1/summits/{w['slug']}"
    h = as_user(client, w["pending"])
    r = client.post(f"{base}/delegation", json={"seats": 2, "note": "请批准"}, headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["delegation"]["status"] == "pending"
    assert body["registration"]["status"] == "pending"
    assert body["registration"]["ticket_token"] is None
    delegation_id = body["delegation"]["id"]
    assert client.get(f"{base}/delegations", headers=h).json()["error"]["code"] \
        == "organizer_only"

    h = as_user(client, w["organizer"])
    queue = client.get(f"{base}/delegations?status=pending").json()
    assert [d["id"] for d in queue] == [delegation_id]
    r = client.post(f"{base}/delegations/{delegation_id}/decision",
                    json={"approve": False, "note": ""}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "note_required"
    r = client.post(f"{base}/delegations/{delegation_id}/decision",
                    json={"approve": True}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert r.json()["seats_taken"] == 1

    h = as_user(client, w["pending"])
    mine = client.get(f"{base}/registration").json()
    assert mine["status"] == "approved" and mine["name"] == "赵*"
    token = mine["ticket_token"]
    assert token and client.get(f"{base}/registration").json()["ticket_token"] == token

    h = as_user(client, w["donor"])
    assert client.get(f"{base}/registration").json()["error"]["code"] == "not_registered"
    r = client.post(f"{base}/registration", json={"kind": "audience"}, headers=h)
    assert r.status_code == 201 and r.json()["kind"] == "audience"
    again = client.post(f"{base}/registration", json={"kind": "audience"}, headers=h)
    assert again.json()["id"] == r.json()["id"]
    r = client.post(f"{base}/registration", json={"kind": "delegate"}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_org_staff"

    h = as_user(client, w["verified"])
    r = client.post(f"{base}/delegation", json={"seats": 9}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_seats"
    r = client.post(f"{base}/delegation", json={"seats": 1}, headers=h)
    assert r.json()["delegation"]["status"] == "approved"
    assert r.json()["registration"]["status"] == "approved"  # the third and last place

    h = as_user(client, w["organizer"])
    r = client.post(f"{base}/registration", json={"kind": "audience"}, headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "capacity_full"
    counts = client.get(f"{base}/registrations/counts").json()
    assert (counts["approved"], counts["capacity"], counts["delegates"]) == (3, 3, 2)
    r = client.post(f"{base}/checkin", json={"token": token}, headers=h)
    assert r.status_code == 200
    assert r.json()["name"] == "赵六" and r.json()["organization_name"] == "云南山花公益协会"
    assert r.json()["already_checked_in"] is False
    assert client.post(f"{base}/checkin", json={"token": token},
                       headers=h).json()["already_checked_in"] is True

    h = as_user(client, w["donor"])
    assert client.delete(f"{base}/registration", headers=h).json()["status"] == "cancelled"
    assert client.post(f"{base}/checkin", json={"token": token},
                       headers=h).json()["error"]["code"] == "organizer_only"


def test_anonymous_and_draft(client: TestClient, db: Database) -> None:
    w = world(db, status=SummitStatus.DRAFT)
    base = f"/api/v1/summits/{w['slug']}"
    assert client.get(f"{base}/registration").status_code == 401
    h = as_user(client, w["donor"])
    r = client.post(f"{base}/registration", json={"kind": "audience"}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "summit_not_found"
    assert client.get(f"/summits/{w['slug']}/register").status_code == 404


def test_register_pages(client: TestClient, db: Database) -> None:
    w = world(db)
    slug = w["slug"]
    client.cookies.clear()
    page = client.get(f"/summits/{slug}/register")
    assert page.status_code == 200 and "/login?next=" in page.text
    r = client.get(f"/summits/{slug}/ticket", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")

    as_user(client, w["pending"])
    token = csrf(client)
    r = client.post(f"/summits/{slug}/register",
                    data={"choice": "delegation", "seats": "99", "csrf_token": token})
    assert r.status_code == 422 and error_code(r.text) == "invalid_seats"
    r = client.post(f"/summits/{slug}/register", data={"choice": "", "csrf_token": token})
    assert error_code(r.text) == "choice_required"
    r = client.post(f"/summits/{slug}/register",
                    data={"choice": "delegation", "seats": "2", "note": "",
                          "csrf_token": token}, follow_redirects=False)
    assert r.headers["location"] == f"/summits/{slug}/register?done=applied"
    assert 'data-status="pending"' in client.get(f"/summits/{slug}/ticket").text

    as_user(client, w["donor"])
    r = client.get(f"/summits/{slug}/registrations")
    assert r.status_code == 403 and error_code(r.text) == "organizer_only"
    r = client.post(f"/summits/{slug}/register",
                    data={"choice": "audience", "csrf_token": csrf(client)},
                    follow_redirects=False)
    assert r.headers["location"] == f"/summits/{slug}/ticket"
    ticket = client.get(f"/summits/{slug}/ticket").text
    assert "<svg" in ticket and "李*" in ticket and "李四" not in ticket
    token = client.get(f"/api/v1/summits/{slug}/registration").json()["ticket_token"]
    assert str(_ticket_qr(token)) in ticket  # the QR code encodes the token and nothing else

    as_user(client, w["organizer"])
    queue = client.get(f"/summits/{slug}/registrations").text
    delegation_id = re.search(r'data-delegation-id="(\d+)"', queue)
    assert delegation_id is not None and "云南山花公益协会" in queue
    url = f"/summits/{slug}/registrations/{delegation_id.group(1)}/decide"
    r = client.post(url, data={"decision": "reject", "note": "", "csrf_token": csrf(client)})
    assert error_code(r.text) == "note_required"
    r = client.post(url, data={"decision": "reject", "note": "请补充材料",
                               "csrf_token": csrf(client)}, follow_redirects=False)
    assert r.status_code == 303
    assert 'data-count="pending_delegations">0<' in client.get(
        f"/summits/{slug}/registrations").text
    r = client.post(f"/summits/{slug}/checkin", data={"token": "nope",
                                                      "csrf_token": csrf(client)})
    assert r.status_code == 404 and error_code(r.text) == "ticket_not_found"

    as_user(client, w["pending"])
    page = client.get(f"/summits/{slug}/register").text
    assert "请补充材料" in page  # the rejection's note, and a form to apply again
    assert 'value="delegation"' in page


def test_a_full_summit_registers_the_delegation_without_a_seat(client: TestClient,
                                                               db: Database) -> None:
    w = world(db, capacity=1)
    slug = w["slug"]
    as_user(client, w["donor"])
    client.post(f"/summits/{slug}/register", data={"choice": "audience",
                                                   "csrf_token": csrf(client)})
    as_user(client, w["verified"])
    r = client.post(f"/summits/{slug}/register",
                    data={"choice": "delegation", "seats": "2", "csrf_token": csrf(client)},
                    follow_redirects=False)
    assert r.headers["location"] == f"/summits/{slug}/register?done=delegation"
    page = client.get(r.headers["location"]).text
    assert 'data-done="delegation"' in page and 'value="seat"' in page
    r = client.post(f"/summits/{slug}/register", data={"choice": "seat",
                                                       "csrf_token": csrf(client)})
    assert r.status_code == 409 and error_code(r.text) == "capacity_full"
