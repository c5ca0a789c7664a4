"""The profile: the display name, a new email address confirmed by its link (over SMTP to
the sink), and the API's reset and phone-token routes (both databases)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from shanju.accounts.models import User
from shanju.core.db import Database
from shanju.core.mailsink import MailSink
from tests.accounts.helpers import csrf, error_code, login
from tests.accounts.world import Clock, link_path, mail_to, sms_emulator
from tests.factories import PASSWORD, make_user

EMAIL = "li.na@example.org"


@pytest.fixture
def signed_in(client: TestClient, db: Database, clock: Clock) -> int:
    with db.transaction() as session:
        user_id = make_user(session, email=EMAIL, display_name="李娜").id
    assert login(client, EMAIL).status_code == 303
    return user_id


def _user(db: Database, user_id: int) -> User:
    with db.transaction(write=False) as session:
        user = session.get_one(User, user_id)
        session.expunge(user)
        return user


def test_the_display_name_is_checked_and_saved(
    client: TestClient, db: Database, signed_in: int,
) -> None:
    page = client.get("/me/profile")
    assert page.status_code == 200 and 'value="李娜"' in page.text
    empty = client.post("/me/profile", data={"display_name": "  ", "csrf_token": csrf(client)})
    assert empty.status_code == 422 and error_code(empty.text) == "invalid_display_name"
    saved = client.post("/me/profile", data={"display_name": " 李娜娜 ",
                                             "csrf_token": csrf(client)}, follow_redirects=False)
    assert saved.status_code == 303 and _user(db, signed_in).display_name == "李娜娜"
    api = client.patch("/api/v1/me", json={"display_name": "娜"},
                       headers={"X-CSRF-Token": csrf(client)})
    assert api.status_code == 200 and api.json()["display_name"] == "娜"


def test_a_new_email_changes_when_its_link_is_opened(
    client: TestClient, db: Database, sink: MailSink, clock: Clock, signed_in: int,
) -> None:
    wrong = client.post("/me/email", data={"new_email": "na@example.org", "password": "nope",
                                           "csrf_token": csrf(client)})
    assert wrong.status_code == 422 and error_code(wrong.text) == "invalid_password"
    asked = client.post("/me/email", data={"new_email": "Na@Example.org", "password": PASSWORD,
                                           "csrf_token": csrf(client)})
    assert asked.status_code == 200 and "data-email-sent" in asked.text
    assert _user(db, signed_in).email == EMAIL  # not before the link is opened
    notice = mail_to(sink, EMAIL, "accounts.email.change_requested")
    assert "na@example.org" in notice.body
    path = link_path(mail_to(sink, "na@example.org", "accounts.email.confirm"))
    assert client.get(path).status_code == 200
    confirmed = client.post(path, data={"csrf_token": csrf(client)}, follow_redirects=False)
    assert confirmed.status_code == 303 and confirmed.headers["location"].endswith("email_changed")
    assert _user(db, signed_in).email == "na@example.org"
    assert client.post(path, data={"csrf_token": csrf(client)}).status_code == 404  # once
    # An address with an account gets a notice, not a link; the answer is the same.
    with db.transaction() as session:
        make_user(session, email="taken@example.org")
    same = client.post("/me/email", data={"new_email": "taken@example.org",
                                          "password": PASSWORD, "csrf_token": csrf(client)})
    assert same.status_code == 200 and "data-email-sent" in same.text
    assert "/me/email/confirm/" not in mail_to(sink, "taken@example.org",
                                               "accounts.email.taken").body
    # A link expires after 24 hours.
    client.post("/me/email", data={"new_email": "later@example.org", "password": PASSWORD,
                                   "csrf_token": csrf(client)})
    late = link_path(mail_to(sink, "later@example.org", "accounts.email.confirm"))
    clock.advance(hours=24, seconds=1)
    assert client.get(late).status_code == 404


def test_the_api_resets_a_password_and_gives_a_token_for_an_sms_code(
    app, client: TestClient, db: Database, sink: MailSink, clock: Clock,  # type: ignore[no-untyped-def]
) -> None:
    with db.transaction() as session:
        make_user(session, email=EMAIL)
    for address in (EMAIL, "nobody@example.org"):
        answer = client.post("/api/v1/auth/password-resets", json={"email": address})
        assert answer.status_code == 202 and answer.json()["status"] == "reset_link_sent"
    token = link_path(mail_to(sink, EMAIL, "accounts.password.reset")).rsplit("/", 1)[1]
    weak = client.post("/api/v1/auth/password-resets/confirm",
                       json={"token": token, "password": "password"})
    assert weak.status_code == 422 and weak.json()["error"]["code"] == "common_password"
    assert client.post("/api/v1/auth/password-resets/confirm",
                       json={"token": token, "password": "velvet harbor quince 9"}
                       ).status_code == 204
    again = client.post("/api/v1/auth/password-resets/confirm",
                        json={"token": token, "password": "velvet harbor quince 9"})
    assert again.status_code == 404 and again.json()["error"]["code"] == "reset_link_invalid"
    with sms_emulator(clock) as (emulator, sender):
        app.state.sms = sender
        sent = client.post("/api/v1/auth/sms-codes", json={"phone": "13800138000"})
        assert sent.status_code == 202 and sent.json() == {"phone": "138****8000",
                                                           "expires_in": 300}
        bad = client.post("/api/v1/auth/phone-tokens",
                          json={"phone": "13800138000", "code": "abc", "name": "手机"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_code"
        made = client.post("/api/v1/auth/phone-tokens", json={
            "phone": "13800138000", "code": emulator.latest_code("13800138000"), "name": "手机"})
        assert made.status_code == 201
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {made.json()['token']}"})
    assert me.status_code == 200 and me.json()["phone"] == "+8613800138000"
    assert me.json()["email"] is None
    with db.transaction(write=False) as session:
        assert session.scalar(select(User.id).where(User.phone == "+8613800138000"))
