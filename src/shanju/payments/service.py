"""Payments: intents with idempotency keys, verified provider events, and refunds.

State changes here are *conditional updates* (``UPDATE ... WHERE status = <expected>``): of any
number of concurrent or repeated attempts to move an intent from one state to the next,
exactly one sees a changed row and goes on to credit the money. That, plus the unique
``(provider, event_id)`` on stored events and the unique ledger ``dedupe_key``, is what makes
crediting exactly-once under duplicate, reordered and concurrent callbacks (see
``docs/locking.md``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Result, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shanju.core.clock import utcnow
from shanju.core.db import flush_unless_duplicate, get_or_404
from shanju.core.errors import Conflict, InvalidInput
from shanju.core.i18n import N_
from shanju.core.ids import public_id
from shanju.payments.models import (
    IntentStatus,
    PaymentIntent,
    ProviderEvent,
    Refund,
    RefundStatus,
)
from shanju.payments.providers import Notification

MAX_IDEMPOTENCY_KEY = 100


def _changed(result: Result[Any]) -> bool:
    """Whether a conditional UPDATE changed exactly one row."""
    return cast(CursorResult[Any], result).rowcount == 1


def request_hash(body: Mapping[str, Any]) -> str:
    """Return a stable fingerprint of a request body, to tell a retry from a different request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str:
    """Validate a client's Idempotency-Key header."""
    if key is None or not key.strip():
        raise InvalidInput(
            "Send an Idempotency-Key header (any unique string per donation attempt) so a "
            "retry cannot create a second donation.",
            code="idempotency_key_required",
            field="Idempotency-Key",
        )
    key = key.strip()
    if len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidInput(
            "The Idempotency-Key must be at most 100 printable characters.",
            code="idempotency_key_invalid",
            field="Idempotency-Key",
        )
    return key


def find_intent_for_key(*, session: Session, scope: str, key: str) -> PaymentIntent | None:
    """Return the intent created earlier with this idempotency key, if any."""
    return session.scalar(
        select(PaymentIntent).where(
            PaymentIntent.idempotency_scope == scope, PaymentIntent.idempotency_key == key
        )
    )


def check_replay(*, intent: PaymentIntent, fingerprint: str) -> None:
    """Refuse a reused key that comes with a different request body."""
    if intent.request_hash != fingerprint:
        raise Conflict(
            "This Idempotency-Key was already used for a different request. Use a new key "
            "for a new donation.",
            code="idempotency_key_reused",
        )


def do_create_intent(
    *,
    session: Session,
    provider: str,
    amount_fen: int,
    scope: str,
    key: str,
    fingerprint: str,
) -> PaymentIntent | None:
    """Create an intent; return None if a concurrent request took the same key first.

    The insert runs in a savepoint so that losing the race leaves the caller's transaction
    usable: the caller then reads the winner with :func:`find_intent_for_key`.
    """
    intent = PaymentIntent(
        id=public_id("pi"),
        provider=provider,
        amount_fen=amount_fen,
        idempotency_scope=scope,
        idempotency_key=key,
        request_hash=fingerprint,
    )
    return intent if flush_unless_duplicate(session, intent) else None


def get_intent(*, session: Session, intent_id: str) -> PaymentIntent:
    """Return an intent by id, or 404."""
    return get_or_404(session, PaymentIntent, intent_id, message=N_("No such payment."),
                      code="payment_not_found")


def lock_intent(*, session: Session, intent_id: str) -> PaymentIntent | None:
    """Load an intent holding its row lock until the transaction ends (FOR UPDATE)."""
    return session.scalar(
        select(PaymentIntent).where(PaymentIntent.id == intent_id).with_for_update()
    )


def do_record_event(*, session: Session, note: Notification) -> ProviderEvent | None:
    """Store a verified event once; return None if this event id was seen before."""
    event = ProviderEvent(
        provider=note.provider,
        event_id=note.event_id,
        event_type=note.event_type,
        intent_id=None,
        payload=dict(note.payload or {}),
        outcome="received",
    )
    return event if flush_unless_duplicate(session, event) else None


class TransactionIdTaken(Exception):
    """The provider's transaction id already belongs to another intent (nothing changed)."""


def do_mark_succeeded(*, session: Session, intent: PaymentIntent, provider_txn_id: str | None,
                      payer_hash: str | None = None, paid_at: dt.datetime | None = None
                      ) -> bool:
    """Move the intent to succeeded; True for exactly one caller, ever.

    ``payer_hash`` and ``paid_at`` (the provider's payment time; else now) are written by the
    same statement: a second update of the row in this transaction would make PostgreSQL
    check its foreign keys again, taking ``FOR KEY SHARE`` on the giving day's campaign row —
    after the intent's row, against the lock order (campaign first) the giving-day engine
    keeps, which deadlocked a return page's query with the engine's batch of the same order's
    callback.

    A ``failed`` intent may still succeed (the donor retried on the provider's page and the
    provider reports success late); money the provider collected is always credited.
    Raises :class:`TransactionIdTaken` if another intent holds ``provider_txn_id`` (its
    unique index refuses the update; in a savepoint, so the caller's transaction goes on).
    """
    try:
        with session.begin_nested():
            result = session.execute(
                update(PaymentIntent)
                .where(
                    PaymentIntent.id == intent.id,
                    PaymentIntent.status.in_([IntentStatus.REQUIRES_PAYMENT,
                                              IntentStatus.FAILED]),
                )
                .values(status=IntentStatus.SUCCEEDED, succeeded_at=paid_at or utcnow(),
                        provider_txn_id=provider_txn_id,
                        **({} if payer_hash is None else {"payer_hash": payer_hash}))
                .execution_options(synchronize_session=False)
            )
    except IntegrityError as exc:
        raise TransactionIdTaken(provider_txn_id) from exc
    session.refresh(intent)
    return _changed(result)


def do_mark_failed(*, session: Session, intent: PaymentIntent) -> bool:
    """Move a waiting intent to failed; a late failure never undoes a success."""
    result = session.execute(
        update(PaymentIntent)
        .where(PaymentIntent.id == intent.id,
               PaymentIntent.status == IntentStatus.REQUIRES_PAYMENT)
        .values(status=IntentStatus.FAILED)
        .execution_options(synchronize_session=False)
    )
    session.refresh(intent)
    return _changed(result)


def check_refundable(*, intent: PaymentIntent, amount_fen: int) -> None:
    """Refuse a refund unless the payment succeeded and ``amount_fen`` of it is unrefunded."""
    if intent.status != IntentStatus.SUCCEEDED:
        raise Conflict("Only a completed payment can be refunded.", code="not_refundable")
    remaining = intent.amount_fen - intent.refunded_fen
    if amount_fen > remaining:
        raise InvalidInput(
            "The refund is larger than what remains of the payment.",
            code="refund_too_large",
            field="amount",
            details={"refundable_fen": remaining},
        )


def do_create_refund(
    *, session: Session, intent: PaymentIntent, amount_fen: int, reason: str,
    actor_id: int | None
) -> Refund:
    """Reserve ``amount_fen`` of the intent for a refund (guarded against double refunds)."""
    result = session.execute(
        update(PaymentIntent)
        .where(
            PaymentIntent.id == intent.id,
            PaymentIntent.status == IntentStatus.SUCCEEDED,
            PaymentIntent.refunded_fen + amount_fen <= PaymentIntent.amount_fen,
        )
        .values(refunded_fen=PaymentIntent.refunded_fen + amount_fen)
        .execution_options(synchronize_session=False)
    )
    if not _changed(result):
        raise Conflict("The payment was refunded meanwhile.", code="not_refundable")
    session.refresh(intent)
    refund = Refund(
        id=public_id("re"), intent_id=intent.id, amount_fen=amount_fen, reason=reason,
        requested_by_id=actor_id,
    )
    session.add(refund)
    session.flush()
    return refund


def do_settle_refund(*, session: Session, refund: Refund, succeeded: bool) -> bool:
    """Record the provider's answer to a refund; True for exactly one caller."""
    new_status = RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED
    result = session.execute(
        update(Refund)
        .where(Refund.id == refund.id, Refund.status == RefundStatus.PENDING)
        .values(status=new_status, completed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    changed = _changed(result)
    if changed and not succeeded:
        # The money stays with the project: release the reservation on the intent.
        session.execute(
            update(PaymentIntent)
            .where(PaymentIntent.id == refund.intent_id)
            .values(refunded_fen=PaymentIntent.refunded_fen - refund.amount_fen)
            .execution_options(synchronize_session=False)
        )
    session.refresh(refund)
    return changed
