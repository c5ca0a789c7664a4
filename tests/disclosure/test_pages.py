"""The disclosure pages: numbers, the chart, links, empty years and readable errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shanju.core.clock import today_cn
from shanju.core.db import Database
from shanju.core.money import format_fen
from tests.disclosure.scenario import DONOR_NAME, Scenario, build


@pytest.fixture
def sc(db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Scenario:
    return build(db, monkeypatch, tmp_path)


def test_project_page_links_to_its_public_ledger(client: TestClient, sc: Scenario) -> None:
    page = client.get(f"/projects/{sc.project_id}").text
    assert f'href="/projects/{sc.project_id}/disclosure"' in page
    org = client.get(f"/organizations/{sc.org_id}").text
    assert f'href="/organizations/{sc.org_id}/annual"' in org
    latest = client.get(f"/organizations/{sc.org_id}/annual", follow_redirects=False)
    assert latest.headers["location"] == f"/organizations/{sc.org_id}/annual/{today_cn().year}"


def test_project_disclosure_page(client: TestClient, sc: Scenario) -> None:
    r = client.get(f"/projects/{sc.project_id}/disclosure")
    assert r.status_code == 200, r.text
    html = r.text
    e = sc.expected
    for flow in ("received", "matched", "refunded", "disbursed", "balance"):
        match = re.search(rf'data-flow="{flow}">([^<]+)<', html)
        assert match and match.group(1) == format_fen(e[f"{flow}_fen"]), flow
    assert 'data-balanced="true"' in html
    assert html.count("<rect class=\"s-") >= 3  # received, matched, disbursed this month
    assert f'href="/transparency/receipts/usage:{sc.usage_id}"' in html
    assert "购买冬衣" in html and "发票.png" in html
    assert 'href="/transparency/receipts/donation:' in html
    assert "/api/v1/disclosure/projects/" in html and "format=xlsx" in html
    assert DONOR_NAME not in html and "王**" in html
    assert "爱心人士" in html  # the anonymous gift
    english = client.get(f"/projects/{sc.project_id}/disclosure?lang=en").text
    assert "Public ledger" in english and "Download Excel" in english


def test_annual_page_and_its_empty_years(client: TestClient, sc: Scenario) -> None:
    year = today_cn().year
    r = client.get(f"/organizations/{sc.org_id}/annual/{year}")
    assert r.status_code == 200, r.text
    assert f'data-project="{sc.project_id}"' in r.text and "购买冬衣" in r.text
    assert 'id="empty"' not in r.text and "<svg" in r.text
    assert f'href="/organizations/{sc.org_id}/annual/{year - 1}"' in r.text
    empty = client.get(f"/organizations/{sc.org_id}/annual/{year - 2}")
    assert empty.status_code == 200 and 'id="empty"' in empty.text
    for path, status in ((f"/organizations/{sc.org_id}/annual/1999", 404),
                         (f"/organizations/{sc.org_id}/annual/{year + 1}", 404),
                         # A path that does not parse names no page (issue 11, item 12).
                         (f"/organizations/{sc.org_id}/annual/abc", 404),
                         ("/organizations/999999/annual/2025", 404),
                         ("/projects/999999/disclosure", 404)):
        page = client.get(path)
        assert page.status_code == status, path
        assert page.headers["content-type"].startswith("text/html")
        assert "<h1" in page.text or "<title>" in page.text


def test_a_draft_project_has_no_public_ledger(client: TestClient, db: Database) -> None:
    from shanju.projects.models import ProjectStatus
    from tests.factories import make_org, make_project

    with db.transaction() as s:
        draft = make_project(s, org=make_org(s), status=ProjectStatus.DRAFT).id
    assert client.get(f"/projects/{draft}/disclosure").status_code == 404
    r = client.get(f"/api/v1/disclosure/projects/{draft}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "project_not_found"
