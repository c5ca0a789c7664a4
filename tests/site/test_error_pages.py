"""Error pages for people (item 12 of issue 11): localized, in the site's layout, a sign-in
page instead of a 401 page, never raw validation text; the API keeps its JSON errors. And
item 10's last resort: a database constraint's refusal is a clear 409, never a 500."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shanju.core.db import Database
from shanju.core.deps import DbSession
from shanju.core.errors import DomainError
from tests.factories import make_user
from tests.organizations.helpers import new_user, sign_in


def _heading(html: str) -> str:
    found = re.search(r"<h1>([^<]*)</h1>", html)
    return found.group(1) if found else ""


def _alert(html: str) -> str:
    found = re.search(r'role="alert"[^>]*>([^<]*)<', html)
    return found.group(1) if found else ""


def test_a_path_that_names_no_page_is_a_chinese_404(client: TestClient) -> None:
    for path in ("/projects/abc", "/projects/0", f"/projects/{10**29}",
                 "/organizations/abc/annual", "/summits/x/rooms/abc"):
        page = client.get(path)
        assert page.status_code == 404, path
        assert _heading(page.text) == "页面不存在", path
        assert "Input should be" not in page.text and "valid integer" not in page.text
        assert '<nav class="nav"' in page.text  # the site's layout
    # The API keeps its JSON answer naming the field.
    api = client.get("/api/v1/projects/abc")
    assert api.status_code == 422 and api.json()["error"]["field"] == "project_id"


def test_a_refused_query_value_is_named_in_the_persons_language(client: TestClient) -> None:
    page = client.get("/organizations", params={"page": str(10**29)})
    assert page.status_code == 422
    assert _heading(page.text) == "请检查您填写的内容"
    assert _alert(page.text) == "“页码”不能大于 100000。"
    english = client.get("/organizations", params={"page": "abc", "lang": "en"})
    assert english.status_code == 422
    assert _alert(english.text) == "“page number” must be a whole number."


@pytest.mark.parametrize("path", ["/review", "/review/organizations?status=pending",
                                  "/review/complaints", "/me", "/console/organization",
                                  "/org/campaigns"])
def test_a_signed_out_person_is_sent_to_sign_in_and_back(client: TestClient,
                                                         path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303, path
    location = response.headers["location"]
    assert location.startswith("/login?next=")
    signin = client.get(location)
    assert signin.status_code == 200 and 'name="next"' in signin.text
    assert f'value="{path.replace("&", "&amp;")}"' in signin.text


def test_the_api_and_htmx_keep_a_401(client: TestClient) -> None:
    api = client.get("/api/v1/me")
    assert api.status_code == 401 and api.json()["error"]["code"] == "not_authenticated"
    fragment = client.get("/review", headers={"HX-Request": "true"}, follow_redirects=False)
    assert fragment.status_code == 401
    assert fragment.headers["hx-redirect"] == "/login?next=/review"


def test_a_signed_in_person_without_the_role_gets_a_403_page(client: TestClient,
                                                             db: Database) -> None:
    sign_in(client, db, new_user(db))
    page = client.get("/review")
    assert page.status_code == 403
    assert _heading(page.text) == "您无权查看此页面"
    assert 'data-code="reviewer_only"' in page.text


def test_405_is_a_page_with_the_allowed_methods(client: TestClient) -> None:
    page = client.delete("/projects")
    assert page.status_code == 405
    assert _heading(page.text) == "此处不支持这个操作"
    assert "GET" in page.headers["allow"]


def _add_test_routes(app: FastAPI) -> None:
    @app.post("/test-only/duplicate-email")
    @app.post("/api/test-only/duplicate-email")
    def duplicate(session: DbSession) -> dict[str, str]:
        # Two users with one email: the database's unique constraint refuses the second.
        make_user(session, email="same@example.org")
        make_user(session, email="same@example.org")
        return {"ok": "no"}

    @app.get("/test-only/crash")
    @app.get("/api/test-only/crash")
    def crash() -> None:
        raise RuntimeError("a bug")

    @app.get("/test-only/busy")
    def busy() -> None:
        raise DomainError("Too many attempts.", code="rate_limited", status_code=429,
                          details={"retry_after": 42})


def test_a_constraint_refusal_is_a_409_and_nothing_is_saved(app: FastAPI, db: Database
                                                           ) -> None:
    _add_test_routes(app)
    with TestClient(app) as client:
        api = client.post("/api/test-only/duplicate-email")
        assert api.status_code == 409
        assert api.json()["error"]["code"] == "integrity_conflict"
        client.get("/login")  # a browser's form carries the CSRF token of its cookie
        page = client.post("/test-only/duplicate-email",
                           headers={"X-CSRF-Token": client.cookies["sj_csrf"]})
        assert page.status_code == 409 and _heading(page.text) == "暂时无法完成此操作"
        assert 'data-code="integrity_conflict"' in page.text
    with db.transaction(write=False) as s:
        assert _count_users(s) == 0


def _count_users(session: Session) -> int:
    from sqlalchemy import func, select

    from shanju.accounts.models import User

    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def test_a_bug_is_a_500_page_in_the_layout_and_json_on_the_api(app: FastAPI) -> None:
    _add_test_routes(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        page = client.get("/test-only/crash")
        assert page.status_code == 500
        assert _heading(page.text) == "平台出了点故障"
        assert '<nav class="nav"' in page.text and "a bug" not in page.text
        api = client.get("/api/test-only/crash")
        assert api.status_code == 500 and api.json()["error"]["code"] == "internal_error"


def test_429_says_when_to_try_again(app: FastAPI) -> None:
    _add_test_routes(app)
    with TestClient(app) as client:
        page = client.get("/test-only/busy")
        assert page.status_code == 429 and page.headers["retry-after"] == "42"
        assert _heading(page.text) == "请稍后再试"


def test_every_page_links_a_favicon_that_is_served(client: TestClient) -> None:
    home = client.get("/")
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in home.text
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    svg = client.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")

