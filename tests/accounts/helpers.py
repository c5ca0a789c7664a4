"""Helpers for driving the accounts pages like a browser."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shanju.accounts.models import User
from shanju.core.db import Database
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
