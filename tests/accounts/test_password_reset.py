"""Password reset by email, end to end over SMTP: the request (the same answer for any
address), the mail in the sink, the link, the new password, every old session gone; links
single-use and expiring on the app's clock; rate limits (both databases)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.accounts.models import PasswordReset
from shanju.core.db import Database
from shanju.core.mailsink import MailSink
from shanju.core.ratelimit import LIMITS, RateLimiter
from tests.accounts.helpers import csrf, error_code, login
from tests.accounts.world import Clock, link_path, mail_to
from tests.core.test_ratelimit import Clock as LimiterClock
from tests.factories import make_user

EMAIL = "li.na@example.org"
NEW_PASSWORD = "lantern orchard violin 42"


@pytest.fixture
def clock(app) -> Clock:  # type: ignore[no-untyped-def]
    """The app's clock alone (the rate limiter keeps its own; one test replaces it)."""
    clock = Clock()
    app.state.clock = clock
    return clock


@pytest.fixture
def account(db: Database) -> int:
    with db.transaction() as session:
        return make_user(session, email=EMAIL, display_name="李娜").id


def _ask(client: TestClient, email: str) -> object:
    return client.post("/password/forgot", data={"email": email, "csrf_token": csrf(client)})


def _signed_in(app, email: str) -> TestClient:  # type: ignore[no-untyped-def]
    browser = TestClient(app, base_url="http://testserver")
    assert login(browser, email).status_code == 303
    assert browser.get("/me", follow_redirects=False).status_code == 200
    return browser


def _resets(db: Database) -> int:
    with db.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(PasswordReset)) or 0)


def test_reset_through_the_mail_sink_signs_out_every_old_session(
    app, client: TestClient, db: Database, sink: MailSink, clock: Clock, account: int,  # type: ignore[no-untyped-def]
) -> None:
    phone, laptop = _signed_in(app, EMAIL), _signed_in(app, EMAIL)
    asked = _ask(client, "  Li.Na@Example.org ")
    assert asked.status_code == 200 and "data-reset-sent" in asked.text  # type: ignore[attr-defined]
    message = mail_to(sink, EMAIL, "accounts.password.reset")
    assert message.subject == "重置您在善举的密码"
    assert "李娜" in message.body and "1 小时" in message.body
    path = link_path(message)
    assert path.startswith("/password/reset/")
    page = client.get(path)
    assert page.status_code == 200 and "data-reset-form" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    done = client.post(path, data={"password": NEW_PASSWORD, "csrf_token": csrf(client)},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/login?flash=password_reset"
    # Every session of the account ended: the phone and the laptop are signed out.
    for browser in (phone, laptop):
        assert browser.get("/me", follow_redirects=False).status_code == 303
    assert login(client, EMAIL).status_code == 422  # the old password no longer works
    assert login(client, EMAIL, NEW_PASSWORD).status_code == 303
    # The account is told, and the link is spent.
    assert "重置" in mail_to(sink, EMAIL, "accounts.password.changed").body
    assert client.get(path).status_code == 404
    again = client.post(path, data={"password": "another fine password 7",
                                    "csrf_token": csrf(client)})
    assert again.status_code == 404 and error_code(again.text) == "reset_link_invalid"


def test_an_address_without_an_account_gets_the_same_answer_and_a_notice(
    client: TestClient, db: Database, sink: MailSink, clock: Clock, account: int,
) -> None:
    known = _ask(client, EMAIL)
    unknown = _ask(client, "nobody@example.org")
    assert known.status_code == unknown.status_code == 200  # type: ignore[attr-defined]
    # The pages differ only by the address they repeat.
    assert known.text.replace(EMAIL, "X") == unknown.text.replace(  # type: ignore[attr-defined]
        "nobody@example.org", "X")
    notice = mail_to(sink, "nobody@example.org", "accounts.password.no_account")
    assert "/signup" in notice.body and "/password/reset/" not in notice.body
    assert _resets(db) == 1
    bad = _ask(client, "not an address")
    assert bad.status_code == 422 and error_code(bad.text) == "invalid_email"  # type: ignore[attr-defined]


def test_a_link_expires_after_an_hour_and_one_use_spends_them_all(
    client: TestClient, db: Database, sink: MailSink, clock: Clock, account: int,
) -> None:
    _ask(client, EMAIL)
    first = link_path(mail_to(sink, EMAIL, "accounts.password.reset"))
    clock.advance(minutes=59)
    assert client.get(first).status_code == 200
    clock.advance(minutes=1, seconds=1)
    expired = client.get(first)
    assert expired.status_code == 404 and error_code(expired.text) == "reset_link_invalid"
    # A new link works; using it spends an older one that was still valid.
    _ask(client, EMAIL)
    second = link_path(mail_to(sink, EMAIL, "accounts.password.reset"))
    clock.advance(minutes=1)
    _ask(client, EMAIL)
    third = link_path(mail_to(sink, EMAIL, "accounts.password.reset"))
    assert len({first, second, third}) == 3
    weak = client.post(third, data={"password": "12345678", "csrf_token": csrf(client)})
    assert weak.status_code == 422 and error_code(weak.text) == "common_password"
    assert client.get(third).status_code == 200  # a refused password does not spend it
    assert client.post(third, data={"password": NEW_PASSWORD, "csrf_token": csrf(client)},
                       follow_redirects=False).status_code == 303
    assert client.get(second).status_code == 404
    assert client.get(third).status_code == 404


def test_reset_emails_are_rate_limited_per_address_and_per_client(
    app, client: TestClient, db: Database, sink: MailSink, clock: Clock, account: int,  # type: ignore[no-untyped-def]
) -> None:
    limiter_clock = LimiterClock(1_800_000_000.0 + 5)
    app.state.ratelimiter = RateLimiter("memory://", clock=limiter_clock)
    for _ in range(LIMITS["reset.account"].amount):
        assert _ask(client, EMAIL).status_code == 200  # type: ignore[attr-defined]
    refused = _ask(client, EMAIL)
    assert refused.status_code == 429 and error_code(refused.text) == "rate_limited"  # type: ignore[attr-defined]
    assert _resets(db) == LIMITS["reset.account"].amount
    # Other addresses from the same client go on until the client's own limit.
    # (the refused request counted against the client too)
    for n in range(LIMITS["reset.ip"].amount - LIMITS["reset.account"].amount - 1):
        assert _ask(client, f"other{n}@example.org").status_code == 200  # type: ignore[attr-defined]
    assert _ask(client, "one.more@example.org").status_code == 429  # type: ignore[attr-defined]
    limiter_clock.now += 3600
    assert _ask(client, EMAIL).status_code == 200  # type: ignore[attr-defined]
