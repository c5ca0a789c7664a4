"""Accounts: sign-up, sign-in, sessions, API tokens and notifications."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import ApiToken, Notification, Role, User, WebSession
from shanju.core import audit, i18n, regions
from shanju.core.clock import utcnow
from shanju.core.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from shanju.core.security import hash_password, new_token, token_hash, verify_password
from shanju.core.text import check_characters

SESSION_LIFETIME = dt.timedelta(days=14)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256
SELF_SERVICE_ROLES = (Role.DONOR, Role.ORG_STAFF, Role.ENTERPRISE_STAFF)
# Verifying against a real hash when the email is unknown keeps the answer time the same, so
# the time a failed sign-in takes does not reveal whether an account exists.
@functools.cache
def _dummy_hash() -> str:
    # Hashed on first use, not at import: argon2 is deliberately slow (~0.2 s).
    return hash_password("not a real password, only for timing")


def check_signup(*, session: Session, email: str, password: str, display_name: str) -> str:
    """Validate sign-up input; return the normalized email."""
    normalized = email.strip().lower()
    check_characters(normalized, field="email")
    if not EMAIL_RE.match(normalized) or len(normalized) > 254:
        raise InvalidInput("Enter a valid email address.", code="invalid_email", field="email")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            "The password must have at least 8 characters.", code="weak_password",
            field="password",
        )
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(
            "The password can have at most 256 characters.", code="password_too_long",
            field="password",
        )
    name = display_name.strip()
    check_characters(name, field="display_name")
    if not name or len(name) > 60:
        raise InvalidInput(
            "Enter a display name of at most 60 characters.", code="invalid_display_name",
            field="display_name",
        )
    if session.scalar(select(User.id).where(User.email == normalized)) is not None:
        raise Conflict(
            "An account with this email already exists.", code="email_taken", field="email"
        )
    return normalized


def do_create_user(
    *,
    session: Session,
    email: str,
    password: str,
    display_name: str,
    role: Role = Role.DONOR,
    province: str | None = None,
    organization_id: int | None = None,
    actor_id: int | None = None,
) -> User:
    """Create a user (input already checked by :func:`check_signup`)."""
    user = User(
        email=email,
        password_hash=hash_password(password),
        display_name=display_name.strip(),
        role=role,
        province=province or None,
        organization_id=organization_id,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor_id=actor_id or user.id,
        action="accounts.user.created",
        object_type="user",
        object_id=user.id,
        data={"new": {"email": email, "role": role.value}},
    )
    return user


def authenticate(*, session: Session, email: str, password: str) -> User:
    """Return the user with these credentials, or raise one message for every failure."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        verify_password(_dummy_hash(), password)
    if user is None or not user.is_active or not verify_password(user.password_hash, password):
        raise InvalidInput(
            "The email or password is not correct.", code="invalid_credentials", field="email"
        )
    return user


def do_start_session(*, session: Session, user: User) -> str:
    """Create a browser session and return the token for its cookie."""
    token = new_token(nbytes=32)
    now = utcnow()
    session.add(
        WebSession(
            token_hash=token_hash(token),
            user_id=user.id,
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    session.flush()
    return token


def do_end_session(*, session: Session, token: str) -> None:
    """End a browser's session (sign out)."""
    session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))


def user_for_session(*, session: Session, token: str) -> User | None:
    """Return the user of a session cookie, if the session is still valid."""
    row = session.execute(
        select(User, WebSession.expires_at)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.token_hash == token_hash(token))
    ).first()
    if row is None:
        return None
    user, expires_at = row
    if expires_at <= utcnow() or not user.is_active:
        return None
    return user


def do_create_api_token(*, session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """Create a personal API token; the plain token is returned once and never stored."""
    clean = name.strip()
    check_characters(clean, field="name")
    if not clean or len(clean) > 60:
        raise InvalidInput(
            "Give the token a name of at most 60 characters.", code="invalid_token_name",
            field="name",
        )
    plain = new_token("sj_", 32)
    token = ApiToken(user_id=user.id, name=clean, prefix=plain[:8], token_hash=token_hash(plain))
    session.add(token)
    session.flush()
    audit.record(
        session, actor_id=user.id, action="accounts.api_token.created", object_type="api_token",
        object_id=token.id, data={"new": {"name": clean, "prefix": token.prefix}},
    )
    return token, plain


def do_revoke_api_token(*, session: Session, user: User, token_id: int) -> None:
    """Revoke one of the user's own tokens."""
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound("No such API token.", code="token_not_found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(
            session, actor_id=user.id, action="accounts.api_token.revoked",
            object_type="api_token", object_id=token.id,
        )


def list_api_tokens(*, session: Session, user: User) -> list[ApiToken]:
    """Return the user's tokens, newest first."""
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
        )
    )


# A token's last use is recorded to the minute, so that reading with it is not a write each time.
TOKEN_USE_PRECISION = dt.timedelta(minutes=1)


def api_token_login(*, session: Session, token: str) -> tuple[User, int | None] | None:
    """Return the user of an API token and, if its last use is due to be recorded, its id.

    None if the token does not exist, is revoked or its user is deactivated. The id is given
    when ``last_used_at`` is empty or older than :data:`TOKEN_USE_PRECISION`: pass it to
    :func:`do_record_api_token_use`.
    """
    row = session.execute(
        select(User, ApiToken.revoked_at, ApiToken.id, ApiToken.last_used_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_hash(token))
    ).first()
    if row is None or row[1] is not None or not row[0].is_active:
        return None
    user, _, token_id, last_used_at = row
    due = last_used_at is None or last_used_at < utcnow() - TOKEN_USE_PRECISION
    return user, token_id if due else None


def user_for_api_token(*, session: Session, token: str) -> User | None:
    """Return the user of an API token, if it exists and is not revoked."""
    found = api_token_login(session=session, token=token)
    return found[0] if found else None


def do_record_api_token_use(*, session: Session, token_id: int) -> bool:
    """Set the token's ``last_used_at`` to now unless it was set within the last minute.

    A conditional UPDATE: of concurrent requests with the same token, one writes. Not
    audited (a use is not a change of state anyone decides). Returns whether it wrote.
    """
    now = utcnow()
    result = session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at < now - TOKEN_USE_PRECISION),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def do_notify(
    *,
    session: Session,
    user_ids: Iterable[int],
    kind: str,
    title: str,
    body: str = "",
    params: dict[str, Any] | None = None,
    link: str | None = None,
) -> int:
    """Send the same notification to several users; return how many were sent.

    ``title`` and ``body`` are English msgids marked with ``N_`` (never finished text), and
    ``params`` fill their ``%(name)s`` placeholders when shown, in the reader's language:
    free text (a project's title, a reviewer's reason) is shown as typed, labels passed as
    ``i18n.Msg(label)`` are translated.
    """
    now = utcnow()
    stored = i18n.dump_params(params)
    rows = [
        Notification(user_id=uid, kind=kind, title=title, body=body, params=stored, link=link,
                     created_at=now)
        for uid in sorted(set(user_ids))
    ]
    session.add_all(rows)
    session.flush()
    return len(rows)


@dataclass(frozen=True)
class RenderedNotification:
    """A notification with its title and body in one language, ready to show."""

    id: int
    kind: str
    title: str
    body: str
    link: str | None
    created_at: dt.datetime
    read_at: dt.datetime | None


def _render_text(locale: str, msgid: str, params: dict[str, Any]) -> str:
    if not msgid:
        return ""
    try:
        return i18n.translate(locale, msgid, params)
    except (KeyError, ValueError, TypeError):
        # A translation whose placeholders do not match (``check`` prevents it): show the
        # English rather than fail the whole page.
        try:
            return msgid % params if params else msgid
        except (KeyError, ValueError, TypeError):
            return msgid


def render_notifications(
    notifications: Iterable[Notification], *, locale: str
) -> list[RenderedNotification]:
    """Return ``notifications`` translated into ``locale`` with their values filled in."""
    result = []
    for n in notifications:
        params = i18n.load_params(n.params)
        result.append(RenderedNotification(
            id=n.id, kind=n.kind, title=_render_text(locale, n.title, params),
            body=_render_text(locale, n.body, params), link=n.link, created_at=n.created_at,
            read_at=n.read_at,
        ))
    return result


def list_notifications(*, session: Session, user: User, limit: int = 50) -> list[Notification]:
    """Return the user's notifications, newest first."""
    return list(
        session.scalars(
            select(Notification)
            .where(Notification.user_id == user.id)
            .order_by(Notification.id.desc())
            .limit(limit)
        )
    )


def do_mark_notifications_read(*, session: Session, user: User) -> None:
    """Mark all of the user's notifications read."""
    session.execute(
        update(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )


def check_self_service_role(value: str) -> Role:
    """Return the role chosen at sign-up; reviewers and admins are never self-service."""
    clean = value.strip() or Role.DONOR.value
    for role in SELF_SERVICE_ROLES:
        if role.value == clean:
            return role
    raise InvalidInput(
        "Choose whether you are a donor or staff of a charity or an enterprise.",
        code="invalid_role", field="role",
    )


def check_province(value: str | None) -> str | None:
    """Return a province from :data:`PROVINCES`, or None when none is chosen."""
    return regions.check_province(value)


def do_signup(
    *,
    session: Session,
    email: str,
    password: str,
    display_name: str,
    role: str = "donor",
    province: str | None = None,
    locale: str | None = None,
) -> User:
    """Check self-service sign-up input and create the account (pages and API share this)."""
    normalized = check_signup(
        session=session, email=email, password=password, display_name=display_name
    )
    chosen_role = check_self_service_role(role)
    chosen_province = check_province(province)
    user = do_create_user(
        session=session, email=normalized, password=password, display_name=display_name,
        role=chosen_role, province=chosen_province,
    )
    user.locale = locale
    return user


def authenticate_api(*, session: Session, email: str, password: str) -> User:
    """Like :func:`authenticate`, but failing as a 401 (the API's answer to bad credentials)."""
    try:
        return authenticate(session=session, email=email, password=password)
    except InvalidInput as exc:
        raise NotAuthenticated(exc.message, code="invalid_credentials") from None


def safe_next_path(value: str | None, default: str = "/") -> str:
    """Return ``value`` if it is a same-site relative path, else ``default`` (no open redirect).

    Browsers treat ``//host`` and ``/\\host`` as another site, and strip tabs and newlines
    before resolving, so all of those are refused.
    """
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if any(ch == "\\" or ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def count_unread_notifications(*, session: Session, user: User) -> int:
    """Count how many of the user's notifications are unread."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        )
        or 0
    )


def do_mark_notification_read(*, session: Session, user: User, notification_id: int) -> None:
    """Mark one of the user's own notifications read."""
    notification = session.get(Notification, notification_id)
    if notification is None or notification.user_id != user.id:
        raise NotFound("No such notification.", code="notification_not_found")
    if notification.read_at is None:
        notification.read_at = utcnow()
