"""Text fields are read exactly as meant, with the same answer on SQLite and PostgreSQL
(issue 11, item 11): a 100,000-character province and a NUL in a message were stored on SQLite
(201) and refused on PostgreSQL with a 422 naming no field. Now both refuse them at the edge,
naming the field, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.accounts.models import User
from shanju.complaints.models import Complaint
from shanju.core.db import Database
from shanju.core.errors import InvalidInput
from shanju.donations.models import Donation
from shanju.organizations.models import Organization
from shanju.projects.models import Project
from tests.factories import make_org, make_user
from tests.money import World
from tests.organizations.helpers import csrf, new_user, sign_in
from tests.organizations.test_registration import form as org_form
from tests.projects.helpers import api_token, staff_of


def _count(db: Database, model: Any) -> int:
    with db.transaction(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _give(client: TestClient, world: World, **overrides: Any) -> Any:
    body = {"project_id": world.project_id, "amount_fen": 5000, "message": "加油", **overrides}
    return client.post("/api/v1/donations", json=body,
                       headers={**world.auth(), "Idempotency-Key": "text-fields"})


@pytest.mark.parametrize(("overrides", "field"), [
    ({"province": "浙" * 100_000}, "province"),
    ({"province": "火星"}, "province"),
    ({"message": "a\x00b"}, "message"),
    ({"message": "a\x1bb"}, "message"),
    ({"donor_name": "张\x00三"}, "donor_name"),
    ({"donor_name": "张\n三"}, "donor_name"),
])
def test_the_donation_api_refuses_bad_text_naming_the_field(
        client: TestClient, world: World, db: Database, overrides: dict[str, str],
        field: str) -> None:
    response = _give(client, world, **overrides)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    assert _count(db, Donation) == 0


def test_a_message_may_hold_line_breaks_and_a_known_province(client: TestClient, world: World
                                                             ) -> None:
    response = _give(client, world, message="第一行\r\n第二行\t完", province="浙江")
    assert response.status_code == 201, response.text
    assert response.json()["province"] == "浙江"


def test_the_donate_form_refuses_a_nul_with_the_form(client: TestClient, world: World,
                                                     db: Database) -> None:
    sign_in(client, db, world.donor_id)
    page = client.post(f"/projects/{world.project_id}/donate", data={
        "amount": "20", "message": "a\x00b", "province": "", "idempotency_key": "form-nul",
        "csrf_token": csrf(client)})
    assert page.status_code == 422
    assert 'data-code="nul_character"' in page.text and "捐" in page.text
    assert _count(db, Donation) == 0


@pytest.mark.parametrize(("field", "value", "code"), [
    ("content", "这个项目的照片是假的\x00", "nul_character"),
    ("contact", "微信\tzhang", "control_character"),
])
def test_complaints_refuse_control_characters_in_form_and_api(
        client: TestClient, db: Database, field: str, value: str, code: str) -> None:
    with db.transaction() as s:
        org_id = make_org(s).id
    body = {"organization_id": org_id, "category": "fraud",
            "content": "这个项目的照片是假的,请核实。", "contact": "", field: value}
    api = client.post("/api/v1/complaints", json=body)
    assert api.status_code == 422 and api.json()["error"]["field"] == field
    assert api.json()["error"]["code"] == code
    page = client.post("/complaints", data={**{k: str(v) for k, v in body.items()},
                                            "csrf_token": csrf(client)})
    assert page.status_code == 422 and f'data-code="{code}"' in page.text
    assert _count(db, Complaint) == 0


def test_organization_registration_refuses_a_nul_naming_the_field(client: TestClient,
                                                                  db: Database) -> None:
    sign_in(client, db, new_user(db))
    page = client.post("/organizations/register", data={
        **org_form(address="朝阳区\x00建国路"), "csrf_token": csrf(client)})
    assert page.status_code == 422
    assert 'data-code="nul_character"' in page.text and 'id="address-error"' in page.text
    assert _count(db, Organization) == 0


def test_the_projects_api_refuses_control_characters(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        staff_id = staff_of(s, make_org(s)).id
    before = _count(db, Project)
    response = client.post("/api/v1/projects", headers=api_token(db, staff_id), json={
        "title": "标题\x07", "summary": "s", "province": "云南", "goal_fen": 100,
        "fundraising_plan": "计划"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "title"
    assert _count(db, Project) == before


def test_signing_up_refuses_a_nul_in_the_name(client: TestClient, db: Database) -> None:
    response = client.post("/api/v1/users", json={
        "email": "li.na@example.org", "password": "a-long-password", "display_name": "李\x00娜"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "display_name"
    assert _count(db, User) == 0


def test_the_last_net_refuses_what_one_database_would_store_and_the_other_refuse(
        db: Database) -> None:
    # A text that reached a model without the edge's checks: the same error on both databases.
    for attribute, value, code in (("display_name", "长" * 61, "text_too_long"),
                                   ("display_name", "a\x00b", "nul_character")):
        with pytest.raises(InvalidInput) as info, db.transaction() as s:
            user = make_user(s)
            setattr(user, attribute, value)
            s.flush()
        assert info.value.code == code and info.value.field == attribute
