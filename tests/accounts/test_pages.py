"""Sign-up, sign-in, sign-out and the account page, driven like a browser on both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.accounts import service as accounts
from shanju.accounts.models import ApiToken, Notification, PendingSignup, Role, User, WebSession
from shanju.core.clock import utcnow
from shanju.core.db import Database
from tests.accounts.helpers import (
    confirm_path,
    csrf,
    error_code,
    login,
    outbox,
    signup,
    signup_and_confirm,
    user_count,
)
from tests.factories import PASSWORD, make_user

ROLE_MESSAGE = "请选择您是捐赠人、公益组织工作人员还是企业员工。"
COMMON_MESSAGE = "这个密码太常见或太容易被猜到。请换一个更长的密码，例如几个不相关的词。"
LIKE_MESSAGE = "密码不能是您的邮箱地址或昵称。"


def _session_count(db: Database) -> int:
    with db.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(WebSession)) or 0)


def test_signup_emails_a_link_that_creates_the_account_and_signs_in(
    client: TestClient, db: Database
) -> None:
    response = signup(client, email="  Li.Na@Example.org ", role="org_staff")
    assert response.status_code == 200
    assert "sj_session" not in response.headers.get("set-cookie", "")
    assert "我们已向 li.na@example.org 发送了一封邮件。" in response.text
    assert user_count(db) == 0  # nothing until the address is confirmed
    [email] = outbox(db)
    assert email.kind == "accounts.signup.confirm" and email.to_address == "li.na@example.org"
    assert "确认邮箱" in email.subject and "李娜" in email.body
    assert email.sent_at is not None  # the development mailer took it after the commit
    path = confirm_path(db, "li.na@example.org")
    assert path.startswith("/signup/confirm/")
    page = client.get(path)
    assert page.status_code == 200 and "data-confirm-signup" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert user_count(db) == 0  # opening the link (as a mail scanner would) creates nothing
    response = client.post(path, data={"csrf_token": csrf(client)}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/me?flash=welcome"
    cookie = response.headers["set-cookie"]
    assert "sj_session=" in cookie
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert f"Max-Age={14 * 86400}" in cookie
    assert "Secure" not in cookie  # only in production
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    assert "li.na@example.org" in page.text
    assert "欢迎" in page.text
    with db.transaction(write=False) as session:
        user = session.scalars(select(User)).one()
        assert (user.email, user.role, user.province) == ("li.na@example.org", Role.ORG_STAFF,
                                                           "浙江")
        assert user.password_hash != PASSWORD
    # The link works once.
    again = client.post(path, data={"csrf_token": csrf(client)}, follow_redirects=False)
    assert again.status_code == 404 and error_code(again.text) == "signup_link_invalid"
    assert user_count(db) == 1


def test_signup_link_keeps_next_and_expires(client: TestClient, db: Database) -> None:
    signup(client, next="/projects/7")
    path = confirm_path(db, "li.na@example.org")
    with db.transaction() as session:
        pending = session.scalars(select(PendingSignup)).one()
        assert pending.next_path == "/projects/7"
        pending.expires_at = utcnow() - dt.timedelta(seconds=1)
    response = client.post(path, data={"csrf_token": csrf(client)}, follow_redirects=False)
    assert response.status_code == 404 and error_code(response.text) == "signup_link_invalid"
    assert client.get(path).status_code == 404
    assert client.get("/signup/confirm/not-a-token").status_code == 404
    assert user_count(db) == 0
    signup(client, next="/projects/7")
    response = client.post(confirm_path(db, "li.na@example.org"),
                           data={"csrf_token": csrf(client)}, follow_redirects=False)
    assert response.headers["location"] == "/projects/7"


def test_signup_answers_the_same_for_a_registered_email(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        make_user(session, email="zhang.wei@example.org", display_name="原用户")
    new = signup(client, email="li.na@example.org")
    taken = signup(client, email="Zhang.Wei@example.org")
    assert new.status_code == taken.status_code == 200
    assert "sj_session" not in taken.headers.get("set-cookie", "")
    # The same page but for the address it names.
    assert new.text.replace("li.na@example.org", "X").replace(csrf(client), "") == \
        taken.text.replace("zhang.wei@example.org", "X").replace(csrf(client), "")
    assert user_count(db) == 1
    [notice] = outbox(db, "zhang.wei@example.org")
    assert notice.kind == "accounts.signup.already_registered"
    assert "已有账户" in notice.body and "/signup/confirm/" not in notice.body
    assert "http://127.0.0.1:8000/login" in notice.body
    with db.transaction(write=False) as session:
        assert session.scalars(select(User.display_name)).one() == "原用户"
        assert session.scalars(select(PendingSignup.email)).all() == ["li.na@example.org"]


def test_signup_takes_as_long_for_a_registered_email(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The slow step is the password hash: both answers compute exactly one.
    calls: list[str] = []
    real = accounts.hash_password
    monkeypatch.setattr(accounts, "hash_password", lambda p: calls.append(p) or real(p))
    with db.transaction() as session:
        make_user(session, email="zhang.wei@example.org")
    signup(client, email="li.na@example.org")
    assert len(calls) == 1
    signup(client, email="zhang.wei@example.org")
    assert len(calls) == 2


def test_two_links_for_one_address_create_one_account(client: TestClient, db: Database) -> None:
    signup(client, display_name="第一")
    first = confirm_path(db, "li.na@example.org")
    signup(client, display_name="第二")
    second = confirm_path(db, "li.na@example.org")
    assert first != second
    assert client.post(second, data={"csrf_token": csrf(client)},
                       follow_redirects=False).status_code == 303
    response = client.post(first, data={"csrf_token": csrf(client)}, follow_redirects=False)
    assert response.status_code == 409 and error_code(response.text) == "email_taken"
    with db.transaction(write=False) as session:
        assert session.scalars(select(User.display_name)).all() == ["第二"]


def test_session_cookie_is_secure_in_production(client: TestClient, app) -> None:  # type: ignore[no-untyped-def]
    app.state.settings = app.state.settings.model_copy(update={"environment": "production"})
    response = signup_and_confirm(client)
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


def test_signup_without_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, db: Database
) -> None:
    csrf(client)
    response = client.post(
        "/signup",
        data={"email": "a@example.org", "display_name": "王芳", "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert error_code(response.text) == "csrf_failed"
    assert user_count(db) == 0


def test_signup_with_a_wrong_csrf_token_is_refused(client: TestClient, db: Database) -> None:
    response = signup(client, csrf_token="forged")
    assert response.status_code == 403
    assert error_code(response.text) == "csrf_failed"
    assert user_count(db) == 0


@pytest.mark.parametrize(
    ("fields", "status", "code", "message"),
    [
        ({"email": "not-an-email"}, 422, "invalid_email", "请输入有效的电子邮箱地址。"),
        ({"password": "short"}, 422, "weak_password", "密码至少需要 8 个字符。"),
        ({"password": "password123"}, 422, "common_password", COMMON_MESSAGE),
        ({"password": "P@ssw0rd!"}, 422, "common_password", COMMON_MESSAGE),
        ({"password": "qwertyuiop"}, 422, "common_password", COMMON_MESSAGE),
        ({"password": "88888888"}, 422, "common_password", COMMON_MESSAGE),
        ({"password": "li.na@example.org"}, 422, "password_like_account", LIKE_MESSAGE),
        ({"password": " LI.NA@EXAMPLE.ORG"}, 422, "password_like_account", LIKE_MESSAGE),
        ({"display_name": "Wang Fang Fang", "password": "wang fang fang"}, 422,
         "password_like_account", LIKE_MESSAGE),
        ({"display_name": "  "}, 422, "invalid_display_name", "请输入不超过 60 个字符的昵称。"),
        ({"province": "火星"}, 422, "invalid_province", "请从列表中选择省份。"),
        ({"role": "reviewer"}, 422, "invalid_role", ROLE_MESSAGE),
        ({"role": "admin"}, 422, "invalid_role", ROLE_MESSAGE),
    ],
)
def test_bad_signup_input_is_explained_and_changes_nothing(
    client: TestClient, db: Database, fields: dict[str, str], status: int, code: str,
    message: str,
) -> None:
    response = signup(client, **fields)
    assert response.status_code == status
    assert message in response.text
    assert "sj_session" not in response.headers.get("set-cookie", "")
    assert user_count(db) == 0
    # The input is kept (except the password, which is never echoed back).
    assert 'value="李娜"' in response.text or "display_name" in fields
    assert PASSWORD not in response.text
    assert error_code(response.text) == code
    assert outbox(db) == []


def test_signup_errors_in_english(client: TestClient) -> None:
    client.get("/login?lang=en")
    response = signup(client, password="short")
    assert "The password must have at least 8 characters." in response.text


def test_login_and_logout(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        make_user(session, email="zhang.wei@example.org", display_name="张伟")
    response = login(client, "Zhang.Wei@example.org")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert client.get("/me").status_code == 200
    assert _session_count(db) == 1

    # Signing out needs the CSRF token too: without it nothing happens.
    refused = client.post("/logout", follow_redirects=False)
    assert refused.status_code == 403
    assert error_code(refused.text) == "csrf_failed"
    assert _session_count(db) == 1

    response = client.post("/logout", data={"csrf_token": csrf(client)}, follow_redirects=False)
    assert response.status_code == 303
    assert 'sj_session=""' in response.headers["set-cookie"]
    assert _session_count(db) == 0
    me = client.get("/me", follow_redirects=False)
    assert me.status_code == 303
    assert me.headers["location"] == "/login?next=/me"


def test_wrong_password_and_unknown_email_give_the_same_message(
    client: TestClient, db: Database
) -> None:
    with db.transaction() as session:
        make_user(session, email="zhang.wei@example.org")
    wrong = login(client, "zhang.wei@example.org", password="not the password")
    unknown = login(client, "nobody@example.org")
    for response in (wrong, unknown):
        assert response.status_code == 422
        assert "邮箱或密码不正确。" in response.text
        assert error_code(response.text) == "invalid_credentials"
        assert "sj_session" not in response.headers.get("set-cookie", "")
    assert 'value="nobody@example.org"' in unknown.text
    assert _session_count(db) == 0


def test_login_without_csrf_token_is_refused(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        make_user(session, email="zhang.wei@example.org")
    csrf(client)
    response = client.post(
        "/login", data={"email": "zhang.wei@example.org", "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert error_code(response.text) == "csrf_failed"
    assert _session_count(db) == 0


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/projects/3?tab=updates", "/projects/3?tab=updates"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("/\tevil", "/"),
        ("javascript:alert(1)", "/"),
        ("projects", "/"),
        ("", "/"),
    ],
)
def test_next_is_honoured_only_for_same_site_paths(
    client: TestClient, db: Database, next_url: str, expected: str
) -> None:
    with db.transaction() as session:
        make_user(session, email="zhang.wei@example.org")
    response = login(client, "zhang.wei@example.org", next=next_url)
    assert response.status_code == 303
    assert response.headers["location"] == expected


@pytest.mark.parametrize(
    "value",
    ["//evil.example", "https://evil.example", "/\\evil", "/ok\nLocation: x", "http:/x", ""],
)
def test_safe_next_path_refuses_other_sites(value: str) -> None:
    assert accounts.safe_next_path(value, "/fallback") == "/fallback"


def test_login_page_carries_next_and_redirects_signed_in_users(
    client: TestClient, db: Database
) -> None:
    page = client.get("/login?next=/me")
    assert 'name="next" value="/me"' in page.text
    assert 'name="csrf_token"' in page.text
    with db.transaction() as session:
        make_user(session, email="zhang.wei@example.org")
    login(client, "zhang.wei@example.org")
    again = client.get("/login?next=//evil.example", follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"] == "/"


def test_signup_page_lists_only_self_service_roles(client: TestClient) -> None:
    page = client.get("/signup")
    assert page.status_code == 200
    assert 'value="donor"' in page.text
    assert 'value="org_staff"' in page.text
    assert 'value="enterprise_staff"' in page.text
    assert 'value="reviewer"' not in page.text
    assert 'value="admin"' not in page.text
    assert 'name="csrf_token"' in page.text


def test_api_tokens_on_the_account_page(client: TestClient, db: Database) -> None:
    signup_and_confirm(client)
    created = client.post("/me/tokens", data={"name": "报表脚本", "csrf_token": csrf(client)})
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    start = created.text.index("data-token>") + len("data-token>")
    plain = created.text[start:created.text.index("<", start)]
    assert plain.startswith("sj_")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {plain}"}).status_code == 200
    # Shown once: the account page never shows it again.
    assert plain not in client.get("/me").text

    with db.transaction(write=False) as session:
        token_id = session.scalars(select(ApiToken.id)).one()
    revoked = client.post(f"/me/tokens/{token_id}/revoke", data={"csrf_token": csrf(client)},
                          follow_redirects=False)
    assert revoked.status_code == 303
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {plain}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


def test_token_with_a_bad_name_is_explained(client: TestClient, db: Database) -> None:
    signup_and_confirm(client)
    response = client.post("/me/tokens", data={"name": "x" * 61, "csrf_token": csrf(client)})
    assert response.status_code == 422
    assert "请为令牌起一个不超过 60 个字符的名称。" in response.text
    with db.transaction(write=False) as session:
        assert session.scalars(select(ApiToken)).all() == []


def test_revoking_another_users_token_is_not_found(client: TestClient, db: Database) -> None:
    with db.transaction() as session:
        other = make_user(session)
        token_id = accounts.do_create_api_token(session=session, user=other, name="他的")[0].id
    signup_and_confirm(client)
    response = client.post(f"/me/tokens/{token_id}/revoke", data={"csrf_token": csrf(client)})
    assert response.status_code == 404
    with db.transaction(write=False) as session:
        assert session.get(ApiToken, token_id).revoked_at is None  # type: ignore[union-attr]


def test_notifications_are_listed_and_marked_read(client: TestClient, db: Database) -> None:
    signup_and_confirm(client)
    with db.transaction() as session:
        uid = session.scalars(select(User.id)).one()
        accounts.do_notify(session=session, user_ids=[uid], kind="projects.pause",
                           title="The platform paused the project “%(project)s” that you support.",
                           body="Reason: %(reason)s",
                           params={"project": "乡村图书角", "reason": "平台正在核查。"},
                           link="/projects/1")
        accounts.do_notify(session=session, user_ids=[uid], kind="projects.approve",
                           title="Your project “%(project)s” was approved.",
                           params={"project": "山区孩子营养午餐"}, link="https://evil.example/")
    page = client.get("/me")
    assert "您支持的项目「乡村图书角」已被平台暂停。" in page.text
    assert "原因：平台正在核查。" in page.text
    english = client.get("/me?lang=en").text
    assert "The platform paused the project “乡村图书角” that you support." in english
    assert "Reason: 平台正在核查。" in english
    client.get("/me?lang=zh_CN")
    assert 'data-unread="2"' in page.text
    assert 'href="/projects/1"' in page.text
    assert "evil.example" not in page.text  # links go to this site only
    with db.transaction(write=False) as session:
        first = session.scalars(select(Notification.id).order_by(Notification.id)).first()
    response = client.post(f"/me/notifications/{first}/read", data={"csrf_token": csrf(client)},
                           follow_redirects=False)
    assert response.status_code == 303
    assert 'data-unread="1"' in client.get("/me").text
    client.post("/me/notifications/read", data={"csrf_token": csrf(client)})
    assert "data-unread" not in client.get("/me").text


def test_account_actions_need_sign_in(client: TestClient) -> None:
    response = client.post("/me/tokens", data={"name": "x", "csrf_token": csrf(client)})
    assert response.status_code == 401
    assert error_code(response.text) == "not_authenticated"


def test_sign_in_from_a_donate_page_says_why(client: TestClient) -> None:
    reason = "登录或注册后即可为这个项目捐款。"
    for page in ("/login", "/signup"):
        html = client.get(page, params={"next": "/projects/7/donate?amount=50"}).text
        assert reason in html and 'data-reason="donate"' in html
        # Other pages to come back to need no reason.
        for other in ("", "/me", "/projects/7", "/projects/7/donate/x"):
            assert reason not in client.get(page, params={"next": other}).text
