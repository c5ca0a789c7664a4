"""What an account holder does with emailed links: reset a forgotten password, change the
email address; and the profile's name.

Every link carries a random 256-bit token; the tables keep only its SHA-256. Asking for a
link answers the same whatever the address (no account discovery, as sign-up: ADR 0018):
an address with an account gets the link, one without gets a notice saying so, and both paths
queue one email. ``now`` is the caller's clock (the app's ``state.clock``), so a test moves
time instead of waiting for a link to expire. Services flush; the request commits.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shanju.accounts.models import EmailChange, PasswordReset, User
from shanju.accounts.service import (
    EMAIL_RE,
    check_password,
    do_end_all_sessions,
    has_password,
    normalize_email,
)
from shanju.core import audit, i18n, mail
from shanju.core.errors import Conflict, InvalidInput, NotFound
from shanju.core.i18n import N_
from shanju.core.security import hash_password, new_token, token_hash, verify_password
from shanju.core.text import check_characters

RESET_LIFETIME = dt.timedelta(hours=1)
EMAIL_CHANGE_LIFETIME = dt.timedelta(hours=24)
MAX_DISPLAY_NAME = 60

RESET_SUBJECT = N_("Reset your password on %(platform)s")
RESET_BODY = N_(
    "Hello %(name)s,\n\n"
    "Someone (we hope you) asked to reset the password of your account on %(platform)s. To "
    "choose a new password, open this link:\n\n"
    "%(link)s\n\n"
    "The link works once, for 1 hour. Setting a new password signs your account out on every "
    "device.\n\n"
    "If you did not ask for this, ignore this email: your password stays as it is.\n"
)
NO_ACCOUNT_SUBJECT = N_("Password reset on %(platform)s")
NO_ACCOUNT_BODY = N_(
    "Hello,\n\n"
    "Someone (perhaps you) asked to reset the password of an account on %(platform)s with "
    "this email address, but no account that can sign in uses it. Perhaps you signed up with "
    "another address, or with your phone number. You can also create an account:\n\n"
    "%(link)s\n\n"
    "If it was not you, ignore this email: nothing was changed.\n"
)
CHANGED_SUBJECT = N_("Your password on %(platform)s was changed")
CHANGED_BODY = N_(
    "Hello %(name)s,\n\n"
    "The password of your account on %(platform)s was just changed with a reset link, and "
    "your account was signed out on every device.\n\n"
    "If it was not you, reset your password again at once and check the API tokens on your "
    "account page:\n\n"
    "%(link)s\n"
)
EMAIL_CONFIRM_SUBJECT = N_("Confirm your new email address on %(platform)s")
EMAIL_CONFIRM_BODY = N_(
    "Hello %(name)s,\n\n"
    "To use this address for your account on %(platform)s, open this link:\n\n"
    "%(link)s\n\n"
    "The link works for 24 hours. If you did not ask for this, ignore this email: nothing "
    "changes without it.\n"
)
EMAIL_TAKEN_SUBJECT = N_("Someone tried to use your email address on %(platform)s")
EMAIL_TAKEN_BODY = N_(
    "Hello,\n\n"
    "Someone (perhaps you) asked to move another account on %(platform)s to this email "
    "address, which already has an account. Nothing was changed. To use your account, sign "
    "in:\n\n"
    "%(link)s\n"
)
EMAIL_NOTICE_SUBJECT = N_("A change of your email address on %(platform)s was asked for")
EMAIL_NOTICE_BODY = N_(
    "Hello %(name)s,\n\n"
    "Someone signed in to your account on %(platform)s asked to change its email address "
    "to %(new)s. It changes only when the link sent to that address is opened.\n\n"
    "If it was not you, change your password at once:\n\n"
    "%(link)s\n"
)


def check_email(value: str, *, field: str = "email") -> str:
    """Return a well-formed email address, normalized, or raise ``invalid_email``."""
    normalized = normalize_email(value)
    check_characters(normalized, field=field)
    if not EMAIL_RE.match(normalized) or len(normalized) > 254:
        raise InvalidInput("Enter a valid email address.", code="invalid_email", field=field)
    return normalized


def _send(session: Session, *, to: str, kind: str, locale: str, subject: str, body: str,
          params: dict[str, str]) -> None:
    mail.queue(session, to=to, kind=kind, subject=i18n.translate(locale, subject, params),
               body=i18n.translate(locale, body, params))


# --- password reset ---------------------------------------------------------------------------


def do_request_password_reset(*, session: Session, email: str, locale: str, base_url: str,
                              platform_name: str, now: dt.datetime) -> str:
    """Email a reset link to the account of ``email``, or a notice if it has none; return the
    normalized address. The answer (and the work: one email) is the same either way."""
    normalized = check_email(email)
    base = base_url.rstrip("/")
    user = session.scalar(select(User).where(User.email == normalized))
    if user is None or not user.is_active:
        _send(session, to=normalized, kind="accounts.password.no_account", locale=locale,
              subject=NO_ACCOUNT_SUBJECT, body=NO_ACCOUNT_BODY,
              params={"platform": platform_name, "link": f"{base}/signup"})
        return normalized
    token = new_token(nbytes=32)
    session.add(PasswordReset(user_id=user.id, token_hash=token_hash(token), created_at=now,
                              expires_at=now + RESET_LIFETIME))
    _send(session, to=normalized, kind="accounts.password.reset", locale=user.locale or locale,
          subject=RESET_SUBJECT, body=RESET_BODY,
          params={"platform": platform_name, "name": user.display_name,
                  "link": f"{base}/password/reset/{token}"})
    return normalized


def get_password_reset(*, session: Session, token: str, now: dt.datetime,
                       lock: bool = False) -> tuple[PasswordReset, User]:
    """The unused, unexpired reset of an emailed link and its account, or a 404."""
    query = select(PasswordReset).where(PasswordReset.token_hash == token_hash(token))
    reset = session.scalar(query.with_for_update() if lock else query)
    user = session.get(User, reset.user_id) if reset is not None else None
    if (reset is None or user is None or reset.used_at is not None
            or reset.expires_at <= now or not user.is_active):
        raise NotFound("This link is not valid or has expired. Ask for a new one.",
                       code="reset_link_invalid")
    return reset, user


def do_reset_password(*, session: Session, token: str, password: str, locale: str,
                      base_url: str, platform_name: str, now: dt.datetime) -> User:
    """Set a new password with an emailed link: the link (and every other reset link of the
    account) is spent, every session of the account ends, and the account is told."""
    reset, user = get_password_reset(session=session, token=token, now=now, lock=True)
    check_password(password, email=user.email or "", display_name=user.display_name)
    user.password_hash = hash_password(password)
    session.execute(update(PasswordReset)
                    .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
                    .values(used_at=now).execution_options(synchronize_session=False))
    reset.used_at = now
    ended = do_end_all_sessions(session=session, user=user, actor=user)
    audit.record(session, actor_id=user.id, action="accounts.password.reset", object_type="user",
                 object_id=user.id, data={"sessions_ended": ended})
    if user.email:
        _send(session, to=user.email, kind="accounts.password.changed",
              locale=user.locale or locale, subject=CHANGED_SUBJECT, body=CHANGED_BODY,
              params={"platform": platform_name, "name": user.display_name,
                      "link": f"{base_url.rstrip('/')}/password/forgot"})
    return user


# --- email change -----------------------------------------------------------------------------


def do_request_email_change(*, session: Session, user: User, new_email: str, password: str,
                            locale: str, base_url: str, platform_name: str,
                            now: dt.datetime) -> str:
    """Email a confirmation link to ``new_email`` (a notice instead if it has an account: the
    same answer) and tell the current address; return the normalized new address.

    An account with a password must give it (a session left open is not enough to take the
    account's address); an account made with a phone has none and is trusted on its session.
    """
    normalized = check_email(new_email, field="new_email")
    if has_password(user) and not verify_password(user.password_hash, password):
        raise InvalidInput("The password is not correct.", code="invalid_password",
                           field="password")
    if normalized == user.email:
        raise InvalidInput("This is already your email address.", code="same_email",
                           field="new_email")
    base = base_url.rstrip("/")
    reader = user.locale or locale
    if session.scalar(select(User.id).where(User.email == normalized)) is not None:
        _send(session, to=normalized, kind="accounts.email.taken", locale=reader,
              subject=EMAIL_TAKEN_SUBJECT, body=EMAIL_TAKEN_BODY,
              params={"platform": platform_name, "link": f"{base}/login"})
    else:
        token = new_token(nbytes=32)
        session.add(EmailChange(user_id=user.id, new_email=normalized,
                                token_hash=token_hash(token), created_at=now,
                                expires_at=now + EMAIL_CHANGE_LIFETIME))
        _send(session, to=normalized, kind="accounts.email.confirm", locale=reader,
              subject=EMAIL_CONFIRM_SUBJECT, body=EMAIL_CONFIRM_BODY,
              params={"platform": platform_name, "name": user.display_name,
                      "link": f"{base}/me/email/confirm/{token}"})
    if user.email:
        _send(session, to=user.email, kind="accounts.email.change_requested", locale=reader,
              subject=EMAIL_NOTICE_SUBJECT, body=EMAIL_NOTICE_BODY,
              params={"platform": platform_name, "name": user.display_name,
                      "new": normalized, "link": f"{base}/password/forgot"})
    return normalized


def get_email_change(*, session: Session, token: str, now: dt.datetime,
                     lock: bool = False) -> EmailChange:
    """The unconfirmed, unexpired change of an emailed link, or a 404."""
    query = select(EmailChange).where(EmailChange.token_hash == token_hash(token))
    change = session.scalar(query.with_for_update() if lock else query)
    if change is None or change.confirmed_at is not None or change.expires_at <= now:
        raise NotFound("This link is not valid or has expired. Ask for a new one.",
                       code="email_link_invalid")
    user = session.get(User, change.user_id)
    if user is None or not user.is_active:
        raise NotFound("This link is not valid or has expired. Ask for a new one.",
                       code="email_link_invalid")
    return change


def do_confirm_email_change(*, session: Session, token: str, now: dt.datetime) -> User:
    """Give the account the address of an emailed link (its owner opened it)."""
    change = get_email_change(session=session, token=token, now=now, lock=True)
    user = session.get_one(User, change.user_id)
    taken = Conflict("This email address has an account now. Choose another one.",
                     code="email_taken", field="new_email")
    if session.scalar(select(User.id).where(User.email == change.new_email)) is not None:
        raise taken
    old = user.email
    try:
        with session.begin_nested():  # two links to one address confirmed at once
            user.email = change.new_email
            session.flush()
    except IntegrityError:
        raise taken from None
    change.confirmed_at = now
    audit.record(session, actor_id=user.id, action="accounts.user.email_changed",
                 object_type="user", object_id=user.id,
                 data={"old": {"email": old}, "new": {"email": user.email}})
    return user


# --- the profile ------------------------------------------------------------------------------


def check_display_name(value: str) -> str:
    """Return a display name (trimmed, 1–60 characters, one line) or raise."""
    name = value.strip()
    check_characters(name, field="display_name")
    if not name or len(name) > MAX_DISPLAY_NAME:
        raise InvalidInput("Enter a display name of at most 60 characters.",
                           code="invalid_display_name", field="display_name")
    return name


def do_update_profile(*, session: Session, user: User, display_name: str) -> bool:
    """Change the name shown for the account; return whether anything changed."""
    name = check_display_name(display_name)
    if name == user.display_name:
        return False
    changes = audit.changes(user, display_name=name)
    audit.record(session, actor_id=user.id, action="accounts.user.updated", object_type="user",
                 object_id=user.id, data=changes)
    session.flush()
    return True
