"""The campaigns configuration and enrolment API: a reviewer configures a campaign end to end,
an organization enrols, errors are coded and refused input changes nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.campaigns.models import MatchPool, PoolRule
from shanju.core.db import Database
from shanju.ledger import service as ledger
from tests.factories import make_campaign, make_org, make_pool, make_project, make_user
from tests.projects.helpers import api_token, reviewer, sign_in, staff_of

_NEW = {"slug": "day99", "name": "99公益日", "name_en": "99 Giving Day", "days": 3,
        "opens_at": "00:00", "closes_at": "23:59", "org_quota": 1}


@pytest.fixture
def new(china_today: dt.date) -> dict[str, Any]:
    """The campaign a reviewer configures, starting today (China time) when the test runs."""
    return {**_NEW, "starts_on": china_today.isoformat()}


def test_reviewer_configures_and_org_enrols_over_the_api(
        client: TestClient, db: Database, new: dict[str, Any], china_today: dt.date) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        second = make_project(s, org=org)
        rev_id, staff_id, project_id = reviewer(s).id, staff_of(s, org).id, project.id
        second_id = second.id
    rev, staff = api_token(db, rev_id), api_token(db, staff_id)

    refused = client.post("/api/v1/campaigns", json=new, headers=staff)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "reviewer_only"
    assert client.post("/api/v1/campaigns", json=new).status_code == 401
    created = client.post("/api/v1/campaigns", json=new, headers=rev)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    assert created.json()["status"] == "draft"
    assert created.json()["ends_on"] == (china_today + dt.timedelta(days=2)).isoformat()
    # A draft is the reviewers' own.
    assert client.get(f"/api/v1/campaigns/{cid}").status_code == 404
    assert client.get("/api/v1/campaigns").json()["total"] == 0
    assert client.get("/api/v1/campaigns", headers=rev).json()["total"] == 1
    bad = client.patch(f"/api/v1/campaigns/{cid}", json={"closes_at": "00:00"}, headers=rev)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "closes_before_opens"
    dup = client.post("/api/v1/campaigns", json=new, headers=rev)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "slug_taken"

    sponsor = client.post(f"/api/v1/campaigns/{cid}/sponsors",
                          json={"name": "腾讯公益", "kind": "platform"}, headers=rev)
    assert sponsor.status_code == 201, sponsor.text
    sid = sponsor.json()["id"]
    bad_rule = client.post(f"/api/v1/campaigns/{cid}/pools", headers=rev, json={
        "sponsor_id": sid, "name": "一比一", "budget_fen": 1_000_000,
        "rule": {"ratio_den": 0}})
    assert bad_rule.status_code == 422
    pool = client.post(f"/api/v1/campaigns/{cid}/pools", headers=rev, json={
        "sponsor_id": sid, "name": "一比一", "budget_fen": 1_000_000,
        "rule": {"ratio_num": 1, "ratio_den": 1, "per_donor_daily_cap_fen": 99_900}})
    assert pool.status_code == 201, pool.text
    body = pool.json()
    pid = body["id"]
    assert body["committed_fen"] == body["remaining_fen"] == 1_000_000
    assert body["rule_version"] == 1 and body["rule"]["per_donor_daily_cap_fen"] == 99_900
    topped = client.post(f"/api/v1/campaigns/{cid}/pools/{pid}/top-up",
                         json={"amount_fen": 500}, headers=rev)
    assert topped.json()["remaining_fen"] == 1_000_500
    v2 = client.post(f"/api/v1/campaigns/{cid}/pools/{pid}/rules", headers=rev,
                     json={"ratio_num": 1, "ratio_den": 2})
    assert v2.status_code == 201 and v2.json()["rule_version"] == 2
    rules = client.get(f"/api/v1/campaigns/{cid}/pools/{pid}/rules", headers=rev).json()
    assert [r["version"] for r in rules] == [1, 2]
    assert rules[0]["params"]["per_donor_daily_cap_fen"] == 99_900
    paused = client.post(f"/api/v1/campaigns/{cid}/pools/{pid}/pause", headers=rev)
    assert paused.json()["status"] == "paused"
    again = client.post(f"/api/v1/campaigns/{cid}/pools/{pid}/pause", headers=rev)
    assert again.status_code == 409 and again.json()["error"]["code"] == "illegal_transition"
    client.post(f"/api/v1/campaigns/{cid}/pools/{pid}/resume", headers=rev)
    renamed = client.patch(f"/api/v1/campaigns/{cid}/pools/{pid}", headers=rev,
                           json={"priority": 5})
    assert renamed.json()["priority"] == 5

    published = client.post(f"/api/v1/campaigns/{cid}/publish", headers=rev)
    assert published.json()["status"] == "scheduled"
    early = client.post(f"/api/v1/campaigns/{cid}/start", headers=rev)
    assert early.status_code == 409 and early.json()["error"]["code"] == "no_enrolled_projects"

    applied = client.post(f"/api/v1/campaigns/{cid}/enrolments",
                          json={"project_id": project_id}, headers=staff)
    assert applied.status_code == 201, applied.text
    eid = applied.json()["id"]
    assert applied.json()["status"] == "applied"
    over = client.post(f"/api/v1/campaigns/{cid}/enrolments",
                       json={"project_id": second_id}, headers=staff)
    assert over.status_code == 409 and over.json()["error"]["code"] == "org_quota_reached"
    mine = client.get(f"/api/v1/campaigns/{cid}/enrolments?mine=true", headers=staff).json()
    assert [e["id"] for e in mine["items"]] == [eid]
    assert client.get(f"/api/v1/campaigns/{cid}/enrolments").json()["items"] == []
    approved = client.post(f"/api/v1/campaigns/{cid}/enrolments/{eid}/approve", headers=rev)
    assert approved.json()["status"] == "approved"
    frozen = client.post(f"/api/v1/campaigns/{cid}/enrolments/{eid}/freeze", headers=rev,
                         json={"reason": "核查中"})
    assert frozen.json()["matching_frozen"] is True
    public = client.get(f"/api/v1/campaigns/{cid}/enrolments").json()["items"]
    assert public[0]["matching_frozen"] is True and public[0]["frozen_reason"] == ""
    client.post(f"/api/v1/campaigns/{cid}/enrolments/{eid}/unfreeze", headers=rev)

    live = client.post(f"/api/v1/campaigns/{cid}/start", headers=rev)
    assert live.json()["status"] == "live"
    locked = client.patch(f"/api/v1/campaigns/{cid}", json={"days": 1}, headers=rev)
    assert locked.status_code == 409 and locked.json()["error"]["code"] == "schedule_locked"
    detail = client.get(f"/api/v1/campaigns/{cid}").json()
    assert detail["remaining_fen"] == 1_000_500 and detail["sponsors"][0]["kind"] == "platform"
    assert client.get("/api/v1/campaigns/by-slug/day99").json()["id"] == cid
    assert client.get("/api/v1/campaigns").json()["items"][0]["status"] == "live"
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.match_pool(pid)) == 1_000_500
        assert ledger.check(s).ok


def test_errors_are_coded_and_change_nothing(client: TestClient, db: Database,
                                             new: dict[str, Any]) -> None:
    with db.transaction() as s:
        rev_id = reviewer(s).id
        donor_id = make_user(s).id
        org = make_org(s)
        project_id = make_project(s, org=org).id
    rev = api_token(db, rev_id)
    cid = client.post("/api/v1/campaigns", json=new, headers=rev).json()["id"]
    sid = client.post(f"/api/v1/campaigns/{cid}/sponsors", json={"name": "某企业"},
                      headers=rev).json()["id"]
    for body, code in (({"budget_fen": 0}, "amount_not_positive"),
                       ({"budget_fen": 10**13}, "amount_too_large"),
                       ({"priority": 99_999}, "invalid_priority"),
                       ({"name": " "}, "required")):
        answer = client.post(f"/api/v1/campaigns/{cid}/pools", headers=rev, json={
            "sponsor_id": sid, "name": "池", "budget_fen": 100, **body})
        assert answer.status_code == 422 and answer.json()["error"]["code"] == code, body
    missing = client.post(f"/api/v1/campaigns/{cid}/pools", headers=rev, json={
        "sponsor_id": 999_999, "name": "池", "budget_fen": 100})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "sponsor_not_found"
    assert client.get("/api/v1/campaigns/999999").json()["error"]["code"] == \
        "campaign_not_found"
    assert client.get(f"/api/v1/campaigns/{cid}/pools/999999", headers=rev).status_code == 404
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(MatchPool)) == 0
        assert s.scalar(select(func.count()).select_from(PoolRule)) == 0
    donor = api_token(db, donor_id)
    assert client.post(f"/api/v1/campaigns/{cid}/enrolments", json={"project_id": project_id},
                       headers=donor).json()["error"]["code"] == "org_staff_only"
    client.post(f"/api/v1/campaigns/{cid}/publish", headers=rev)
    assert client.get(f"/api/v1/campaigns/{cid}/enrolments?mine=true",
                      headers=donor).json()["error"]["code"] == "org_staff_only"


def test_browser_session_needs_the_csrf_token(client: TestClient, db: Database,
                                              new: dict[str, Any]) -> None:
    with db.transaction() as s:
        rev_id = reviewer(s).id
    csrf = sign_in(client, db, rev_id)
    assert client.post("/api/v1/campaigns", json=new).json()["error"]["code"] == "csrf_failed"
    ok = client.post("/api/v1/campaigns", json=new, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201


def test_random_seed_stays_with_reviewers(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        campaign = make_campaign(s)
        make_pool(s, campaign=campaign, params={
            "random": [{"weight": 1, "num": 1, "den": 1}, {"weight": 1, "num": 0, "den": 1}],
            "seed": 4242})
        cid, rev_id = campaign.id, reviewer(s).id
    public = client.get(f"/api/v1/campaigns/{cid}").json()["pools"][0]
    assert public["rule"]["seed"] == 0 and len(public["rule"]["random"]) == 2
    pid = public["id"]
    assert client.get(f"/api/v1/campaigns/{cid}/pools/{pid}/rules").json()[0]["params"][
        "seed"] == 0
    rev = api_token(db, rev_id)
    assert client.get(f"/api/v1/campaigns/{cid}/pools/{pid}", headers=rev).json()["rule"][
        "seed"] == 4242
