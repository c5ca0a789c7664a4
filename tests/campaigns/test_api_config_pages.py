"""The configuration pages over HTTP: reviewers configure a campaign with forms, an organization
applies, and a refused form shows a readable error next to it and changes nothing."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from shanju.campaigns.models import MatchPool, PoolRule
from shanju.core.db import Database
from shanju.ledger import service as ledger
from tests.factories import make_campaign, make_org, make_project, make_user
from tests.projects.helpers import reviewer, sign_in, staff_of

_NEW = {"name": "99公益日", "name_en": "99 Giving Day", "slug": "day99", "days": "3",
        "opens_at": "00:00", "closes_at": "23:59", "org_quota": "2", "hold_days": "7",
        "summary": ""}


@pytest.fixture
def new(china_today: dt.date) -> dict[str, str]:
    """The campaign's form, starting today (China time) when the test runs."""
    return {**_NEW, "starts_on": china_today.isoformat()}


def test_reviewer_configures_a_campaign_with_forms(client: TestClient, db: Database,
                                                   new: dict[str, str]) -> None:
    with db.transaction() as s:
        rev_id = reviewer(s).id
        org = make_org(s)
        project_id = make_project(s, org=org).id
        staff_id = staff_of(s, org).id
    csrf = sign_in(client, db, rev_id)
    index = client.get("/review")
    assert 'href="/review/campaigns"' in index.text
    page = client.get("/review/campaigns")
    assert page.status_code == 200 and 'action="/review/campaigns"' in page.text

    bad = client.post("/review/campaigns", data={**new, "slug": "Bad Slug",
                                                 "csrf_token": csrf})
    assert bad.status_code == 422
    assert 'data-code="invalid_slug"' in bad.text and 'aria-invalid="true"' in bad.text
    assert "Bad Slug" in bad.text  # what was typed is kept
    made = client.post("/review/campaigns", data={**new, "csrf_token": csrf},
                       follow_redirects=False)
    assert made.status_code == 303
    url = made.headers["location"]
    cid = int(url.rsplit("/", 1)[1])

    assert client.post(f"{url}/sponsors", data={"name": "腾讯公益", "kind": "platform",
                                                "csrf_token": csrf}).status_code == 200
    detail = client.get(url)
    sid = re.search(r'data-sponsor-id="(\d+)"', detail.text)
    assert sid is not None
    pool_form = {"sponsor_id": sid.group(1), "name": "一比一配捐", "budget": "10000",
                 "priority": "", "kind": "matching", "mode": "ratio", "ratio": "1:1",
                 "donor_daily_cap": "999", "csrf_token": csrf}
    refused = client.post(f"{url}/pools", data={**pool_form, "donor_daily_cap": "9.999"})
    assert refused.status_code == 422
    assert 'data-form="pool"' in refused.text and 'data-code="amount_not_whole_fen"' in \
        refused.text
    assert client.post(f"{url}/pools", data=pool_form).status_code == 200
    with db.transaction(write=False) as s:
        pool = s.scalar(select(MatchPool))
        assert pool is not None and pool.remaining_fen == 10_000_00
        assert ledger.balance(s, ledger.match_pool(pool.id)) == 10_000_00
        rule = s.scalar(select(PoolRule.params))
        assert rule is not None and rule["per_donor_daily_cap_fen"] == 999_00
        pid = pool.id
    shown = client.get(url).text
    assert 'data-rule-version="1"' in shown
    changed = client.post(f"{url}/pools/{pid}/rule", data={
        "mode": "random", "random": "60×1:1\n40×0:1", "floor": "1", "csrf_token": csrf})
    assert changed.status_code == 200 and 'data-rule-version="2"' in changed.text
    bad_rule = client.post(f"{url}/pools/{pid}/rule", data={
        "mode": "random", "random": "", "csrf_token": csrf})
    assert bad_rule.status_code == 422 and f'data-form="pool-{pid}"' in bad_rule.text
    assert client.post(f"{url}/pools/{pid}/top-up",
                       data={"amount": "0.5", "csrf_token": csrf}).status_code == 200

    # The organization applies from its console.
    client.cookies.clear()
    staff_csrf = sign_in(client, db, staff_id)
    assert client.get("/org/campaigns").text.count("data-campaign-id") == 0  # still a draft
    client.cookies.clear()
    csrf = sign_in(client, db, rev_id)
    assert client.post(f"{url}/actions/publish", data={"csrf_token": csrf}).status_code == 200
    early = client.post(f"{url}/actions/start", data={"csrf_token": csrf})
    assert early.status_code == 409 and 'data-code="no_enrolled_projects"' in early.text
    client.cookies.clear()
    staff_csrf = sign_in(client, db, staff_id)
    console = client.get("/console")
    assert 'href="/org/campaigns"' in console.text
    org_page = client.get("/org/campaigns")
    assert f'data-campaign-id="{cid}"' in org_page.text
    applied = client.post(f"/org/campaigns/{cid}/apply",
                          data={"project_id": str(project_id), "csrf_token": staff_csrf})
    assert applied.status_code == 200 and 'data-enrolment-status="applied"' in applied.text
    again = client.post(f"/org/campaigns/{cid}/apply",
                        data={"project_id": str(project_id), "csrf_token": staff_csrf})
    assert again.status_code == 409 and 'data-code="already_enrolled"' in again.text
    client.cookies.clear()
    csrf = sign_in(client, db, rev_id)
    eid = re.search(r'data-enrolment-id="(\d+)"', client.get(url).text)
    assert eid is not None
    no_note = client.post(f"{url}/enrolments/{eid.group(1)}/reject", data={"csrf_token": csrf})
    assert no_note.status_code == 422 and 'data-code="required"' in no_note.text
    client.post(f"{url}/enrolments/{eid.group(1)}/approve", data={"csrf_token": csrf})
    live = client.post(f"{url}/actions/start", data={"csrf_token": csrf})
    assert 'data-campaign-status="live"' in live.text
    en = client.get(f"{url}?lang=en").text
    assert "Matching pools" in en and "Live" in en


def test_pages_need_the_right_role(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        donor_id = make_user(s).id
        campaign_id = make_campaign(s).id
    assert client.get("/review/campaigns", follow_redirects=False).status_code == 303
    assert client.get("/org/campaigns", follow_redirects=False).status_code == 303
    csrf = sign_in(client, db, donor_id)
    assert client.get("/review/campaigns").status_code == 403
    assert client.get(f"/review/campaigns/{campaign_id}").status_code == 403
    assert client.get("/org/campaigns").status_code == 403
    refused = client.post(f"/review/campaigns/{campaign_id}/actions/end",
                          data={"csrf_token": csrf})
    assert refused.status_code == 403
