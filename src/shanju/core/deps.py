"""Dependency aliases, defined once: the request's transaction and who is asking.

The request's transaction: one per request, opened before the handler and committed right
after it returns (``scope="function"``: before the response is sent, so a client never sees
success for a change that failed to commit). Safe methods get a read transaction; others a
write transaction (``BEGIN IMMEDIATE`` on SQLite).

A handler that uses the request's transaction is a plain ``def``: FastAPI runs it in the
threadpool, where blocking database work belongs. An ``async def`` handler would run it on the
event loop, and a wait for a lock there (a row lock on PostgreSQL, the write lock on SQLite)
freezes every request — including the one holding the lock, whose commit then never runs
(docs/locking.md, "No blocking work on the event loop"). What must be awaited — the body, a
form, uploads — is read by the async dependencies below (``RawBody``, ``FormFields``,
``PostedForm``) before the handler runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

import structlog
from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import HTTPConnection

from shanju.accounts.models import Role, User
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.errors import BodyTooLarge, NotAuthenticated, PermissionDenied
from shanju.core.security import constant_time_equal
from shanju.core.web import CSRF_COOKIE, CSRF_FIELD, csrf_token
from shanju.core.web import SESSION_COOKIE as SESSION_COOKIE  # handlers set and clear it
from shanju.payments.providers import Providers

log = structlog.get_logger(__name__)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


# A provider's callback is a few KiB; nothing that reads a raw body needs more.
MAX_RAW_BODY = 64 * 1024


async def read_body(request: Request) -> bytes:
    """Read the request's raw body on the event loop (for a sync handler; see the module doc).

    At most :data:`MAX_RAW_BODY` bytes: a larger body is refused (413 ``body_too_large``)
    as soon as it is known to be larger, before the rest is read.
    """
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_RAW_BODY:
        raise BodyTooLarge("The request body is too large.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_RAW_BODY:
            raise BodyTooLarge("The request body is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


RawBody = Annotated[bytes, Depends(read_body)]


async def read_form(request: Request) -> FormData:
    """Parse the request's form (fields and uploads) on the event loop, for a sync handler."""
    return await request.form()


PostedForm = Annotated[FormData, Depends(read_form)]


async def read_form_fields(request: Request) -> dict[str, str]:
    """The request's form fields (not its files), parsed on the event loop."""
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


FormFields = Annotated[dict[str, str], Depends(read_form_fields)]


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
        found = accounts.api_token_login(session=session, token=auth[7:].strip())
        if found is None:
            raise NotAuthenticated("The API token is invalid or revoked.", code="invalid_token")
        user, due_token_id = found
        if due_token_id is not None:
            _record_token_use(request, session, due_token_id)
        request.state.auth = "token"
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            user = session_user(request, session, cookie)
            request.state.auth = "session"
    request.state.user = user
    return user


Viewer = Annotated[User | None, Depends(get_viewer)]


def session_user(request: Request, session: Session, cookie: str) -> User | None:
    """Return the user of a session cookie unless the session expired or sat idle too long;
    record its activity (at most once a minute, see accounts)."""
    from shanju.accounts import service as accounts

    settings: Settings = request.app.state.settings
    found = accounts.session_login(
        session=session, token=cookie, idle=accounts.IdleTimeouts.from_settings(settings))
    if found is None:
        return None
    user, due_session_id = found
    if due_session_id is not None:
        _record_use(request, session, "web_session", due_session_id,
                    lambda s, i: accounts.do_touch_session(session=s, session_id=i))
    return user


def _record_token_use(request: Request, session: Session, token_id: int) -> None:
    """Record that a token was used (at most once a minute per token, see accounts)."""
    from shanju.accounts import service as accounts

    _record_use(request, session, "api_token", token_id,
                lambda s, i: accounts.do_record_api_token_use(session=s, token_id=i))


def _record_use(request: Request, session: Session, what: str, row_id: int,
                write: Callable[[Session, int], object]) -> None:
    if request.method not in SAFE_METHODS:
        # Written with the request's own changes (lost with them if the request fails).
        write(session, row_id)
        return
    # A read request's transaction is rolled back, never committed: write the use in a short
    # transaction of its own. On SQLite (WAL) it runs beside the open read transaction; it
    # is best effort, so a busy database never fails the read.
    try:
        with get_database(request).transaction(write=True) as other:
            write(other, row_id)
    except (SQLAlchemyError, TimeoutError) as exc:
        log.warning(f"{what}.last_used_not_recorded", id=row_id, error=str(exc))


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


async def check_csrf(connection: HTTPConnection) -> None:
    """Refuse an unsafe browser request that does not carry its CSRF token.

    Applied to every route of the application (``create_app``). The token is the one the
    browser's pages carry (:func:`shanju.core.web.csrf_token`): with a session cookie, the
    token bound to that session (the ``sj_csrf`` cookie is not consulted, so a cookie another
    site planted, or a token from before sign-in, is worthless); without one, the
    double-submit cookie's value. Forms send it as the ``csrf_token`` field; htmx and fetch
    send ``X-CSRF-Token``.

    Exempt: safe methods, WebSockets (their handshake is a GET; the live rooms check their
    own signed token and the Origin), requests with a Bearer token (no ambient credentials),
    and API requests without a session cookie (nothing ambient to abuse; the route requires
    a Bearer token or a provider's signature itself).
    """
    if connection.scope["type"] != "http":
        return
    request = connection if isinstance(connection, Request) else Request(connection.scope)
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    has_session = SESSION_COOKIE in request.cookies
    if request.url.path.startswith("/api/") and not has_session:
        return
    expected = csrf_token(request) if has_session else request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get("x-csrf-token", "")
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else ""
    if not expected or not sent or not constant_time_equal(expected, sent):
        raise PermissionDenied(
            "Your form has expired or came from another site. Please reload the page and try "
            "again.",
            code="csrf_failed",
        )


CsrfChecked = Depends(check_csrf)
