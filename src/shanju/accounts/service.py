"""Accounts: sign-up, sign-in, sessions, API tokens and notifications."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session
from zxcvbn import zxcvbn

from shanju.accounts.models import ApiToken, Notification, PendingSignup, Role, User, WebSession
from shanju.core import audit, i18n, mail, regions
from shanju.core.clock import utcnow
from shanju.core.db import flush_unless_duplicate
from shanju.core.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from shanju.core.i18n import N_
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


# The password hash of an account without a password (made by signing in with a phone, or
# deleted): no argon2 hash starts with "!", so no password ever verifies against it.
NO_PASSWORD = "!"  # noqa: S105 - a marker, not a password


def unusable_password() -> str:
    """A password hash that nothing verifies against (random, so no two are equal)."""
    return NO_PASSWORD + new_token(nbytes=16)


def has_password(user: User) -> bool:
    """Whether the account can sign in with a password."""
    return not user.password_hash.startswith(NO_PASSWORD)


def normalize_email(email: str) -> str:
    """Return the email as accounts are keyed by it (trimmed, lower case)."""
    return email.strip().lower()


# A password must not be one a throttled online attack would find: fewer than a million guesses
# by zxcvbn's estimate (score 0 or 1), which knows the 30,000 passwords people choose most
# often, dictionary words and names, keyboard patterns, dates, repeats and l33t variants, and
# the words of the account itself (ADR 0018). zxcvbn looks at the first 72 characters.
MIN_PASSWORD_GUESSES = 10**6
_ZXCVBN_MAX = 72
_PLATFORM_WORDS = ("shanju", "善举", "charity", "donate", "juankuan", "gongyi")


def check_password(password: str, *, email: str, display_name: str) -> None:
    """Refuse a password that is too short, too long, too common or the account's own words."""
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
    local_part = email.partition("@")[0]
    own_words = {w.strip().casefold() for w in (email, local_part, display_name) if w.strip()}
    if password.strip().casefold() in own_words:
        raise InvalidInput(
            "The password may not be your email address or your name.",
            code="password_like_account", field="password",
        )
    estimate = zxcvbn(password[:_ZXCVBN_MAX],
                      user_inputs=[email, local_part, display_name, *_PLATFORM_WORDS])
    if float(estimate["guesses"]) < MIN_PASSWORD_GUESSES:
        raise InvalidInput(
            "This password is among the most common ones or too easy to guess. Choose a "
            "longer one, for example a few unrelated words.",
            code="common_password", field="password",
        )


def check_signup_input(*, email: str, password: str, display_name: str) -> str:
    """Validate sign-up input without looking at who exists; return the normalized email."""
    normalized = normalize_email(email)
    check_characters(normalized, field="email")
    if not EMAIL_RE.match(normalized) or len(normalized) > 254:
        raise InvalidInput("Enter a valid email address.", code="invalid_email", field="email")
    name = display_name.strip()
    check_characters(name, field="display_name")
    if not name or len(name) > 60:
        raise InvalidInput(
            "Enter a display name of at most 60 characters.", code="invalid_display_name",
            field="display_name",
        )
    check_password(password, email=normalized, display_name=name)
    return normalized


def check_signup(*, session: Session, email: str, password: str, display_name: str) -> str:
    """Validate an operator's new user (``shanju createuser``); return the normalized email.

    Unlike self-service sign-up, this says when the email already has an account: the
    operator is trusted with that.
    """
    normalized = check_signup_input(email=email, password=password, display_name=display_name)
    if session.scalar(select(User.id).where(User.email == normalized)) is not None:
        raise Conflict(
            "An account with this email already exists.", code="email_taken", field="email"
        )
    return normalized


def do_create_user(
    *,
    session: Session,
    email: str,
    password: str | None,
    display_name: str,
    role: Role = Role.DONOR,
    province: str | None = None,
    organization_id: int | None = None,
    actor_id: int | None = None,
    password_hash: str | None = None,
) -> User:
    """Create a user (input already checked by :func:`check_signup`).

    Give ``password``, or ``password_hash`` when it was hashed before (a confirmed sign-up).
    """
    if password_hash is None:
        if password is None:
            raise ValueError("do_create_user needs a password or its hash")
        password_hash = hash_password(password)
    user = User(
        email=email,
        password_hash=password_hash,
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
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    # Exactly one argon2 verification on every path (unknown email, deactivated account, wrong
    # or right password), so the answer's time does not tell them apart.
    matches = verify_password(user.password_hash if user else _dummy_hash(), password)
    if user is None or not matches or not user.is_active:
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
            last_seen_at=now,
        )
    )
    session.flush()
    return token


def do_end_session(*, session: Session, token: str) -> None:
    """End a browser's session (sign out)."""
    session.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))


@dataclass(frozen=True)
class IdleTimeouts:
    """How long a session may sit idle before it ends, by who holds it (ADR 0022).

    Staff (organizations', enterprises', reviewers, admins) hold power over other people's
    money and data: a short idle time. Donors see only their own gifts: a long one, so a
    phone stays signed in between gifts.
    """

    staff: dt.timedelta = dt.timedelta(minutes=30)
    donor: dt.timedelta = dt.timedelta(days=7)

    @classmethod
    def from_settings(cls, settings: Any) -> IdleTimeouts:
        """The timeouts of ``settings`` (``session_idle_minutes_staff`` / ``_donor``)."""
        return cls(staff=dt.timedelta(minutes=settings.session_idle_minutes_staff),
                   donor=dt.timedelta(minutes=settings.session_idle_minutes_donor))

    def for_role(self, role: Role) -> dt.timedelta:
        """The idle timeout of a user with ``role``."""
        return self.donor if role == Role.DONOR else self.staff


DEFAULT_IDLE = IdleTimeouts()
# A session's activity is recorded to the minute, so that browsing is not a write per request.
SESSION_ACTIVITY_PRECISION = dt.timedelta(minutes=1)


def session_login(
    *, session: Session, token: str, idle: IdleTimeouts = DEFAULT_IDLE
) -> tuple[User, int | None] | None:
    """Return the user of a session cookie and, if its activity is due to be recorded, the
    session's id (pass it to :func:`do_touch_session`).

    None if there is no such session, it expired (14 days after sign-in), it sat idle longer
    than ``idle`` allows for the user's role, or the user is deactivated.
    """
    row = session.execute(
        select(User, WebSession.id, WebSession.expires_at, WebSession.last_seen_at)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.token_hash == token_hash(token))
    ).first()
    if row is None:
        return None
    user, session_id, expires_at, last_seen_at = row
    now = utcnow()
    if expires_at <= now or not user.is_active or last_seen_at + idle.for_role(user.role) <= now:
        return None
    due = last_seen_at < now - SESSION_ACTIVITY_PRECISION
    return user, session_id if due else None


def user_for_session(
    *, session: Session, token: str, idle: IdleTimeouts = DEFAULT_IDLE
) -> User | None:
    """Return the user of a session cookie, if the session is still valid (see
    :func:`session_login`)."""
    found = session_login(session=session, token=token, idle=idle)
    return found[0] if found else None


def do_touch_session(*, session: Session, session_id: int) -> bool:
    """Record activity on a session: ``last_seen_at`` = now, unless set within the minute.

    A conditional UPDATE like :func:`do_record_api_token_use`; not audited. Returns whether
    it wrote.
    """
    now = utcnow()
    result = session.execute(_TOUCH_SESSION, {
        "session_id": session_id, "now_": now, "before": now - SESSION_ACTIVITY_PRECISION})
    return bool(getattr(result, "rowcount", 0))


_sessions = cast(Table, WebSession.__table__)
_TOUCH_SESSION = (  # built once, a table's statement: see _RECORD_TOKEN_USE
    update(_sessions)
    .where(_sessions.c.id == bindparam("session_id"),
           _sessions.c.last_seen_at < bindparam("before"))
    .values(last_seen_at=bindparam("now_"))
)


def do_end_all_sessions(*, session: Session, user: User, actor: User) -> int:
    """Sign ``user`` out everywhere: end every browser session of theirs; return how many.

    API tokens are not revoked: they are credentials the person made on purpose for
    programs, listed and revoked one by one on the account page (ADR 0022).
    """
    result = session.execute(
        delete(WebSession).where(WebSession.user_id == user.id)
        .execution_options(synchronize_session=False)
    )
    ended = int(getattr(result, "rowcount", 0) or 0)
    audit.record(
        session, actor_id=actor.id, action="accounts.sessions.ended_all", object_type="user",
        object_id=user.id, data={"sessions": ended},
    )
    return ended


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A browser session that still signs its user in, and the user's current role."""

    user_id: int
    role: Role
    organization_id: int | None


def signed_in_sessions(
    *, session: Session, session_ids: Collection[int], idle: IdleTimeouts = DEFAULT_IDLE
) -> dict[int, SignedIn]:
    """The browser sessions among ``session_ids`` that still sign their user in (not signed
    out, not expired, not idle longer than ``idle`` allows for the user's role, the account
    active), by id, with their user's current role.

    The summit's live rooms ask this every few seconds for every connection (in one query),
    so a signed-out or deactivated person is dropped within seconds; keep it in step with
    :func:`session_login` (what ends a session there must end it here).
    """
    if not session_ids:
        return {}
    now = utcnow()
    rows = session.execute(_SIGNED_IN, {"ids": list(session_ids), "now": now}).all()
    return {
        sid: SignedIn(uid, role, org)
        for sid, uid, role, org, last_seen_at in rows
        if last_seen_at + idle.for_role(role) > now
    }


# Built once: the live rooms run it for thousands of ids every few seconds.
_SIGNED_IN = (
    select(WebSession.id, User.id, User.role, User.organization_id, WebSession.last_seen_at)
    .join(User, User.id == WebSession.user_id)
    .where(WebSession.id.in_(bindparam("ids", expanding=True)),
           WebSession.expires_at > bindparam("now"), User.is_active.is_(True))
)


def do_touch_sessions(*, session: Session, session_ids: Collection[int]) -> int:
    """Record activity on many sessions at once (see :func:`do_touch_session`): a person
    connected to a live room is using the site. Returns how many rows were written."""
    if not session_ids:
        return 0
    now = utcnow()
    result = session.execute(
        update(WebSession)
        .where(WebSession.id.in_(list(session_ids)),
               WebSession.last_seen_at < now - SESSION_ACTIVITY_PRECISION)
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def web_session_id(*, session: Session, token: str) -> int | None:
    """The id of the browser session whose cookie holds ``token``, if there is one."""
    return session.scalar(select(WebSession.id).where(WebSession.token_hash == token_hash(token)))


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
    result = session.execute(_RECORD_TOKEN_USE, {
        "token_id": token_id, "now_": now, "before": now - TOKEN_USE_PRECISION})
    return bool(getattr(result, "rowcount", 0))


# The two conditional UPDATEs of a credential's use, built once: a table's (Core) statement,
# not the ORM's bulk update — a donor's first order of a giving day records one, and the
# ORM's costs several times more (docs/benchmarks.md, "Order path").
_tokens = cast(Table, ApiToken.__table__)
_RECORD_TOKEN_USE = (
    update(_tokens)
    .where(_tokens.c.id == bindparam("token_id"), _tokens.c.revoked_at.is_(None),
           or_(_tokens.c.last_used_at.is_(None),
               _tokens.c.last_used_at < bindparam("before")))
    .values(last_used_at=bindparam("now_"))
)


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


SIGNUP_LINK_LIFETIME = dt.timedelta(hours=24)

CONFIRM_SUBJECT = N_("Confirm your email address to finish signing up to %(platform)s")
CONFIRM_BODY = N_(
    "Hello %(name)s,\n\n"
    "To finish creating your account on %(platform)s, open this link:\n\n"
    "%(link)s\n\n"
    "The link works for 24 hours. If you did not sign up, ignore this email: no account is "
    "created without it.\n"
)
ALREADY_SUBJECT = N_("Someone tried to sign up to %(platform)s with your email address")
ALREADY_BODY = N_(
    "Hello,\n\n"
    "Someone (perhaps you) tried to create an account on %(platform)s with this email "
    "address, which already has one. To use it, sign in:\n\n"
    "%(link)s\n\n"
    "If it was not you, ignore this email: nothing was changed.\n"
)


def do_request_signup(
    *,
    session: Session,
    email: str,
    password: str,
    display_name: str,
    role: str = "donor",
    province: str | None = None,
    locale: str,
    next_path: str | None = None,
    base_url: str,
    platform_name: str,
) -> str:
    """Check self-service sign-up input and email the address; return the normalized email.

    The answer is the same whether or not the email already has an account, so sign-up
    cannot be used to find out who is registered: a new address is sent a link that creates
    the account (:func:`do_confirm_signup`), a registered one a notice that it already has an
    account. Both paths hash the password and queue one email, so they take the same time.
    """
    normalized = check_signup_input(email=email, password=password, display_name=display_name)
    chosen_role = check_self_service_role(role)
    chosen_province = check_province(province)
    password_hash = hash_password(password)
    base = base_url.rstrip("/")
    existing = session.scalar(select(User).where(User.email == normalized))
    if existing is not None:
        reader = existing.locale or locale
        params = {"platform": platform_name, "link": f"{base}/login"}
        mail.queue(session, to=normalized, kind="accounts.signup.already_registered",
                   subject=i18n.translate(reader, ALREADY_SUBJECT, params),
                   body=i18n.translate(reader, ALREADY_BODY, params))
        return normalized
    token = new_token(nbytes=32)
    now = utcnow()
    session.add(PendingSignup(
        email=normalized, display_name=display_name.strip(), password_hash=password_hash,
        role=chosen_role, province=chosen_province, locale=locale,
        next_path=safe_next_path(next_path, "") or None, token_hash=token_hash(token),
        created_at=now, expires_at=now + SIGNUP_LINK_LIFETIME,
    ))
    params = {"platform": platform_name, "name": display_name.strip(),
              "link": f"{base}/signup/confirm/{token}"}
    mail.queue(session, to=normalized, kind="accounts.signup.confirm",
               subject=i18n.translate(locale, CONFIRM_SUBJECT, params),
               body=i18n.translate(locale, CONFIRM_BODY, params))
    return normalized


def get_pending_signup(*, session: Session, token: str, lock: bool = False) -> PendingSignup:
    """Return the unconfirmed, unexpired sign-up of an emailed link, or a 404."""
    query = select(PendingSignup).where(PendingSignup.token_hash == token_hash(token))
    pending = session.scalar(query.with_for_update() if lock else query)
    if pending is None or pending.confirmed_at is not None or pending.expires_at <= utcnow():
        raise NotFound("This link is not valid or has expired. Please sign up again.",
                       code="signup_link_invalid")
    return pending


def do_confirm_signup(*, session: Session, token: str) -> tuple[User, str | None]:
    """Create the account of an emailed sign-up link; return it and where to go next."""
    pending = get_pending_signup(session=session, token=token, lock=True)
    taken = Conflict("An account with this email already exists. Please sign in.",
                     code="email_taken", field="email")
    if session.scalar(select(User.id).where(User.email == pending.email)) is not None:
        raise taken
    user = User(email=pending.email, password_hash=pending.password_hash,
                display_name=pending.display_name, role=pending.role,
                province=pending.province, locale=pending.locale)
    # Two links of the same address confirmed at once: the database decides, the other is told.
    if not flush_unless_duplicate(session, user):
        raise taken
    pending.confirmed_at = utcnow()
    audit.record(
        session, actor_id=user.id, action="accounts.user.created", object_type="user",
        object_id=user.id, data={"new": {"email": user.email, "role": user.role.value},
                                 "via": "signup"},
    )
    return user, pending.next_path


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
