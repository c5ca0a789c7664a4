"""Dependency aliases, defined once: the request's transaction and who is asking.

The request's transaction: one per request, opened before the handler and committed right
after it returns (``scope="function"``: before the response is sent, so a client never sees
success for a change that failed to commit). Safe methods get a read transaction; others a
write transaction (``BEGIN IMMEDIATE`` on SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.core.db import Database
from shanju.core.errors import NotAuthenticated, PermissionDenied
from shanju.core.security import constant_time_equal
from shanju.core.web import CSRF_COOKIE, CSRF_FIELD
from shanju.payments.providers import Providers

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "sj_session"


def get_database(request: Request) -> Database:
    """Return the application's database."""
    db: Database = request.app.state.db
    return db


def get_db(request: Request) -> Iterator[Session]:
    """Open the request's transaction; commit if the handler returns, roll back if it raises."""
    database = get_database(request)
    with database.transaction(write=request.method not in SAFE_METHODS) as session:
        yield session


DbSession = Annotated[Session, Depends(get_db, scope="function")]


def get_providers(request: Request) -> Providers:
    """Return the configured payment providers."""
    providers: Providers = request.app.state.providers
    return providers


PaymentProviders = Annotated[Providers, Depends(get_providers)]


def get_viewer(request: Request, session: DbSession) -> User | None:
    """Return who is asking: from ``Authorization: Bearer <token>`` or the session cookie."""
    from shanju.accounts import service as accounts

    user: User | None = None
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        user = accounts.user_for_api_token(session=session, token=auth[7:].strip())
        if user is None:
            raise NotAuthenticated("The API token is invalid or revoked.", code="invalid_token")
        request.state.auth = "token"
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            user = accounts.user_for_session(session=session, token=cookie)
            request.state.auth = "session"
    request.state.user = user
    return user


Viewer = Annotated[User | None, Depends(get_viewer)]


def require_user(viewer: Viewer) -> User:
    """Return the signed-in user, or a 401 asking them to sign in."""
    if viewer is None:
        raise NotAuthenticated("Please sign in first.")
    return viewer


CurrentUser = Annotated[User, Depends(require_user)]


def require_reviewer(user: CurrentUser) -> User:
    """Return a platform reviewer or admin."""
    if user.role not in (Role.REVIEWER, Role.ADMIN):
        raise PermissionDenied("Only platform reviewers may do this.", code="reviewer_only")
    return user


Reviewer = Annotated[User, Depends(require_reviewer)]


def require_org_staff(user: CurrentUser) -> User:
    """Return a staff member of an organization."""
    if user.role != Role.ORG_STAFF or user.organization_id is None:
        raise PermissionDenied(
            "Only an organization's staff may do this.", code="org_staff_only"
        )
    return user


OrgStaff = Annotated[User, Depends(require_org_staff)]


async def check_csrf(request: Request) -> None:
    """Refuse an unsafe browser request whose CSRF token does not match its cookie.

    Requests authenticated with a Bearer token carry no ambient credentials and are exempt.
    Forms send the token as the ``csrf_token`` field; htmx and fetch send ``X-CSRF-Token``.
    """
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    if request.url.path.startswith("/api/") and SESSION_COOKIE not in request.cookies:
        # An API call without a session cookie carries no ambient credentials to abuse;
        # authentication (a Bearer token) is required by the route itself.
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get("x-csrf-token", "")
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else ""
    if not cookie or not sent or not constant_time_equal(cookie, sent):
        raise PermissionDenied(
            "Your form has expired or came from another site. Please reload the page and try "
            "again.",
            code="csrf_failed",
        )


CsrfChecked = Depends(check_csrf)
