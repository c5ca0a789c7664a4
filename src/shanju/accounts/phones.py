"""Phones: SMS codes, signing in with one, adding one to an account and removing it.

A code is 6 random digits, sent by the app's :class:`~shanju.accounts.sms.SmsSender` once the
request commits (never while the request holds the database: a provider can take seconds). Only
a keyed hash of it is kept — HMAC-SHA-256 under a key derived from the secret key, over the
number, the purpose and the code — since a million codes are too few to protect with a plain
hash. A code lives 5 minutes, takes at most 5 tries and works once; asking for a new one
spends the older ones. How many codes a number and an address may ask for is
``core.ratelimit``'s ``sms.*`` limits.

How a phone and an account meet (docs/accounts.md): signing in with a code finds the account
that holds the number, or makes a new donor account with only that number. A number is added
to an existing (email) account only from that account's profile, signed in, with a code sent
to it — never by signing in with it, which proves the phone and nothing about the email
account. One number, one account.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Callable

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shanju.accounts.models import CodePurpose, PhoneCode, Role, User
from shanju.accounts.service import unusable_password
from shanju.accounts.sms import SmsError, SmsSender, mask_phone
from shanju.core import audit
from shanju.core.errors import Conflict, InvalidInput
from shanju.core.events import on_commit
from shanju.core.i18n import N_
from shanju.core.security import derive_key

log = structlog.get_logger(__name__)

CODE_LIFETIME = dt.timedelta(minutes=5)
MAX_ATTEMPTS = 5
CODE_DIGITS = 6
# The name of an account made by signing in with a phone, until its owner chooses one
# (stored text, like every display name; four random digits tell such accounts apart).
NEW_ACCOUNT_NAME = "爱心人士"


def code_hash(secret_key: str, *, phone: str, purpose: CodePurpose, code: str) -> str:
    """The keyed hash of a code sent to ``phone`` for ``purpose``."""
    key = derive_key(secret_key, "shanju/phone-code/v1")
    message = f"{phone}\n{purpose.value}\n{code}".encode()
    return hmac.new(key, message, "sha256").hexdigest()


def _send_quietly(sender: SmsSender, phone: str, code: str) -> None:
    try:
        sender.send_code(phone=phone, code=code)
    except SmsError as exc:
        log.warning("sms.not_sent", phone=mask_phone(phone), code=exc.code, error=exc.message)
    except Exception:  # the code is stored; the person asks for another one
        log.exception("sms.not_sent", phone=mask_phone(phone))


def do_send_code(*, session: Session, phone: str, purpose: CodePurpose, user: User | None,
                 sender: SmsSender, secret_key: str, now: dt.datetime,
                 generate: Callable[[], str] | None = None) -> PhoneCode:
    """Store a new code for ``phone`` (E.164, checked) and send it after the commit.

    The codes asked for before for the same number and purpose (and account) are spent.
    """
    user_id = user.id if user is not None else None
    session.execute(
        update(PhoneCode)
        .where(PhoneCode.phone == phone, PhoneCode.purpose == purpose,
               PhoneCode.user_id.is_(None) if user_id is None else PhoneCode.user_id == user_id,
               PhoneCode.spent_at.is_(None))
        .values(spent_at=now).execution_options(synchronize_session=False))
    code = generate() if generate else f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    row = PhoneCode(phone=phone, purpose=purpose, user_id=user_id, created_at=now,
                    expires_at=now + CODE_LIFETIME, attempts=0,
                    code_hash=code_hash(secret_key, phone=phone, purpose=purpose, code=code))
    session.add(row)
    session.flush()
    on_commit(session, lambda: _send_quietly(sender, phone, code))
    return row


WRONG_CODE = N_("The code is wrong or has expired. Check it, or ask for a new one.")


def check_code(*, session: Session, phone: str, purpose: CodePurpose, code: str,
               user: User | None, secret_key: str, now: dt.datetime) -> None:
    """Spend the code sent to ``phone`` for ``purpose`` if ``code`` is it, else raise.

    Every try counts, right or wrong; the fifth wrong one spends the code. The caller must
    commit even when this raises (render the error, do not propagate it), or the count of
    tries is lost with the rollback.
    """
    typed = code.strip().replace(" ", "")
    user_id = user.id if user is not None else None
    row = session.scalar(
        select(PhoneCode)
        .where(PhoneCode.phone == phone, PhoneCode.purpose == purpose,
               PhoneCode.user_id.is_(None) if user_id is None else PhoneCode.user_id == user_id,
               PhoneCode.spent_at.is_(None), PhoneCode.expires_at > now)
        .order_by(PhoneCode.id.desc()).limit(1).with_for_update())
    if row is None:
        raise InvalidInput(WRONG_CODE, code="invalid_code", field="code")
    row.attempts += 1
    expected = code_hash(secret_key, phone=phone, purpose=purpose, code=typed)
    if len(typed) != CODE_DIGITS or not typed.isascii() or not typed.isdigit() or \
            not hmac.compare_digest(row.code_hash, expected):
        if row.attempts >= MAX_ATTEMPTS:
            row.spent_at = now
            session.flush()
            raise InvalidInput("Too many wrong codes. Ask for a new one.",
                               code="code_attempts_exceeded", field="code")
        session.flush()
        raise InvalidInput(WRONG_CODE, code="invalid_code", field="code")
    row.spent_at = now
    session.flush()


def do_sign_in_with_code(*, session: Session, phone: str, code: str, secret_key: str,
                         now: dt.datetime) -> tuple[User, bool]:
    """The account holding ``phone`` once ``code`` is right, made if there is none (a donor
    with only this number); and whether it was made."""
    check_code(session=session, phone=phone, purpose=CodePurpose.SIGN_IN, code=code, user=None,
               secret_key=secret_key, now=now)
    user = session.scalar(select(User).where(User.phone == phone))
    if user is not None:
        if not user.is_active:
            raise InvalidInput("This account is deactivated and cannot sign in.",
                               code="account_inactive", field="phone")
        return user, False
    name = f"{NEW_ACCOUNT_NAME}{secrets.randbelow(10**4):04d}"
    user = User(email=None, phone=phone, display_name=name, password_hash=unusable_password(),
                role=Role.DONOR, created_at=now)
    try:
        with session.begin_nested():  # the same number signing in twice at once
            session.add(user)
            session.flush()
    except IntegrityError:
        found = session.scalar(select(User).where(User.phone == phone))
        if found is None:
            raise
        return found, False
    audit.record(session, actor_id=user.id, action="accounts.user.created", object_type="user",
                 object_id=user.id, data={"new": {"phone": mask_phone(phone),
                                                  "role": user.role.value}, "via": "phone"})
    return user, True


def do_link_phone(*, session: Session, user: User, phone: str, code: str, secret_key: str,
                  now: dt.datetime) -> None:
    """Add ``phone`` to the signed-in account once the code sent to it is right."""
    check_code(session=session, phone=phone, purpose=CodePurpose.LINK, code=code, user=user,
               secret_key=secret_key, now=now)
    taken = Conflict("This number belongs to another account. Sign in with it and remove the "
                     "number there first.", code="phone_taken", field="phone")
    if session.scalar(select(User.id).where(User.phone == phone, User.id != user.id)):
        raise taken
    old = user.phone
    try:
        with session.begin_nested():
            user.phone = phone
            session.flush()
    except IntegrityError:
        raise taken from None
    audit.record(session, actor_id=user.id, action="accounts.user.phone_linked",
                 object_type="user", object_id=user.id,
                 data={"old": {"phone": mask_phone(old) if old else None},
                       "new": {"phone": mask_phone(phone)}})


def do_unlink_phone(*, session: Session, user: User) -> None:
    """Remove the number from the account (which must keep an email to sign in with)."""
    if user.phone is None:
        return
    if user.email is None:
        raise InvalidInput("Add an email address first: without the number you could not sign "
                           "in any more.", code="phone_only_account", field="phone")
    old = user.phone
    user.phone = None
    audit.record(session, actor_id=user.id, action="accounts.user.phone_unlinked",
                 object_type="user", object_id=user.id,
                 data={"old": {"phone": mask_phone(old)}})
    session.flush()
