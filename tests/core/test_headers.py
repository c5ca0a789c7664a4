"""Security headers: the Content-Security-Policy and its nonce, HSTS, Permissions-Policy and
``Cache-Control: no-store`` on private answers (ADR 0022)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from shanju.accounts.models import Role
from shanju.core import headers
from shanju.core.config import Settings
from shanju.core.db import Database
from tests.accounts.helpers import login
from tests.factories import make_user

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "shanju" / "templates"


def _policy(header: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in header.split("; ")}


def test_every_page_has_a_strict_policy_with_a_fresh_nonce(client: TestClient) -> None:
    first = client.get("/")
    second = client.get("/")
    policies = [_policy(r.headers["content-security-policy"]) for r in (first, second)]
    nonces = []
    for policy in policies:
        scripts = policy["script-src"]
        assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
        [nonce] = [s for s in scripts if s.startswith("'nonce-")]
        nonces.append(nonce)
        assert policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'self'"]
        assert policy["base-uri"] == ["'self'"]
        assert policy["form-action"] == ["'self'"]
        assert policy["style-src"] == ["'self'"]
        assert "ws://testserver" in policy["connect-src"]
    assert nonces[0] != nonces[1]


def test_api_docs_inline_script_carries_the_nonce(client: TestClient) -> None:
    response = client.get("/api/docs")
    policy = _policy(response.headers["content-security-policy"])
    [nonce] = [s[7:-1] for s in policy["script-src"] if s.startswith("'nonce-")]
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", response.text)
    assert inline == [f' nonce="{nonce}"']
    assert '"validatorUrl": null' in response.text


def test_templates_have_no_script_the_policy_would_refuse() -> None:
    problems = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        for tag in re.findall(r"<script\b[^>]*>", text):
            inline = "src=" not in tag
            data = 'type="application/json"' in tag
            if inline and not data and 'nonce="{{ csp_nonce }}"' not in tag:
                problems.append(f"{path.name}: inline script without the nonce: {tag}")
        for handler in re.findall(r"<[^>]*\son[a-z]+\s*=", text):
            problems.append(f"{path.name}: inline event handler: {handler}")
        if "javascript:" in text:
            problems.append(f"{path.name}: a javascript: URL")
        if re.search(r"<style\b", text):
            problems.append(f"{path.name}: a <style> element")
    assert problems == []


def test_permissions_policy_and_no_hsts_outside_production(client: TestClient) -> None:
    response = client.get("/")
    features = dict(f.split("=") for f in response.headers["permissions-policy"].split(", "))
    for feature in ("camera", "microphone", "geolocation", "payment"):
        assert features[feature] == "()"
    assert "strict-transport-security" not in response.headers
    assert response.headers["x-frame-options"] == "SAMEORIGIN"


def _request(path: str, headers_: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers_ or {}).items()]
    return Request({"type": "http", "method": "GET", "path": path, "query_string": b"",
                    "headers": [(b"host", b"shanju.example"), *raw]})


def test_hsts_in_production() -> None:
    production = Settings(environment="production")
    response = HTMLResponse("<p>hi</p>")
    headers.apply(_request("/"), response, production)
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    development = HTMLResponse("<p>hi</p>")
    headers.apply(_request("/"), development, Settings(environment="development"))
    assert "strict-transport-security" not in development.headers


def test_a_forged_host_header_adds_nothing_to_the_policy() -> None:
    response = HTMLResponse("<p>hi</p>")
    request = _request("/")
    request.scope["headers"] = [(b"host", b"x; script-src *")]
    headers.apply(request, response, Settings())
    policy = response.headers["content-security-policy"]
    assert "script-src *" not in policy and "ws://x" not in policy


def test_stage_sources_and_extra_media_hosts_are_origins_only() -> None:
    request = _request("/")
    headers.allow_source(request, "frame-src", "https://player.example.test/embed/1?x=';")
    headers.allow_source(request, "frame-src", "javascript:alert(1)")
    response = HTMLResponse("<p>hi</p>")
    settings = Settings(csp_media_hosts="https://cdn.example.test not-an-origin")
    headers.apply(request, response, settings)
    policy = _policy(response.headers["content-security-policy"])
    assert policy["frame-src"] == ["'self'", "https://cdn.example.test",
                                   "https://player.example.test"]
    assert "https://cdn.example.test" in policy["media-src"]
    assert "not-an-origin" not in response.headers["content-security-policy"]


def test_json_answers_get_no_page_policy() -> None:
    response = JSONResponse({})
    headers.apply(_request("/api/v1/x"), response, Settings())
    assert "content-security-policy" not in response.headers


@pytest.mark.parametrize("path", ["/me", "/me/donations", "/review", "/api/v1/me",
                                  "/api/v1/me/notifications", "/"])
def test_answers_to_a_signed_in_browser_are_never_stored(
    client: TestClient, db: Database, path: str
) -> None:
    assert "cache-control" not in client.get(path).headers or path != "/"
    with db.transaction() as session:
        email = make_user(session, role=Role.REVIEWER).email
    login(client, email)
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


def test_a_bearer_answer_is_never_stored(client: TestClient, db: Database) -> None:
    from shanju.accounts import service as accounts

    with db.transaction() as session:
        user = make_user(session)
        _, plain = accounts.do_create_api_token(session=session, user=user, name="t")
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {plain}"})
    assert response.headers["cache-control"] == "no-store"


def test_public_answers_stay_cacheable_for_a_signed_in_browser(
    client: TestClient, db: Database
) -> None:
    with db.transaction() as session:
        email = make_user(session).email
    login(client, email)
    assert "cache-control" not in client.get("/static/css/site.css").headers
    # A route that chose its own caching keeps it (the log's public key: public, 5 minutes).
    key = client.get("/api/v1/transparency/public-key")
    assert key.headers["cache-control"] == "public, max-age=300"
