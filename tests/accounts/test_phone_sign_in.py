"""Signing in with an SMS code through the Alibaba Cloud SMS emulator (the production sender
over HTTP), on both databases: a new number gets an account, a known one its account; codes
hashed, 5 minutes, 5 tries, once; rate limits per number and per client; linking a number to
an email account only from its profile."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from shanju.accounts.models import PhoneCode, User
from shanju.accounts.sms_emulator import AliyunSmsEmulator
from shanju.core.db import Database
from shanju.core.ratelimit import LIMITS
from tests.accounts.helpers import csrf, error_code, login
from tests.accounts.world import Clock
from tests.factories import make_user

PHONE = "+8613800138000"


def _ask_code(client: TestClient, phone: str = "138 0013 8000") -> object:
    return client.post("/login/phone/code", data={"phone": phone, "csrf_token": csrf(client)})


def _sign_in(client: TestClient, code: str, phone: str = PHONE) -> object:
    return client.post("/login/phone", data={"phone": phone, "code": code,
                                             "csrf_token": csrf(client)},
                       follow_redirects=False)


def _users(db: Database) -> list[User]:
    with db.transaction(write=False) as session:
        users = list(session.scalars(select(User).order_by(User.id)))
        session.expunge_all()
        return users


def test_a_new_number_signs_in_and_gets_a_donor_account(
    client: TestClient, db: Database, emulator: AliyunSmsEmulator, clock: Clock,
) -> None:
    page = client.get("/login")
    assert 'href="/login/phone"' in page.text
    asked = _ask_code(client)
    assert asked.status_code == 200 and "data-code-sent" in asked.text  # type: ignore[attr-defined]
    assert "138****8000" in asked.text  # type: ignore[attr-defined]
    code = emulator.latest_code(PHONE)
    assert code is not None and len(code) == 6 and code.isdigit()
    # Only a keyed hash is stored.
    with db.transaction(write=False) as session:
        row = session.scalars(select(PhoneCode)).one()
        assert code not in row.code_hash and len(row.code_hash) == 64
    signed_in = _sign_in(client, code)
    assert signed_in.status_code == 303  # type: ignore[attr-defined]
    assert signed_in.headers["location"] == "/me?flash=phone_welcome"  # type: ignore[attr-defined]
    me = client.get("/me")
    assert me.status_code == 200 and "138****8000" in me.text
    [user] = _users(db)
    assert user.phone == PHONE and user.email is None and user.display_name.startswith("爱心人士")
    assert not user.password_hash.startswith("$argon2")
    # The same number signs in to the same account next time; the code worked once.
    client.post("/logout", data={"csrf_token": csrf(client)})
    assert error_code(_sign_in(client, code).text) == "invalid_code"  # type: ignore[attr-defined]
    clock.advance(minutes=1, seconds=1)
    _ask_code(client, "+86 138-0013-8000")
    assert _sign_in(client, emulator.latest_code(PHONE) or "").status_code == 303  # type: ignore[attr-defined]
    assert [u.id for u in _users(db)] == [user.id]


def test_codes_expire_after_five_minutes_and_die_after_five_wrong_tries(
    client: TestClient, db: Database, emulator: AliyunSmsEmulator, clock: Clock,
) -> None:
    _ask_code(client)
    code = emulator.latest_code(PHONE) or ""
    clock.advance(minutes=5, seconds=1)
    expired = _sign_in(client, code)
    assert expired.status_code == 422 and error_code(expired.text) == "invalid_code"  # type: ignore[attr-defined]
    _ask_code(client)
    code = emulator.latest_code(PHONE) or ""
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(4):
        answer = _sign_in(client, wrong)
        assert error_code(answer.text) == "invalid_code"  # type: ignore[attr-defined]
    fifth = _sign_in(client, wrong)
    assert fifth.status_code == 422  # type: ignore[attr-defined]
    assert error_code(fifth.text) == "code_attempts_exceeded"  # type: ignore[attr-defined]
    # The tries were committed although each answer was an error: the right code is dead now.
    assert error_code(_sign_in(client, code).text) == "invalid_code"  # type: ignore[attr-defined]
    assert _users(db) == []
    # A new code spends the one before it.
    clock.advance(minutes=1, seconds=1)
    _ask_code(client)
    older = emulator.latest_code(PHONE) or ""
    clock.advance(minutes=1, seconds=1)
    _ask_code(client)
    newer = emulator.latest_code(PHONE) or ""
    if older != newer:
        assert error_code(_sign_in(client, older).text) == "invalid_code"  # type: ignore[attr-defined]
    assert _sign_in(client, newer).status_code == 303  # type: ignore[attr-defined]


def test_numbers_outside_the_mainland_are_refused_before_any_text(
    client: TestClient, emulator: AliyunSmsEmulator,
) -> None:
    for typed in ("12345", "+1 415 555 0100", "12800138000"):
        answer = _ask_code(client, typed)
        assert answer.status_code == 422  # type: ignore[attr-defined]
        assert error_code(answer.text) == "invalid_phone"  # type: ignore[attr-defined]
        assert "请输入中国大陆手机号" in answer.text  # type: ignore[attr-defined]
    assert emulator.messages == []


def test_codes_are_rate_limited_per_number_and_per_client(
    client: TestClient, emulator: AliyunSmsEmulator, clock: Clock,
) -> None:
    # One a minute per number (a refused ask counts too, like every limit's hits).
    assert _ask_code(client, "13700137000").status_code == 200  # type: ignore[attr-defined]
    again = _ask_code(client, "13700137000")
    assert again.status_code == 429 and error_code(again.text) == "rate_limited"  # type: ignore[attr-defined]
    assert int(again.headers["retry-after"]) <= 60  # type: ignore[attr-defined]
    # Five an hour per number.
    for _ in range(LIMITS["sms.phone"].amount):
        assert _ask_code(client).status_code == 200  # type: ignore[attr-defined]
        clock.advance(seconds=61)
    refused = _ask_code(client)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 60  # type: ignore[attr-defined]
    assert emulator.latest_code(PHONE) is not None
    # Per client: other numbers until the address's budget is spent.
    sent = 2 + LIMITS["sms.phone"].amount  # the asks so far, refused ones included
    n = 0
    while True:
        answer = _ask_code(client, f"1390013{n:04d}")
        if answer.status_code == 429:  # type: ignore[attr-defined]
            break
        n += 1
    assert sent + n <= LIMITS["sms.ip"].amount


def test_a_number_is_added_to_an_email_account_only_from_its_profile(
    client: TestClient, db: Database, emulator: AliyunSmsEmulator, clock: Clock,
) -> None:
    with db.transaction() as session:
        owner = make_user(session, email="li.na@example.org").id
    # Signing in with the number does not reach the email account: it makes another one.
    _ask_code(client)
    assert _sign_in(client, emulator.latest_code(PHONE) or "").status_code == 303  # type: ignore[attr-defined]
    phone_account = next(u for u in _users(db) if u.phone == PHONE)
    assert phone_account.id != owner
    client.post("/logout", data={"csrf_token": csrf(client)})
    # Signed in to the email account, the number is taken: refused after the code proved it.
    assert login(client, "li.na@example.org").status_code == 303
    clock.advance(minutes=1, seconds=1)
    sent = client.post("/me/phone/code", data={"phone": PHONE, "csrf_token": csrf(client)})
    assert sent.status_code == 200 and "data-phone-link-code" in sent.text
    taken = client.post("/me/phone", data={"phone": PHONE, "csrf_token": csrf(client),
                                           "code": emulator.latest_code(PHONE) or ""})
    assert taken.status_code == 409 and error_code(taken.text) == "phone_taken"
    # Another number links, after its code.
    other = "+8613900139000"
    client.post("/me/phone/code", data={"phone": other, "csrf_token": csrf(client)})
    wrong = client.post("/me/phone", data={"phone": other, "code": "12345x",
                                           "csrf_token": csrf(client)})
    assert wrong.status_code == 422 and error_code(wrong.text) == "invalid_code"
    linked = client.post("/me/phone", data={"phone": other, "csrf_token": csrf(client),
                                            "code": emulator.latest_code(other) or ""},
                         follow_redirects=False)
    assert linked.status_code == 303 and linked.headers["location"].endswith("phone_linked")
    assert next(u for u in _users(db) if u.id == owner).phone == other
    # The number now signs in to the email account.
    client.post("/logout", data={"csrf_token": csrf(client)})
    clock.advance(minutes=1, seconds=1)
    _ask_code(client, other)
    _sign_in(client, emulator.latest_code(other) or "", phone=other)
    assert "li.na@example.org" in client.get("/me").text
    # Removed, it no longer does; a phone-only account cannot remove its only way in.
    removed = client.post("/me/phone/remove", data={"csrf_token": csrf(client)},
                          follow_redirects=False)
    assert removed.status_code == 303
    assert next(u for u in _users(db) if u.id == owner).phone is None
    client.post("/logout", data={"csrf_token": csrf(client)})
    clock.advance(minutes=1, seconds=1)
    _ask_code(client)
    _sign_in(client, emulator.latest_code(PHONE) or "")
    refused = client.post("/me/phone/remove", data={"csrf_token": csrf(client)})
    assert refused.status_code == 422 and error_code(refused.text) == "phone_only_account"


def test_phone_sign_in_is_off_without_a_provider_in_production_like_settings(
    app, client: TestClient,  # type: ignore[no-untyped-def]
) -> None:
    app.state.sms = None
    assert client.get("/login/phone").status_code == 404
    assert 'href="/login/phone"' not in client.get("/login").text
    answer = client.post("/api/v1/auth/sms-codes", json={"phone": "13800138000"})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "sms_unavailable"
