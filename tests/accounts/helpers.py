"""Helpers for driving the accounts pages like a browser."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.accounts.models import User
from shanju.core.db import Database
from shanju.core.mail import OutboxMessage
from tests.factories import PASSWORD


def csrf(client: TestClient) -> str:
    """The CSRF token the browser's forms carry (fetching a page sets the cookie)."""
    if "sj_csrf" not in client.cookies:
        client.get("/login")
    return str(client.cookies["sj_csrf"])


def signup(client: TestClient, **fields: str) -> Any:
    """Post the sign-up form (valid by default); redirects are not followed."""
    data = {
        "email": "li.na@example.org",
        "display_name": "李娜",
        "password": PASSWORD,
        "province": "浙江",
        "role": "donor",
        "csrf_token": csrf(client),
    }
    data.update(fields)
    return client.post("/signup", data=data, follow_redirects=False)


def outbox(db: Database, to: str | None = None) -> list[OutboxMessage]:
    """The emails queued so far (to one address, if given), oldest first."""
    with db.transaction(write=False) as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if to is not None:
            query = query.where(OutboxMessage.to_address == to)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def confirm_path(db: Database, to: str) -> str:
    """The path of the newest sign-up link emailed to ``to``."""
    body = outbox(db, to)[-1].body
    match = re.search(r"https?://[^/\s]+(/signup/confirm/[A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


def signup_and_confirm(client: TestClient, **fields: str) -> Any:
    """Sign up through the form, open the emailed link and confirm: signed in afterwards.

    Returns the confirmation's response (a redirect, not followed).
    """
    response = signup(client, **fields)
    assert response.status_code == 200, response.text
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    path = confirm_path(db, fields.get("email", "li.na@example.org").strip().lower())
    assert client.get(path).status_code == 200
    return client.post(path, data={"csrf_token": csrf(client)}, follow_redirects=False)


def login(client: TestClient, email: str, password: str = PASSWORD,
          next: str = "") -> Any:
    """Post the sign-in form; redirects are not followed."""
    return client.post(
        "/login",
        data={"email": email, "password": password, "next": next, "csrf_token": csrf(client)},
        follow_redirects=False,
    )


def user_count(db: Database) -> int:
    with db.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(User)) or 0)


def error_code(html: str) -> str | None:
    """The ``data-code`` of the error shown on a page, if any."""
    match = re.search(r'data-code="([a-z_]+)"', html)
    return match.group(1) if match else None
