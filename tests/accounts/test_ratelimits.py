"""Rate limits over HTTP: sign-in and tokens, sign-up, reports and checkouts (both databases).

The limiter's clock is the test's: moving it past the window replaces a minute's sleep.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.accounts import service as accounts
from shanju.accounts.models import ApiToken
from shanju.core.db import Database
from shanju.core.ratelimit import LIMITS, RateLimiter
from tests.accounts.helpers import csrf, error_code, login, signup, user_count
from tests.core.test_ratelimit import Clock
from tests.factories import PASSWORD, make_user

EMAIL = "zhang.wei@example.org"


@pytest.fixture
def clock(app) -> Clock:  # type: ignore[no-untyped-def]
    """The clock of the app's rate limiter (a fresh in-memory limiter)."""
    clock = Clock(1_800_000_000.0 + 5)  # 5 s into a minute
    app.state.ratelimiter = RateLimiter("memory://", clock=clock)
    return clock


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every argon2 verification sign-in makes (the costly step)."""
    calls: list[str] = []
    real = accounts.verify_password

    def counting(password_hash: str, password: str) -> bool:
        calls.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(accounts, "verify_password", counting)
    yield calls


def _api_token(client: TestClient, email: str, password: str) -> object:
    return client.post("/api/v1/auth/tokens",
                       json={"email": email, "password": password, "name": "脚本"})


def test_the_11th_wrong_password_in_a_minute_waits_for_the_window(
    client: TestClient, db: Database, clock: Clock, hashes: list[str]
) -> None:
    with db.transaction() as session:
        make_user(session, email=EMAIL)
    for n in range(10):
        wrong = login(client, EMAIL, password=f"wrong password {n}")
        assert wrong.status_code == 422 and error_code(wrong.text) == "invalid_credentials"
    assert len(hashes) == 10
    refused = login(client, EMAIL, password="wrong password 11")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "55"
    assert error_code(refused.text) == "rate_limited"
    assert "请稍后再试" in refused.text and "尝试次数过多。请等待 55 秒后再试。" in refused.text
    # While limited even the right password is refused, before any hash is computed.
    right = login(client, EMAIL)
    assert right.status_code == 429 and "sj_session" not in right.headers.get("set-cookie", "")
    english = client.post("/login?lang=en", data={"email": EMAIL, "password": PASSWORD,
                                                   "csrf_token": csrf(client)})
    assert english.status_code == 429
    assert "Too many attempts. Please wait 55 seconds and try again." in english.text
    assert len(hashes) == 10
    # The API shares the account's budget.
    api = _api_token(client, EMAIL, PASSWORD)
    assert api.status_code == 429  # type: ignore[attr-defined]
    assert api.headers["retry-after"] == "55"  # type: ignore[attr-defined]
    assert api.json()["error"]["code"] == "rate_limited"  # type: ignore[attr-defined]
    assert api.json()["error"]["details"] == {"retry_after": 55}  # type: ignore[attr-defined]
    assert len(hashes) == 10

    clock.now += int(refused.headers["retry-after"])  # the window is over
    accepted = login(client, EMAIL)
    assert accepted.status_code == 303 and "sj_session=" in accepted.headers["set-cookie"]


def test_an_unknown_email_is_limited_like_a_real_one(
    client: TestClient, db: Database, clock: Clock
) -> None:
    for _ in range(10):
        assert login(client, "nobody@example.org", password="guess").status_code == 422
    assert login(client, "Nobody@Example.org ", password="guess").status_code == 429


def test_right_passwords_do_not_count(client: TestClient, db: Database, clock: Clock) -> None:
    with db.transaction() as session:
        make_user(session, email=EMAIL)
    for _ in range(LIMITS["password.account"].amount + 2):
        assert login(client, EMAIL).status_code == 303


def test_one_address_guessing_many_accounts_is_limited(
    client: TestClient, db: Database, clock: Clock
) -> None:
    per_ip = LIMITS["password.ip"].amount
    for n in range(per_ip):
        response = _api_token(client, f"user{n}@example.org", "guess")
        assert response.status_code == 401  # type: ignore[attr-defined]
    response = _api_token(client, "another@example.org", "guess")
    assert response.status_code == 429  # type: ignore[attr-defined]
    assert response.headers["retry-after"] == "55"  # type: ignore[attr-defined]
    # Another address is not held back by this one.
    with TestClient(client.app, client=("198.51.100.7", 4000)) as elsewhere:
        assert _api_token(elsewhere, "another@example.org", "guess").status_code == 401  # type: ignore[attr-defined]


def test_api_tokens_are_limited_per_account(
    client: TestClient, db: Database, clock: Clock
) -> None:
    with db.transaction() as session:
        make_user(session, email=EMAIL)
    login(client, EMAIL)
    for n in range(LIMITS["api_token.account"].amount):
        made = client.post("/me/tokens", data={"name": f"脚本{n}", "csrf_token": csrf(client)})
        assert made.status_code == 200
    refused = client.post("/me/tokens", data={"name": "再一个", "csrf_token": csrf(client)})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 3000
    assert "尝试次数过多。请等待 60 分钟后再试。" in refused.text
    # A program (no browser session, so no CSRF token needed) meets the same account's limit.
    with TestClient(client.app) as program:
        assert _api_token(program, EMAIL, PASSWORD).status_code == 429  # type: ignore[attr-defined]
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(ApiToken)) == 20


def test_sign_ups_are_limited_per_address(client: TestClient, db: Database, clock: Clock) -> None:
    for _ in range(LIMITS["signup.ip"].amount):
        assert signup(client, password="short").status_code == 422
    refused = signup(client)
    assert refused.status_code == 429 and error_code(refused.text) == "rate_limited"
    api = client.post("/api/v1/users", json={"email": "a@example.org", "password": PASSWORD,
                                             "display_name": "某人"})
    assert api.status_code == 429
    assert user_count(db) == 0


def test_reports_are_limited_per_user_and_address(
    client: TestClient, db: Database, clock: Clock
) -> None:
    with db.transaction() as session:
        make_user(session, email=EMAIL)
    login(client, EMAIL)
    for _ in range(LIMITS["complaint.user"].amount):
        # An incomplete report still counts: the limit is on filing, not on success.
        response = client.post("/complaints", data={"csrf_token": csrf(client)})
        assert response.status_code == 422
    refused = client.post("/complaints", data={"csrf_token": csrf(client)})
    assert refused.status_code == 429 and refused.headers["retry-after"]
    api = client.post("/api/v1/complaints", headers={"X-CSRF-Token": csrf(client)},
                      json={"category": "other", "content": "x" * 20, "project_id": 1})
    assert api.status_code == 429 and api.json()["error"]["code"] == "rate_limited"


@pytest.mark.parametrize("route", ["donation_api", "donate_page", "order_api", "order_page"])
def test_checkouts_are_limited_per_donor(
    client: TestClient, db: Database, clock: Clock, route: str
) -> None:
    with db.transaction() as session:
        donor = make_user(session, email=EMAIL)
        token = accounts.do_create_api_token(session=session, user=donor, name="t")[1]
    login(client, EMAIL)
    bearer = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k-1"}

    def attempt() -> object:
        # A project and a campaign that do not exist: the limit counts before any check.
        if route == "donation_api":
            return client.post("/api/v1/donations", headers=bearer,
                               json={"project_id": 999, "amount_fen": 100})
        if route == "order_api":
            return client.post("/api/v1/campaigns/999/orders", headers=bearer,
                               json={"project_id": 999, "amount_fen": 100})
        path = ("/projects/999/donate" if route == "donate_page"
                else "/campaigns/999/projects/999/donate")
        return client.post(path, data={"amount": "10", "idempotency_key": "k-1",
                                       "csrf_token": csrf(client)}, follow_redirects=False)

    for _ in range(LIMITS["checkout.donor"].amount):
        assert attempt().status_code != 429  # type: ignore[attr-defined]
    refused = attempt()
    assert refused.status_code == 429  # type: ignore[attr-defined]
    assert refused.headers["retry-after"] == "55"  # type: ignore[attr-defined]
    clock.now += 55
    assert attempt().status_code != 429  # type: ignore[attr-defined]


def test_every_sign_in_failure_costs_one_hash(
    client: TestClient, db: Database, clock: Clock, hashes: list[str]
) -> None:
    # Unknown, deactivated, wrong and right: one argon2 verification each, so the time taken
    # does not tell a deactivated account from the others.
    with db.transaction() as session:
        make_user(session, email=EMAIL)
        make_user(session, email="gone@example.org").is_active = False
    for email, password, status in [("nobody@example.org", PASSWORD, 422),
                                     ("gone@example.org", PASSWORD, 422),
                                     ("gone@example.org", "wrong password", 422),
                                     (EMAIL, "wrong password", 422), (EMAIL, PASSWORD, 303)]:
        before = len(hashes)
        assert login(client, email, password=password).status_code == status
        assert len(hashes) == before + 1, email
