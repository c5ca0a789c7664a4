"""Public organization pages and API, staff edits, and the functions the projects domain uses."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from shanju.accounts.models import Role
from shanju.core.clock import today_cn
from shanju.core.db import Database
from shanju.core.errors import InvalidInput, NotFound
from shanju.organizations import service
from shanju.organizations.models import Organization, OrgStatus
from shanju.projects.models import ProjectStatus
from tests.factories import make_org, make_project
from tests.organizations.helpers import (
    audit_actions,
    csrf,
    new_org,
    new_staff,
    new_user,
    org,
    run,
    sign_in,
)


def test_profile_shows_the_required_disclosures(client: TestClient, db: Database) -> None:
    def seed(session):  # type: ignore[no-untyped-def]
        o = make_org(session, name="云南青山公益基金会", province="云南")
        o.address = "昆明市五华区青年路 100 号"
        o.contact_name = "李明"
        o.contact_email = "info@qingshan.org.cn"
        o.description = "守护云南山区儿童的健康与教育。"
        own = make_project(session, org=o, title="山区儿童营养午餐")
        draft = make_project(session, org=o, status=ProjectStatus.DRAFT, title="草稿项目")
        partner_client = make_org(session, qualified=False, name="昆明小草社工服务中心")
        via = make_project(session, org=partner_client, recipient=o, title="社区老人助餐")
        return o.id, own.id, draft.id, via.id

    org_id, own_id, draft_id, via_id = run(db, seed)
    o = org(db, org_id)

    page = client.get(f"/organizations/{org_id}?lang=en").text

    for shown in (o.name, o.uscc, "Foundation", o.registering_authority,
                  o.fundraising_cert_no, str(o.fundraising_valid_from),
                  str(o.fundraising_valid_until), o.contact_phone, "李明",
                  "info@qingshan.org.cn", "昆明市五华区青年路 100 号",
                  "守护云南山区儿童的健康与教育。"):
        assert shown and shown in page, shown
    assert f"/projects/{own_id}" in page
    assert f"/projects/{via_id}" in page
    assert f"/projects/{draft_id}" not in page
    assert f"/complaints/new?organization_id={org_id}" in page
    assert "uscc-warning" not in page


def test_unqualified_org_says_it_raises_through_a_partner(
    client: TestClient, db: Database
) -> None:
    org_id = new_org(db, qualified=False)
    page = client.get(f"/organizations/{org_id}?lang=en").text
    assert "No public-fundraising qualification — raises through a qualified partner." in page


@pytest.mark.parametrize("status", [OrgStatus.PENDING, OrgStatus.REJECTED, OrgStatus.SUSPENDED])
def test_non_approved_org_is_hidden_from_the_public(
    client: TestClient, db: Database, status: OrgStatus
) -> None:
    org_id = new_org(db, status=status)
    assert client.get(f"/organizations/{org_id}").status_code == 404
    api = client.get(f"/api/v1/organizations/{org_id}")
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "organization_not_found"
    assert org_id not in [o["id"] for o in client.get("/api/v1/organizations").json()["items"]]
    # Its own staff and reviewers still see it.
    for uid in (new_staff(db, org_id), new_user(db, Role.REVIEWER)):
        sign_in(client, db, uid)
        assert client.get(f"/organizations/{org_id}").status_code == 200


def test_non_approved_org_is_hidden_from_a_signed_in_donor(
    client: TestClient, db: Database
) -> None:
    org_id = new_org(db, status=OrgStatus.PENDING)
    sign_in(client, db, new_user(db))
    assert client.get(f"/organizations/{org_id}").status_code == 404


def test_list_shows_approved_orgs_filtered_by_province(client: TestClient, db: Database) -> None:
    def seed(session):  # type: ignore[no-untyped-def]
        return (make_org(session, name="广东狮子会公益基金", province="广东").id,
                make_org(session, name="四川扶贫基金会", province="四川").id,
                make_org(session, name="待审基金会", status=OrgStatus.PENDING).id)

    gd, sc, _ = run(db, seed)
    page = client.get("/organizations").text
    assert "广东狮子会公益基金" in page and "四川扶贫基金会" in page
    assert "待审基金会" not in page
    filtered = client.get("/organizations?province=广东").text
    assert "广东狮子会公益基金" in filtered and "四川扶贫基金会" not in filtered

    api = client.get("/api/v1/organizations", params={"province": "广东省"}).json()
    assert [o["id"] for o in api["items"]] == [gd]
    assert api["total"] == 1
    assert api["items"][0]["publicly_qualified"] is True
    assert "uscc_warning" not in api["items"][0]
    everything = client.get("/api/v1/organizations", params={"per_page": 1, "page": 2}).json()
    assert everything["total"] == 2 and [o["id"] for o in everything["items"]] == [sc]
    bad = client.get("/api/v1/organizations", params={"province": "火星"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_province"
    assert client.get("/api/v1/organizations", params={"per_page": 0}).status_code == 422


def _edit(client: TestClient, o: Organization, **changes: str) -> object:
    data = {
        name: ("" if getattr(o, name) is None else str(getattr(o, name)))
        for name in ("name", "short_name", "uscc", "registering_authority", "province", "city",
                     "address", "contact_name", "contact_phone", "contact_email", "website",
                     "description", "fundraising_cert_no", "fundraising_valid_from",
                     "fundraising_valid_until")
    }
    data["org_type"] = o.org_type.value
    data.update(changes)
    data["csrf_token"] = csrf(client)
    return client.post("/console/organization", data=data, follow_redirects=False)


def test_staff_contact_edit_keeps_the_org_approved(client: TestClient, db: Database) -> None:
    org_id = new_org(db)
    sign_in(client, db, new_staff(db, org_id))
    assert client.get("/console/organization").status_code == 200

    response = _edit(client, org(db, org_id), contact_phone="0871-66668888",
                     description="新的机构简介。")

    assert response.status_code == 303  # type: ignore[attr-defined]
    assert response.headers["location"] == "/console/organization?saved=1"  # type: ignore[attr-defined]
    edited = org(db, org_id)
    assert edited.contact_phone == "0871-66668888"
    assert edited.status == OrgStatus.APPROVED
    assert audit_actions(db, "organization", org_id) == ["organizations.organization.updated"]


def test_staff_legal_edit_sends_the_org_back_to_review(client: TestClient, db: Database) -> None:
    org_id = new_org(db)
    sign_in(client, db, new_staff(db, org_id))

    response = _edit(client, org(db, org_id), name="新名称公益基金会")

    assert response.headers["location"].endswith("saved=review")  # type: ignore[attr-defined]
    edited = org(db, org_id)
    assert edited.name == "新名称公益基金会"
    assert edited.status == OrgStatus.PENDING


def test_staff_edit_errors_change_nothing(client: TestClient, db: Database) -> None:
    org_id = new_org(db)
    other_uscc = org(db, new_org(db)).uscc
    sign_in(client, db, new_staff(db, org_id))
    before = org(db, org_id)

    taken = _edit(client, before, uscc=other_uscc)
    assert taken.status_code == 409  # type: ignore[attr-defined]
    assert 'data-code="uscc_taken"' in taken.text  # type: ignore[attr-defined]
    dates = _edit(client, before, fundraising_valid_until="2000-01-01")
    assert 'data-code="qualification_dates_reversed"' in dates.text  # type: ignore[attr-defined]

    after = org(db, org_id)
    assert (after.uscc, after.status, after.fundraising_valid_until) == (
        before.uscc, before.status, before.fundraising_valid_until)
    assert audit_actions(db, "organization", org_id) == []


def test_suspended_org_cannot_change_legal_details(client: TestClient, db: Database) -> None:
    org_id = new_org(db, status=OrgStatus.SUSPENDED)
    sign_in(client, db, new_staff(db, org_id))
    response = _edit(client, org(db, org_id), name="换个名字")
    assert response.status_code == 409  # type: ignore[attr-defined]
    assert org(db, org_id).status == OrgStatus.SUSPENDED
    assert org(db, org_id).name != "换个名字"


def test_a_donor_has_no_organization_console(client: TestClient, db: Database) -> None:
    sign_in(client, db, new_user(db))
    assert client.get("/console/organization").status_code == 403


def test_qualification_functions_for_projects(db: Database) -> None:
    today = today_cn()

    def check(session):  # type: ignore[no-untyped-def]
        qualified = make_org(session)
        unqualified = make_org(session, qualified=False)
        pending = make_org(session, status=OrgStatus.PENDING)
        expired = make_org(session)
        expired.fundraising_valid_until = today - dt.timedelta(days=1)
        open_ended = make_org(session)
        open_ended.fundraising_valid_until = None
        session.flush()

        service.check_can_raise_publicly(org=qualified, on=today)
        service.check_can_raise_publicly(org=open_ended, on=today + dt.timedelta(days=9999))
        for o, code in ((unqualified, "organization_not_qualified"),
                        (expired, "organization_not_qualified"),
                        (pending, "organization_not_approved")):
            with pytest.raises(InvalidInput) as exc:
                service.check_can_raise_publicly(org=o, on=today, field="recipient_org_id")
            assert exc.value.code == code
            assert exc.value.field == "recipient_org_id"
        ids = [o.id for o in service.qualified_partners(session=session, on=today)]
        assert ids == [qualified.id, open_ended.id]
        assert service.get_organization(session=session, org_id=pending.id) is pending
        with pytest.raises(NotFound):
            service.get_organization(session=session, org_id=123456)

    run(db, check)
