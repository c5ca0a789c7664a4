"""Deleting an account (PIPL Art. 47): what crosses domains when a person leaves.

The law makes the platform keep some records after a person is gone: a charity's donation
records (Charity Law; the platform standard MZ/T 088-2017 keeps them at least two years after
a campaign ends), the payment records the providers' bills are reconciled against, the
transparency log that anyone can verify, and the audit log. PIPL Art. 47 asks the rest to be
erased, and what is kept to be kept de-identified. So :func:`do_delete_account`:

* **erases** the account's sessions, API tokens, notifications, pending links and codes, its
  pending sign-ups and the emails sent to it (the outbox holds them with links and names),
  its personal summit agenda, and the words it wrote in summit chat and questions;
* **keeps, de-identified**, the ``users`` row — email, phone, password, province, language and
  organization erased, the name replaced with :data:`DELETED_NAME`, signed-in nowhere and
  unable to sign in again — because the donations, payments, giving-day gifts, transparency
  leaves (a commitment to ``user:<id>``, nothing more) and audit entries that must stay name
  the account by its id; on every donation, payment order and giving-day gift of the account:
  the donor's name replaced, the message, the guest contact and the payer's hashed identifiers
  erased — amount, project, time, province and status kept; on its reports (举报): the
  contact erased, the report kept (the platform must show it answered); in the audit entries
  about the account: the email and phone numbers erased.

docs/accounts.md, "Deleting an account", lists the same, table by table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import (
    ApiToken,
    CodePurpose,
    EmailChange,
    Notification,
    PasswordReset,
    PendingSignup,
    PhoneCode,
    User,
)
from shanju.accounts.phones import check_code
from shanju.accounts.service import do_end_all_sessions, has_password, unusable_password
from shanju.campaigns.models import CampaignGift
from shanju.complaints.models import Complaint
from shanju.core import audit
from shanju.core.audit import AuditEntry
from shanju.core.errors import InvalidInput
from shanju.core.mail import OutboxMessage
from shanju.core.security import verify_password
from shanju.donations.models import Donation
from shanju.payments.models import PaymentIntent
from shanju.summit.models import SummitAgendaItem, SummitChatMessage, SummitQuestion

# What a deleted account and its gifts are called from then on (stored text).
DELETED_NAME = "已注销用户"
# Keys of audit data that hold contact details (erased from the entries about the account).
_CONTACT_KEYS = frozenset({"email", "phone", "contact", "new_email"})


def check_deletion(*, session: Session, user: User, password: str, code: str,
                   secret_key: str, now: dt.datetime) -> None:
    """Raise unless the person proved it is them: the password, or (an account without one)
    the SMS code sent to its number. A wrong code counts as a try: commit even on error."""
    if has_password(user):
        if not verify_password(user.password_hash, password):
            raise InvalidInput("The password is not correct.", code="invalid_password",
                               field="password")
        return
    if user.phone is None:  # no password and no phone: cannot happen, refused all the same
        raise InvalidInput("This account cannot be confirmed.", code="invalid_password")
    check_code(session=session, phone=user.phone, purpose=CodePurpose.DELETE, code=code,
               user=user, secret_key=secret_key, now=now)


@dataclass(frozen=True)
class Erasure:
    """What deleting an account changed, by kind (for the audit entry and the tests)."""

    counts: dict[str, int]


def _scrub(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: (None if k in _CONTACT_KEYS and v is not None else _scrub(v))
                for k, v in data.items()}
    if isinstance(data, list):
        return [_scrub(v) for v in data]
    return data


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def do_delete_account(*, session: Session, user: User, now: dt.datetime) -> Erasure:
    """Delete ``user``'s account: erase what the law does not keep, de-identify what it does
    (see the module's doc). Signs the account out everywhere. Checked by :func:`check_deletion`."""
    counts: dict[str, int] = {}
    email, uid = user.email, user.id
    counts["sessions"] = do_end_all_sessions(session=session, user=user, actor=user)
    for name, model in (("api_tokens", ApiToken), ("notifications", Notification),
                        ("password_resets", PasswordReset), ("email_changes", EmailChange),
                        ("phone_codes", PhoneCode), ("summit_agenda", SummitAgendaItem)):
        counts[name] = _count(session.execute(
            delete(model).where(model.user_id == uid)
            .execution_options(synchronize_session=False)))
    if email:
        counts["pending_signups"] = _count(session.execute(
            delete(PendingSignup).where(PendingSignup.email == email)
            .execution_options(synchronize_session=False)))
        counts["emails"] = _count(session.execute(
            delete(OutboxMessage).where(OutboxMessage.to_address == email)
            .execution_options(synchronize_session=False)))
    for name, words in (("summit_chat", SummitChatMessage), ("summit_questions", SummitQuestion)):
        counts[name] = _count(session.execute(
            update(words).where(words.user_id == uid).values(body="")
            .execution_options(synchronize_session=False)))
    # Records the law keeps, de-identified.
    counts["donations"] = _count(session.execute(
        update(Donation).where(Donation.donor_id == uid)
        .values(donor_name=DELETED_NAME, message="")
        .execution_options(synchronize_session=False)))
    counts["payment_orders"] = _count(session.execute(
        update(PaymentIntent).where(PaymentIntent.donor_id == uid)
        .values(donor_name=DELETED_NAME, message="", contact_sealed=None, contact_hash=None,
                payer_hash="")
        .execution_options(synchronize_session=False)))
    counts["giving_day_gifts"] = _count(session.execute(
        update(CampaignGift).where(CampaignGift.donor_id == uid)
        .values(donor_name=DELETED_NAME, message="", payer_hash="", device_hash="")
        .execution_options(synchronize_session=False)))
    counts["reports"] = _count(session.execute(
        update(Complaint).where(Complaint.reporter_id == uid).values(reporter_contact=None)
        .execution_options(synchronize_session=False)))
    entries = list(session.scalars(select(AuditEntry).where(
        AuditEntry.object_type == "user", AuditEntry.object_id == str(uid))))
    for entry in entries:
        entry.data = _scrub(entry.data)
    counts["audit_entries_scrubbed"] = len(entries)
    user.email = None
    user.phone = None
    user.display_name = DELETED_NAME
    user.password_hash = unusable_password()
    user.province = None
    user.locale = None
    user.organization_id = None
    user.is_active = False
    user.deleted_at = now
    audit.record(session, actor_id=uid, action="accounts.user.deleted", object_type="user",
                 object_id=uid, data={"counts": counts})
    session.flush()
    return Erasure(counts=counts)
