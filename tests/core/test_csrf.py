"""CSRF: every unsafe route refuses a cookie-authenticated request without its token, and the
token is bound to the session (a new one at every sign-in)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.accounts import service as accounts
from shanju.accounts.models import Role
from shanju.campaigns.checkout import OrderCallbackLane
from shanju.core.db import Database
from shanju.core.deps import SAFE_METHODS
from shanju.donations.models import Donation
from tests.accounts.helpers import csrf, error_code, login
from tests.factories import make_user

# Served before the application by a plain-ASGI lane (campaigns/checkout.py): a provider's
# signed callback, which reads no cookie and acts for nobody signed in.
SERVED_BEFORE_THE_APP = {
    f"{OrderCallbackLane.PREFIX}{{provider}}{OrderCallbackLane.SUFFIX}",
}


def _unsafe_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every unsafe HTTP route of the application."""
    found = []
    for route in iter_route_contexts(app.routes):
        methods = route.methods
        if not methods or route.path in SERVED_BEFORE_THE_APP:
            continue
        for method in sorted(set(methods) - SAFE_METHODS):
            found.append((method, str(route.path)))
    return found


def _concrete(path: str) -> str:
    # Path parameters by "1": a number for ids, a valid enough string for slugs and names.
    return re.sub(r"\{[^}]+\}", "1", path)


def _code(response: object) -> str | None:
    content_type = response.headers.get("content-type", "")  # type: ignore[attr-defined]
    if content_type.startswith("application/json"):
        body = response.json()  # type: ignore[attr-defined]
        return body.get("error", {}).get("code") if isinstance(body, dict) else None
    return error_code(response.text)  # type: ignore[attr-defined]


def _signed_in(client: TestClient, db: Database, role: Role = Role.ADMIN) -> str:
    """Sign ``client`` in through the form; return the CSRF token its pages now carry."""
    with db.transaction() as session:
        email = make_user(session, role=role).email
    assert login(client, email).status_code == 303
    return str(client.cookies["sj_csrf"])


def test_every_unsafe_route_refuses_a_cookie_request_without_its_token(
    app: FastAPI, client: TestClient, db: Database
) -> None:
    routes = _unsafe_routes(app)
    # The five JSON routes ADR 0004 promised to check and did not, among all the others.
    for expected in (("POST", "/api/v1/donations"),
                     ("POST", "/api/v1/donations/{donation_id}/refunds"),
                     ("POST", "/api/v1/payments/sandbox/{intent_id}/complete"),
                     ("POST", "/api/v1/payments/sandbox/orders/complete"),
                     ("POST", "/api/v1/campaigns/{campaign_id}/orders")):
        assert expected in routes
    assert len(routes) > 100
    _signed_in(client, db)
    let_through = []
    for method, path in routes:
        # The browser's cookies (session and CSRF) go along; no token in a header or form.
        response = client.request(method, _concrete(path), follow_redirects=False)
        if response.status_code != 403 or _code(response) != "csrf_failed":
            let_through.append((method, path, response.status_code, _code(response)))
    assert let_through == []
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Donation)) == 0


def test_with_its_token_no_route_refuses_for_csrf(
    app: FastAPI, client: TestClient, db: Database
) -> None:
    token = _signed_in(client, db)
    refused = []
    for method, path in _unsafe_routes(app):
        if path in ("/logout", "/me/sessions/end", "/api/v1/me/sessions"):
            continue  # would end the session the rest of the walk uses
        response = client.request(method, _concrete(path), headers={"X-CSRF-Token": token},
                                  follow_redirects=False)
        if _code(response) == "csrf_failed":
            refused.append((method, path))
    assert refused == []


def test_a_bearer_request_is_exempt_and_a_cookie_beside_it_changes_nothing(
    client: TestClient, db: Database
) -> None:
    with db.transaction() as session:
        user = make_user(session, role=Role.DONOR)
        _, plain = accounts.do_create_api_token(session=session, user=user, name="t")
    _signed_in(client, db)  # a session cookie of someone else rides along
    response = client.post("/api/v1/me/notifications/read",
                           headers={"Authorization": f"Bearer {plain}"})
    assert response.status_code == 204


def test_an_api_request_without_a_session_cookie_needs_no_token(client: TestClient) -> None:
    response = client.post("/api/v1/donations", json={})
    assert response.status_code == 401  # asked to authenticate, not refused as a forgery


def test_sign_in_rotates_the_token_and_the_old_one_stops_working(
    client: TestClient, db: Database
) -> None:
    before = csrf(client)  # the anonymous browser's token, e.g. planted by someone
    with db.transaction() as session:
        email = make_user(session, role=Role.DONOR).email
    response = login(client, email)
    assert response.status_code == 303
    after = response.cookies.get("sj_csrf")
    assert after and after != before
    session_token = client.cookies["sj_session"]
    for token in (before, "forged"):
        client.cookies.delete("sj_csrf")  # even with the cookie to match
        client.cookies.set("sj_csrf", token, domain="testserver.local")
        refused = client.post("/me/notifications/read", data={"csrf_token": token},
                              follow_redirects=False)
        assert (refused.status_code, error_code(refused.text)) == (403, "csrf_failed")
        api = client.post("/api/v1/me/notifications/read", headers={"X-CSRF-Token": token})
        assert (api.status_code, api.json()["error"]["code"]) == (403, "csrf_failed")
    # The session's own token works whatever the cookie says; a page resets the cookie.
    ok = client.post("/me/notifications/read", data={"csrf_token": after},
                     follow_redirects=False)
    assert ok.status_code == 303
    assert client.cookies["sj_csrf"] == after
    assert client.cookies["sj_session"] == session_token


def test_a_new_sign_in_gets_a_new_token(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        email = make_user(session, role=Role.DONOR).email
    first = login(client, email).cookies.get("sj_csrf")
    client.post("/logout", data={"csrf_token": first}, follow_redirects=False)
    anonymous = client.cookies["sj_csrf"]
    assert anonymous != first
    second = login(client, email).cookies.get("sj_csrf")
    assert second not in (first, anonymous)
    assert client.post("/me/notifications/read", data={"csrf_token": first},
                       follow_redirects=False).status_code == 403


@pytest.mark.parametrize("kind", ["header", "form"])
def test_anonymous_forms_still_use_the_double_submit_cookie(
    client: TestClient, db: Database, kind: str
) -> None:
    token = csrf(client)
    with db.transaction() as session:
        email = make_user(session, role=Role.DONOR).email
    fields = {"email": email, "password": "wrong password"}
    if kind == "header":
        response = client.post("/login", data=fields, headers={"X-CSRF-Token": token})
    else:
        response = client.post("/login", data={**fields, "csrf_token": token})
    assert error_code(response.text) == "invalid_credentials"
    assert error_code(client.post("/login", data=fields).text) == "csrf_failed"
