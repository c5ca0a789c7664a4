"""Registering an organization through the page and the API; every error changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from shanju.accounts.models import Role
from shanju.core.db import Database
from shanju.organizations import uscc
from shanju.organizations.models import Organization, OrgStatus
from tests.factories import VALID_USCC, unique_uscc
from tests.organizations.helpers import (
    api_token,
    audit_actions,
    count,
    csrf,
    new_org,
    new_staff,
    new_user,
    org,
    run,
    sign_in,
    user,
)


def form(**overrides: str) -> dict[str, str]:
    data = {
        "name": "北京春苗慈善基金会",
        "short_name": "春苗",
        "uscc": VALID_USCC,
        "org_type": "foundation",
        "registering_authority": "北京市民政局",
        "province": "北京",
        "city": "北京",
        "address": "朝阳区建国路 88 号",
        "contact_name": "王芳",
        "contact_phone": "010-65001234",
        "contact_email": "contact@chunmiao.org.cn",
        "website": "www.chunmiao.org.cn",
        "description": "关注孤贫儿童的医疗救助。",
        "fundraising_cert_no": "京民慈公募2021001",
        "fundraising_valid_from": "2021-06-01",
        "fundraising_valid_until": "",
    }
    data.update(overrides)
    return data


def pilot_uscc() -> str:
    head = "53110000MJ000777"
    wrong = "1" if uscc.org_code_check(head[8:]) != "1" else "2"
    return head + wrong + uscc.check_digit(head + wrong)


def _post(client: TestClient, data: dict[str, str]) -> Any:
    return client.post("/organizations/register", data={**data, "csrf_token": csrf(client)},
                       follow_redirects=False)


def test_register_page_creates_pending_org_and_makes_user_staff(
    client: TestClient, db: Database
) -> None:
    uid = new_user(db)
    sign_in(client, db, uid)
    assert client.get("/organizations/register").status_code == 200

    response = _post(client, form())

    assert response.status_code == 303
    org_id = int(response.headers["location"].split("/")[2].split("?")[0])
    created = org(db, org_id)
    assert created.status == OrgStatus.PENDING
    assert created.uscc == VALID_USCC
    assert created.website == "https://www.chunmiao.org.cn"
    assert created.uscc_warning is None
    staff = user(db, uid)
    assert staff.role == Role.ORG_STAFF
    assert staff.organization_id == org_id
    assert audit_actions(db, "organization", org_id) == ["organizations.organization.registered"]
    assert audit_actions(db, "user", uid)[-1] == "organizations.staff.added"
    # Their own staff sees the pending profile; the public does not.
    assert client.get(response.headers["location"]).status_code == 200
    client.cookies.delete("sj_session")
    assert client.get(f"/organizations/{org_id}").status_code == 404


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"uscc": VALID_USCC[:17] + "J"}, "uscc_bad_check_digit", "uscc"),
        ({"uscc": "12345"}, "uscc_wrong_length", "uscc"),
        ({"uscc": "53100000500021676S"}, "uscc_bad_character", "uscc"),
        ({"name": ""}, "required", "name"),
        ({"org_type": "company"}, "invalid_org_type", "org_type"),
        ({"province": "火星"}, "invalid_province", "province"),
        ({"contact_phone": "call me"}, "invalid_phone", "contact_phone"),
        ({"contact_email": "not-an-email"}, "invalid_email", "contact_email"),
        ({"fundraising_valid_from": "2024-01-01", "fundraising_valid_until": "2023-12-31"},
         "qualification_dates_reversed", "fundraising_valid_until"),
        ({"fundraising_valid_from": "01/06/2021"}, "invalid_date", "fundraising_valid_from"),
        ({"fundraising_cert_no": "", "fundraising_valid_from": "2021-06-01"},
         "qualification_incomplete", "fundraising_cert_no"),
    ],
)
def test_register_page_errors_change_nothing(
    client: TestClient, db: Database, overrides: dict[str, str], code: str, field: str
) -> None:
    uid = new_user(db)
    sign_in(client, db, uid)
    before = count(db, Organization)

    response = _post(client, form(**overrides))

    assert response.status_code in (400, 409, 422)
    assert f'data-code="{code}"' in response.text
    assert f'id="{field}-error"' in response.text
    # The user's input is kept.
    assert "北京春苗慈善基金会" in response.text or overrides.get("name") == ""
    assert count(db, Organization) == before
    assert user(db, uid).role == Role.DONOR


def test_duplicate_uscc_is_a_conflict(client: TestClient, db: Database) -> None:
    existing = new_org(db)
    taken = org(db, existing).uscc
    uid = new_user(db)
    sign_in(client, db, uid)
    before = count(db, Organization)

    response = _post(client, form(uscc=taken.lower()))

    assert response.status_code == 409
    assert 'data-code="uscc_taken"' in response.text
    assert count(db, Organization) == before
    assert user(db, uid).organization_id is None


def test_staff_of_an_org_cannot_register_a_second(client: TestClient, db: Database) -> None:
    uid = new_staff(db, new_org(db))
    sign_in(client, db, uid)
    before = count(db, Organization)

    assert client.get("/organizations/register").status_code == 409
    response = _post(client, form(uscc=unique_uscc(900)))

    assert response.status_code == 409
    assert 'data-code="already_org_staff"' in response.text
    assert count(db, Organization) == before


def test_anonymous_visitor_is_sent_to_sign_in(client: TestClient, db: Database) -> None:
    response = client.get("/organizations/register", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    before = count(db, Organization)
    assert _post(client, form()).status_code == 303
    assert count(db, Organization) == before


def test_register_without_csrf_token_is_refused(client: TestClient, db: Database) -> None:
    sign_in(client, db, new_user(db))
    before = count(db, Organization)
    response = client.post("/organizations/register", data=form(), follow_redirects=False)
    assert response.status_code == 403
    assert count(db, Organization) == before


def test_pilot_code_is_accepted_with_a_reviewer_warning(client: TestClient, db: Database) -> None:
    uid = new_user(db)
    headers = api_token(db, uid)
    body = {**form(uscc=pilot_uscc()), "fundraising_valid_until": None}

    response = client.post("/api/v1/organizations", json=body, headers=headers)

    assert response.status_code == 201, response.text
    data = response.json()
    assert data["status"] == "pending"
    assert data["uscc_warning"] and "GB 11714" in data["uscc_warning"]
    assert data["review_warnings"]
    assert org(db, data["id"]).uscc_warning == data["uscc_warning"]


def test_api_register_errors_change_nothing(client: TestClient, db: Database) -> None:
    uid = new_user(db)
    headers = api_token(db, uid)
    base = {**form(), "fundraising_valid_until": None}
    before = count(db, Organization)

    bad = client.post("/api/v1/organizations", json={**base, "uscc": VALID_USCC[:17] + "1"},
                      headers=headers)
    assert bad.status_code == 422
    assert bad.json()["error"] == {
        "code": "uscc_bad_check_digit", "field": "uscc", "message": bad.json()["error"]["message"]
    }
    assert client.post("/api/v1/organizations", json=base).status_code == 401
    wrong_type = client.post("/api/v1/organizations",
                             json={**base, "fundraising_valid_from": "yesterday"},
                             headers=headers)
    assert wrong_type.status_code == 422
    assert count(db, Organization) == before

    ok = client.post("/api/v1/organizations", json=base, headers=headers)
    assert ok.status_code == 201
    other = api_token(db, new_user(db))
    dup = client.post("/api/v1/organizations", json=base, headers=other)
    assert dup.status_code == 409
    assert dup.json()["error"]["code"] == "uscc_taken"
    assert count(db, Organization) == before + 1


def test_reviewer_cannot_register(client: TestClient, db: Database) -> None:
    headers = api_token(db, new_user(db, Role.REVIEWER))
    response = client.post("/api/v1/organizations",
                           json={**form(), "fundraising_valid_until": None}, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "role_cannot_register"
    assert run(db, lambda s: s.query(Organization).count()) == 0
