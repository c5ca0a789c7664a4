"""Sessions: the idle timeout (short for staff, long for donors), activity recorded at most
once a minute, and signing out everywhere (ADR 0022)."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, WebSession
from shanju.core.audit import AuditEntry
from shanju.core.clock import utcnow
from shanju.core.db import Database
from tests.accounts.helpers import csrf, login
from tests.factories import make_user


def _user(db: Database, role: Role) -> tuple[int, str]:
    with db.transaction() as session:
        user = make_user(session, role=role)
        return user.id, user.email


def _idle_for(db: Database, user_id: int, idle: dt.timedelta) -> None:
    """Make every session of the user look last used ``idle`` ago."""
    with db.transaction() as session:
        session.execute(update(WebSession).where(WebSession.user_id == user_id)
                        .values(last_seen_at=utcnow() - idle))


def _last_seen(db: Database, user_id: int) -> dt.datetime:
    with db.transaction(write=False) as session:
        return session.scalars(select(WebSession.last_seen_at)
                               .where(WebSession.user_id == user_id)).one()


def _signed_in(client: TestClient) -> bool:
    return client.get("/api/v1/me").status_code == 200


@pytest.mark.parametrize(("role", "idle", "still_in"), [
    (Role.REVIEWER, dt.timedelta(minutes=29), True),
    (Role.REVIEWER, dt.timedelta(minutes=31), False),
    (Role.ORG_STAFF, dt.timedelta(minutes=31), False),
    (Role.ADMIN, dt.timedelta(minutes=31), False),
    (Role.DONOR, dt.timedelta(minutes=31), True),
    (Role.DONOR, dt.timedelta(days=6), True),
    (Role.DONOR, dt.timedelta(days=7, minutes=1), False),
])
def test_a_session_ends_after_sitting_idle(
    client: TestClient, db: Database, role: Role, idle: dt.timedelta, still_in: bool
) -> None:
    user_id, email = _user(db, role)
    login(client, email)
    assert _signed_in(client)
    _idle_for(db, user_id, idle)
    assert _signed_in(client) is still_in
    if not still_in:  # pages treat the browser as signed out
        page = client.get("/me", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login")


def test_the_idle_timeouts_are_settings(
    app: FastAPI, client: TestClient, db: Database
) -> None:
    app.state.settings.session_idle_minutes_donor = 10
    user_id, email = _user(db, Role.DONOR)
    login(client, email)
    _idle_for(db, user_id, dt.timedelta(minutes=11))
    assert not _signed_in(client)


def test_activity_is_recorded_at_most_once_a_minute(client: TestClient, db: Database) -> None:
    user_id, email = _user(db, Role.REVIEWER)
    login(client, email)
    signed_in_at = _last_seen(db, user_id)
    assert _signed_in(client)
    assert _last_seen(db, user_id) == signed_in_at  # within the minute: no write
    _idle_for(db, user_id, dt.timedelta(minutes=20))
    stale = _last_seen(db, user_id)
    assert _signed_in(client)  # a read request records activity in its own transaction
    seen = _last_seen(db, user_id)
    assert seen > stale and utcnow() - seen < dt.timedelta(minutes=1)
    # ... so browsing keeps a staff member in well past 30 minutes from signing in.
    _idle_for(db, user_id, dt.timedelta(minutes=20))
    assert _signed_in(client)
    _idle_for(db, user_id, dt.timedelta(minutes=20))
    assert _signed_in(client)


def test_touching_twice_in_a_minute_writes_once(db: Database) -> None:
    user_id, _ = _user(db, Role.DONOR)
    with db.transaction() as session:
        user = session.get_one(accounts.User, user_id)
        token = accounts.do_start_session(session=session, user=user)
    _idle_for(db, user_id, dt.timedelta(minutes=5))
    with db.transaction() as session:
        found = accounts.session_login(session=session, token=token)
        assert found is not None and found[1] is not None
        assert accounts.do_touch_session(session=session, session_id=found[1])
        assert not accounts.do_touch_session(session=session, session_id=found[1])
        found = accounts.session_login(session=session, token=token)
        assert found is not None and found[1] is None  # nothing due any more


def test_sign_out_everywhere_ends_every_browser_but_keeps_api_tokens(
    app: FastAPI, client: TestClient, db: Database
) -> None:
    user_id, email = _user(db, Role.ORG_STAFF)
    with db.transaction() as session:
        user = session.get_one(accounts.User, user_id)
        _, plain = accounts.do_create_api_token(session=session, user=user, name="script")
    with TestClient(app, base_url="http://testserver") as phone:
        login(phone, email)
        assert _signed_in(phone)
        login(client, email)
        page = client.get("/me")
        assert 'action="/me/sessions/end"' in page.text
        response = client.post("/me/sessions/end", data={"csrf_token": csrf(client)},
                               follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?flash=signed_out_everywhere"
        assert "已在所有设备上退出登录" in client.get(response.headers["location"]).text
        assert not _signed_in(client)
        assert not _signed_in(phone)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {plain}"}).status_code \
        == 200
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(WebSession)
                              .where(WebSession.user_id == user_id)) == 0
        [entry] = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "accounts.sessions.ended_all")).all()
        assert (entry.actor_id, str(entry.object_id), entry.data) == (
            user_id, str(user_id), {"sessions": 2})


def test_sign_out_everywhere_through_the_api(client: TestClient, db: Database) -> None:
    user_id, email = _user(db, Role.DONOR)
    other_id, other_email = _user(db, Role.DONOR)
    login(client, other_email)  # someone else's session is not touched
    with db.transaction() as session:
        user = session.get_one(accounts.User, user_id)
        _, plain = accounts.do_create_api_token(session=session, user=user, name="script")
        accounts.do_start_session(session=session, user=user)
        accounts.do_start_session(session=session, user=user)
    auth = {"Authorization": f"Bearer {plain}"}
    assert client.delete("/api/v1/me/sessions", headers=auth).status_code == 204
    with db.transaction(write=False) as session:
        count = select(func.count()).select_from(WebSession)
        assert session.scalar(count.where(WebSession.user_id == user_id)) == 0
        assert session.scalar(count.where(WebSession.user_id == other_id)) == 1
    # With a session cookie the API asks for the CSRF token like any unsafe request.
    refused = client.delete("/api/v1/me/sessions")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "csrf_failed")
    assert client.delete("/api/v1/me/sessions",
                         headers={"X-CSRF-Token": csrf(client)}).status_code == 204
    assert not _signed_in(client)
