"""The accounts JSON API: sign-up, token lifecycle, /me and notifications, on both databases."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from shanju.accounts import service as accounts
from shanju.accounts.models import ApiToken, Role, User
from shanju.core.db import Database
from tests.accounts.helpers import confirm_path, outbox, user_count
from tests.factories import PASSWORD, make_user


def _token(client: TestClient, email: str, password: str = PASSWORD, name: str = "脚本") -> str:
    response = client.post(
        "/api/v1/auth/tokens", json={"email": email, "password": password, "name": name}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def test_token_lifecycle(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        make_user(session, email="zhao.lei@example.org", display_name="赵磊")
    response = client.post(
        "/api/v1/auth/tokens",
        json={"email": "zhao.lei@example.org", "password": PASSWORD, "name": "数据同步"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("sj_")
    assert body["prefix"] == body["token"][:8]
    assert body["name"] == "数据同步"
    assert body["revoked_at"] is None
    auth = {"Authorization": f"Bearer {body['token']}"}

    me = client.get("/api/v1/me", headers=auth)
    assert me.status_code == 200
    assert me.json()["email"] == "zhao.lei@example.org"
    assert me.json()["role"] == "donor"
    assert "password_hash" not in me.json()

    listed = client.get("/api/v1/me/tokens", headers=auth).json()
    assert [t["id"] for t in listed] == [body["id"]]
    assert "token" not in listed[0]
    assert "token_hash" not in listed[0]

    revoked = client.delete(f"/api/v1/me/tokens/{body['id']}", headers=auth)
    assert revoked.status_code == 204
    after = client.get("/api/v1/me", headers=auth)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "invalid_token"


def test_wrong_credentials_are_401_and_create_no_token(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        make_user(session, email="zhao.lei@example.org")
    for email, password in (("zhao.lei@example.org", "wrong password"),
                            ("nobody@example.org", PASSWORD)):
        response = client.post(
            "/api/v1/auth/tokens", json={"email": email, "password": password, "name": "x"}
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_credentials"
        assert response.json()["error"]["message"] == "The email or password is not correct."
    with db.transaction(write=False) as session:
        assert session.scalars(select(ApiToken)).all() == []


def test_bad_token_name_changes_nothing(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        make_user(session, email="zhao.lei@example.org")
    response = client.post(
        "/api/v1/auth/tokens",
        json={"email": "zhao.lei@example.org", "password": PASSWORD, "name": "   "},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_token_name"
    with db.transaction(write=False) as session:
        assert session.scalars(select(ApiToken)).all() == []


def test_me_needs_authentication(client: TestClient) -> None:
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    bogus = client.get("/api/v1/me", headers={"Authorization": "Bearer sj_nope"})
    assert bogus.status_code == 401
    assert bogus.json()["error"]["code"] == "invalid_token"


def test_sign_up_through_the_api(client: TestClient, db: Database) -> None:
    response = client.post(
        "/api/v1/users",
        json={"email": "Chen.Jing@Example.org", "password": PASSWORD, "display_name": "陈静",
              "role": "enterprise_staff", "province": "广东"},
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"email": "chen.jing@example.org", "status": "confirmation_sent"}
    assert user_count(db) == 0
    token = confirm_path(db, "chen.jing@example.org").rsplit("/", 1)[1]
    confirmed = client.post("/api/v1/users/confirm", json={"token": token})
    assert confirmed.status_code == 201, confirmed.text
    body = confirmed.json()
    assert body["email"] == "chen.jing@example.org"
    assert body["role"] == "enterprise_staff"
    assert body["province"] == "广东"
    assert "password" not in body and "password_hash" not in body
    again = client.post("/api/v1/users/confirm", json={"token": token})
    assert again.status_code == 404 and again.json()["error"]["code"] == "signup_link_invalid"
    api_token = _token(client, "chen.jing@example.org")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {api_token}"}).json()[
        "display_name"] == "陈静"


def test_api_sign_up_answers_the_same_for_a_registered_email(
    client: TestClient, db: Database
) -> None:
    with db.transaction() as session:
        make_user(session, email="taken@example.org")
    answers = []
    for email in ("taken@example.org", "new@example.org"):
        response = client.post("/api/v1/users", json={
            "email": email, "password": PASSWORD, "display_name": "新用户"})
        answers.append((response.status_code, response.json() | {"email": "X"}))
    assert answers[0] == answers[1] == (202, {"email": "X", "status": "confirmation_sent"})
    assert [m.kind for m in outbox(db)] == ["accounts.signup.already_registered",
                                            "accounts.signup.confirm"]
    assert user_count(db) == 1


def test_api_sign_up_refuses_privileged_roles(client: TestClient, db: Database) -> None:
    for role in ("reviewer", "admin"):
        response = client.post(
            "/api/v1/users",
            json={"email": "x@example.org", "password": PASSWORD, "display_name": "某人",
                  "role": role},
        )
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "role"
    assert user_count(db) == 0


def test_api_sign_up_errors(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        make_user(session, email="taken@example.org")
    cases = [
        ({"email": "bad"}, 422, "invalid_email"),
        ({"password": "1234567"}, 422, "weak_password"),
        ({"password": "iloveyou1"}, 422, "common_password"),
        ({"password": "new@example.org"}, 422, "password_like_account"),
        ({"province": "火星"}, 422, "invalid_province"),
        ({"password": "x" * 300}, 422, "validation_error"),
    ]
    for override, status, code in cases:
        body = {"email": "new@example.org", "password": PASSWORD, "display_name": "新用户",
                **override}
        response = client.post("/api/v1/users", json=body)
        assert response.status_code == status, (override, response.text)
        assert response.json()["error"]["code"] == code
    assert user_count(db) == 1


def test_notifications_api(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        user = make_user(session, email="zhao.lei@example.org")
        other = make_user(session)
        accounts.do_notify(session=session, user_ids=[user.id], kind="projects.pause",
                           title="The platform paused the project “%(project)s” that you support.",
                           body="Reason: %(reason)s",
                           params={"project": "乡村图书角", "reason": "核查票据"})
        accounts.do_notify(session=session, user_ids=[other.id], kind="x", title="Other")
    auth = {"Authorization": f"Bearer {_token(client, 'zhao.lei@example.org')}"}
    # English with the values filled in, like every API message, whatever the client asks.
    client.cookies.set("sj_lang", "zh_CN")
    page = client.get("/api/v1/me/notifications",
                      headers={**auth, "Accept-Language": "zh-CN"}).json()
    assert page["unread"] == 1
    assert [(n["title"], n["body"]) for n in page["items"]] == [
        ("The platform paused the project “乡村图书角” that you support.", "Reason: 核查票据")]
    assert client.post("/api/v1/me/notifications/read", headers=auth).status_code == 204
    assert client.get("/api/v1/me/notifications", headers=auth).json()["unread"] == 0


def test_cookie_authenticated_api_writes_need_csrf(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        user = make_user(session, email="zhao.lei@example.org", role=Role.DONOR)
        token, _ = accounts.do_create_api_token(session=session, user=user, name="t")
        token_id = token.id
    from tests.accounts.helpers import login

    login(client, "zhao.lei@example.org")
    response = client.delete(f"/api/v1/me/tokens/{token_id}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    with db.transaction(write=False) as session:
        assert session.get(ApiToken, token_id).revoked_at is None  # type: ignore[union-attr]
        assert session.scalars(select(User)).one().email == "zhao.lei@example.org"


def test_openapi_documents_the_accounts_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/auth/tokens", "/api/v1/me", "/api/v1/me/notifications",
                 "/api/v1/users"):
        assert path in paths


def test_revoking_another_users_token_is_not_found(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        other = make_user(session)
        theirs = accounts.do_create_api_token(session=session, user=other, name="他的")[0].id
        make_user(session, email="zhao.lei@example.org")
    auth = {"Authorization": f"Bearer {_token(client, 'zhao.lei@example.org')}"}
    response = client.delete(f"/api/v1/me/tokens/{theirs}", headers=auth)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "token_not_found"
    with db.transaction(write=False) as session:
        assert session.get(ApiToken, theirs).revoked_at is None  # type: ignore[union-attr]


def test_a_token_use_is_recorded_at_most_once_a_minute(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        make_user(session, email="zhao.lei@example.org")
    auth = {"Authorization": f"Bearer {_token(client, 'zhao.lei@example.org')}"}

    def last_used() -> dt.datetime | None:
        with db.transaction(write=False) as session:
            return session.scalars(select(ApiToken.last_used_at)).one()

    assert last_used() is None
    # A read request runs in a read transaction: the use is written in one of its own.
    assert client.get("/api/v1/me", headers=auth).status_code == 200
    first = last_used()
    assert first is not None
    assert client.get("/api/v1/me/notifications", headers=auth).status_code == 200
    assert last_used() == first  # within the minute: no write
    with db.transaction() as session:
        session.execute(update(ApiToken).values(last_used_at=first - dt.timedelta(minutes=2)))
    # A write request records it in its own transaction.
    assert client.post("/api/v1/me/notifications/read", headers=auth).status_code == 204
    second = last_used()
    assert second is not None and second >= first
    tokens = client.get("/api/v1/me/tokens", headers=auth).json()
    assert tokens[0]["last_used_at"] is not None


def test_recording_a_use_is_conditional(db: Database) -> None:
    with db.transaction() as session:
        user = make_user(session)
        token, _ = accounts.do_create_api_token(session=session, user=user, name="t")
        assert accounts.do_record_api_token_use(session=session, token_id=token.id)
        assert not accounts.do_record_api_token_use(session=session, token_id=token.id)
        accounts.do_revoke_api_token(session=session, user=user, token_id=token.id)
        token.last_used_at = None
        session.flush()
        assert not accounts.do_record_api_token_use(session=session, token_id=token.id)
