"""Accounts: sign-up, sign-in, sessions, API tokens and notifications."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import ApiToken, Notification, Role, User, WebSession
from shanju.core import audit
from shanju.core.clock import utcnow
from shanju.core.errors import Conflict, InvalidInput, NotFound
from shanju.core.security import hash_password, new_token, token_hash, verify_password

SESSION_LIFETIME = dt.timedelta(days=14)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8
SELF_SERVICE_ROLES = (Role.DONOR, Role.ORG_STAFF, Role.ENTERPRISE_STAFF)


def check_signup(*, session: Session, email: str, password: str, display_name: str) -> str:
    """Validate sign-up input; return the normalized email."""
    normalized = email.strip().lower()
    if not EMAIL_RE.match(normalized) or len(normalized) > 254:
        raise InvalidInput("Enter a valid email address.", code="invalid_email", field="email")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            "The password must have at least 8 characters.", code="weak_password",
            field="password",
        )
    name = display_name.strip()
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
    """Sign a browser out."""
    session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))


def user_for_session(*, session: Session, token: str) -> User | None:
    """The user a session cookie belongs to, if the session is still valid."""
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
    """The user's tokens, newest first."""
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
        )
    )


def user_for_api_token(*, session: Session, token: str) -> User | None:
    """The user an API token belongs to, if it exists and is not revoked."""
    row = session.execute(
        select(User, ApiToken.revoked_at)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_hash(token))
    ).first()
    if row is None or row[1] is not None or not row[0].is_active:
        return None
    return row[0]


def do_notify(
    *,
    session: Session,
    user_ids: Iterable[int],
    kind: str,
    title: str,
    body: str = "",
    link: str | None = None,
) -> int:
    """Send the same notification to several users; return how many were sent."""
    now = utcnow()
    rows = [
        Notification(user_id=uid, kind=kind, title=title, body=body, link=link, created_at=now)
        for uid in sorted(set(user_ids))
    ]
    session.add_all(rows)
    session.flush()
    return len(rows)


def list_notifications(*, session: Session, user: User, limit: int = 50) -> list[Notification]:
    """The user's notifications, newest first."""
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
