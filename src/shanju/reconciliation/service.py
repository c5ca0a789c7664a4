"""Daily reconciliation's records: our side read for the matching core, runs and mismatches
written, and reviewers' resolutions.

Nothing here calls a provider or commits: ``reconciliation.flows`` opens the transactions and
asks the gateways. Our side is read into the core's plain records
(:class:`~shanju.payments.reconcile.OurPayment`, :class:`~shanju.payments.reconcile.OurRefund`)
from the payment orders (``payment_intents`` opened through a gateway: ``merchant_id`` set)
and their refunds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.campaigns.models import CampaignGift
from shanju.core import audit
from shanju.core.clock import CHINA_TZ, utcnow
from shanju.core.db import flush_unless_duplicate, get_or_404
from shanju.core.errors import Conflict, InvalidInput, PermissionDenied
from shanju.core.i18n import N_
from shanju.core.text import check_characters
from shanju.payments.gateway import BillLine
from shanju.payments.models import IntentStatus, PaymentIntent, Refund, RefundStatus
from shanju.payments.reconcile import (
    Mismatch,
    MismatchKind,
    OurPayment,
    OurPaymentStatus,
    OurRefund,
    OurRefundStatus,
    Report,
)
from shanju.reconciliation.models import (
    MismatchStatus,
    ReconciliationMismatch,
    ReconciliationRun,
    Resolution,
    RunStatus,
    RunTrigger,
)

NOTE_MAX = 2000
# IN lists of order numbers are sent in chunks of this many (bills have thousands of lines).
CHUNK = 500

KIND_LABELS = {
    MismatchKind.MISSING_OURS: N_("Paid at the provider, unknown to us"),
    MismatchKind.MISSING_THEIRS: N_("Credited by us, on no bill"),
    MismatchKind.AMOUNT_MISMATCH: N_("Amounts differ"),
    MismatchKind.MERCHANT_MISMATCH: N_("Paid to another merchant"),
    MismatchKind.TXN_MISMATCH: N_("Transaction numbers differ"),
    MismatchKind.STATUS_MISMATCH: N_("States differ"),
    MismatchKind.REFUND_MISSING_OURS: N_("Refund we never asked for"),
    MismatchKind.REFUND_MISSING_THEIRS: N_("Refund done by us, on no bill"),
    MismatchKind.DUPLICATE_LINE: N_("Billed twice"),
}
RESOLUTION_LABELS = {
    Resolution.CREDITED: N_("Credited by reconciliation"),
    Resolution.ALREADY_CREDITED: N_("Already credited"),
    Resolution.REFUND_SETTLED: N_("Refund settled"),
    Resolution.CLEARED: N_("No longer found"),
    Resolution.REVIEWED: N_("Resolved by a reviewer"),
}
RUN_STATUS_LABELS = {
    RunStatus.RUNNING: N_("Running"),
    RunStatus.COMPLETE: N_("Complete"),
    RunStatus.INCOMPLETE: N_("Incomplete"),
    RunStatus.FAILED: N_("Could not run"),
}
PROVIDER_LABELS = {"wechatpay": N_("WeChat Pay"), "alipay": N_("Alipay")}
# Why a run did not see everything (a run's ``problems``); gateway error codes besides these.
PROBLEM_LABELS = {
    "merchant_not_reconciled": N_("Orders of a merchant whose bill was not fetched"),
    "route_unreadable": N_("A merchant's authorization token cannot be opened"),
    "bill_failed": N_("A bill could not be downloaded"),
    "bill_refused": N_("A bill cannot be a bill of its day"),
}


# --- our side -------------------------------------------------------------------------------


def day_start(day: dt.date) -> dt.datetime:
    """00:00 China time of ``day``, as an aware UTC time."""
    return dt.datetime.combine(day, dt.time(), CHINA_TZ).astimezone(dt.UTC)


def window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The span of our records the run of ``day`` reads: the days D − 1 to D + 1 (China
    time), which holds every record the run owns whatever the core's day window."""
    return day_start(day - dt.timedelta(days=1)), day_start(day + dt.timedelta(days=2))


def _chunks(values: Collection[str]) -> Iterator[list[str]]:
    ordered = sorted(values)
    for i in range(0, len(ordered), CHUNK):
        yield ordered[i:i + CHUNK]


def _credited_gift_orders(session: Session, order_ids: Collection[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(order_ids):
        found.update(session.scalars(select(CampaignGift.order_id)
                                     .where(CampaignGift.order_id.in_(chunk))))
    return found


def _our_payment(intent: PaymentIntent, gift_written: bool) -> OurPayment:
    status = {IntentStatus.SUCCEEDED: OurPaymentStatus.PAID,
              IntentStatus.REQUIRES_PAYMENT: OurPaymentStatus.UNPAID}.get(
        intent.status, OurPaymentStatus.CLOSED)
    if status is OurPaymentStatus.PAID and intent.campaign_id is not None and not gift_written:
        # A giving-day order marked paid whose gift the engine never wrote (the hand-over
        # failed and no callback came again): not credited yet, so the run credits it.
        status = OurPaymentStatus.UNPAID
    return OurPayment(
        provider=intent.provider, out_trade_no=intent.id, amount_fen=intent.amount_fen,
        merchant_id=intent.merchant_id or "", status=status,
        provider_txn_id=intent.provider_txn_id,
        paid_at=(intent.succeeded_at or intent.created_at)
        if status is OurPaymentStatus.PAID else intent.succeeded_at)


def refund_bill_time(provider: str, refund: Refund) -> dt.datetime:
    """The time a provider's bill dates a refund, as far as we know it: WeChat Pay lists it
    when it accepted the request (we asked right after creating it), Alipay when it
    succeeded (docs/reconciliation.md, "Refunds")."""
    if provider == "alipay" and refund.completed_at is not None:
        return refund.completed_at
    return refund.created_at


def read_ours(*, session: Session, provider: str, day: dt.date,
              merchant_ids: Collection[str] | None, lines: Iterable[BillLine]
              ) -> tuple[list[OurPayment], list[OurRefund]]:
    """Our payment orders and refunds the run of ``day`` needs (see ``payments.reconcile.match``).

    Every order and refund a bill line names, whatever its state; and every paid order and
    succeeded refund of ``provider`` dated D − 1 to D + 1 whose merchant is in
    ``merchant_ids`` (None: every merchant — WeChat Pay's bill covers them all).
    """
    lines = list(lines)
    named = {line.out_trade_no for line in lines}
    named_refunds = {line.out_refund_no for line in lines if line.out_refund_no}
    start, end = window(day)
    intents: dict[str, PaymentIntent] = {}
    base = select(PaymentIntent).where(PaymentIntent.provider == provider)
    for chunk in _chunks(named):
        intents.update((i.id, i) for i in session.scalars(
            base.where(PaymentIntent.id.in_(chunk))))
    paid = base.where(PaymentIntent.merchant_id.is_not(None),
                      PaymentIntent.status == IntentStatus.SUCCEEDED,
                      PaymentIntent.succeeded_at >= start, PaymentIntent.succeeded_at < end)
    if merchant_ids is not None:
        paid = paid.where(PaymentIntent.merchant_id.in_(sorted(merchant_ids)))
    intents.update((i.id, i) for i in session.scalars(paid))
    gifts = _credited_gift_orders(
        session, [i.id for i in intents.values() if i.campaign_id is not None])
    payments = [_our_payment(i, i.id in gifts) for i in intents.values()]

    refunds: dict[str, tuple[Refund, PaymentIntent]] = {}
    joined = (select(Refund, PaymentIntent).join(PaymentIntent,
                                                 PaymentIntent.id == Refund.intent_id)
              .where(PaymentIntent.provider == provider))
    for chunk in _chunks(named_refunds):
        refunds.update((r.id, (r, i)) for r, i in session.execute(
            joined.where(Refund.id.in_(chunk))))
    done = joined.where(PaymentIntent.merchant_id.is_not(None),
                        Refund.status == RefundStatus.SUCCEEDED,
                        or_(Refund.created_at.between(start, end),
                            Refund.completed_at.between(start, end)))
    if merchant_ids is not None:
        done = done.where(PaymentIntent.merchant_id.in_(sorted(merchant_ids)))
    refunds.update((r.id, (r, i)) for r, i in session.execute(done))
    ours_refunds = [OurRefund(provider=provider, out_refund_no=r.id, out_trade_no=i.id,
                              amount_fen=r.amount_fen, status=OurRefundStatus(r.status.value),
                              happened_at=refund_bill_time(provider, r))
                    for r, i in refunds.values()]
    return payments, ours_refunds


def unreconciled_merchants(*, session: Session, provider: str, day: dt.date,
                           merchant_ids: Collection[str]) -> dict[str, int]:
    """Merchants outside ``merchant_ids`` with orders paid on ``day`` (China time): their
    bills were not fetched, so the run could not check them. Merchant id → orders."""
    query = (select(PaymentIntent.merchant_id, func.count())
             .where(PaymentIntent.provider == provider,
                    PaymentIntent.merchant_id.is_not(None),
                    PaymentIntent.status == IntentStatus.SUCCEEDED,
                    PaymentIntent.succeeded_at >= day_start(day),
                    PaymentIntent.succeeded_at < day_start(day + dt.timedelta(days=1)))
             .group_by(PaymentIntent.merchant_id))
    if merchant_ids:
        query = query.where(PaymentIntent.merchant_id.not_in(sorted(merchant_ids)))
    return {str(merchant): int(n) for merchant, n in session.execute(query)}


# --- runs and mismatches --------------------------------------------------------------------


def claim_of(provider: str, day: dt.date) -> str:
    """The scheduled job's claim on a provider's day."""
    return f"{provider}:{day.isoformat()}"


def do_start_run(*, session: Session, provider: str, day: dt.date, trigger: RunTrigger,
                 claim: bool = False) -> ReconciliationRun | None:
    """Record a run as started. With ``claim`` (the scheduled job), only if no run holds the
    day's claim yet: None when another process has it."""
    run = ReconciliationRun(provider=provider, day=day, trigger=trigger,
                            claim=claim_of(provider, day) if claim else None, problems=[])
    if not flush_unless_duplicate(session, run):
        return None
    return run


def has_claim(*, session: Session, provider: str, day: dt.date) -> bool:
    """Whether the scheduled job has already reconciled (or is reconciling) this day."""
    return session.scalar(select(ReconciliationRun.id).where(
        ReconciliationRun.claim == claim_of(provider, day))) is not None


def _side_of_line(line: BillLine | None) -> dict[str, Any] | None:
    if line is None:
        return None
    return {"kind": line.kind.value, "out_trade_no": line.out_trade_no,
            "out_refund_no": line.out_refund_no, "provider_txn_id": line.provider_txn_id,
            "provider_refund_id": line.provider_refund_id, "amount_fen": line.amount_fen,
            "merchant_id": line.merchant_id, "happened_at": line.happened_at.isoformat(),
            "status": line.status}


def _our_side(mismatch: Mismatch) -> dict[str, Any] | None:
    if mismatch.payment is not None:
        p = mismatch.payment
        return {"kind": "payment", "status": p.status.value, "amount_fen": p.amount_fen,
                "merchant_id": p.merchant_id, "provider_txn_id": p.provider_txn_id,
                "happened_at": p.paid_at.isoformat() if p.paid_at else None}
    if mismatch.refund is not None:
        r = mismatch.refund
        return {"kind": "refund", "status": r.status.value, "amount_fen": r.amount_fen,
                "happened_at": r.happened_at.isoformat()}
    return None


def _identity(mismatch: Mismatch, day: dt.date) -> tuple[Any, ...]:
    return (mismatch.provider, day, mismatch.kind.value, mismatch.out_trade_no,
            mismatch.out_refund_no or "", mismatch.occurrence)


def _find(session: Session, identity: tuple[Any, ...]) -> ReconciliationMismatch | None:
    provider, day, kind, out_trade_no, out_refund_no, occurrence = identity
    return session.scalar(select(ReconciliationMismatch).where(
        ReconciliationMismatch.provider == provider, ReconciliationMismatch.day == day,
        ReconciliationMismatch.kind == kind, ReconciliationMismatch.out_trade_no == out_trade_no,
        ReconciliationMismatch.out_refund_no == out_refund_no,
        ReconciliationMismatch.occurrence == occurrence)
        .with_for_update().execution_options(populate_existing=True))


def do_record_mismatch(*, session: Session, run: ReconciliationRun, mismatch: Mismatch,
                       attempt: str = "", resolution: Resolution | None = None
                       ) -> ReconciliationMismatch:
    """Record what ``run`` found: a new mismatch, or the one of the same identity seen
    before, now last seen by ``run``. ``resolution``: the job resolved it (credited, refund
    settled). A mismatch resolved before stays resolved — unless only because a run no
    longer found it (``cleared``): found again, it is open again.
    """
    identity = _identity(mismatch, run.day)
    row = _find(session, identity)
    if row is None:
        row = ReconciliationMismatch(
            provider=mismatch.provider, day=run.day, kind=mismatch.kind.value,
            action=mismatch.action.value, out_trade_no=mismatch.out_trade_no,
            out_refund_no=mismatch.out_refund_no or "", occurrence=mismatch.occurrence,
            first_run_id=run.id, last_run_id=run.id, status=MismatchStatus.OPEN)
        if not flush_unless_duplicate(session, row):  # another run of the day recorded it
            found = _find(session, identity)
            if found is None:  # pragma: no cover - the winner's row is visible now
                raise Conflict("Please retry the reconciliation.", code="retry")
            row = found
    row.last_run_id = run.id
    row.action = mismatch.action.value
    row.theirs = _side_of_line(mismatch.line)
    row.ours = _our_side(mismatch)
    if attempt:
        row.attempt = attempt[:40]
    if row.status is MismatchStatus.RESOLVED and row.resolution is Resolution.CLEARED:
        _reopen(session, row)
    if resolution is not None and row.status is MismatchStatus.OPEN:
        _resolve(session, row, resolution=resolution, actor=None, note=None)
    session.flush()
    return row


def do_note_attempt(*, session: Session, row: ReconciliationMismatch, attempt: str,
                    resolution: Resolution | None) -> None:
    """Record what the job's attempt to act on a recorded mismatch came to (the row was
    recorded, and so locked, earlier in this transaction)."""
    row.attempt = attempt[:40]
    if resolution is not None and row.status is MismatchStatus.OPEN:
        _resolve(session, row, resolution=resolution, actor=None, note=None)
    session.flush()


def _reopen(session: Session, row: ReconciliationMismatch) -> None:
    data = audit.changes(row, status=MismatchStatus.OPEN, resolution=None, resolved_at=None)
    audit.record(session, actor_id=None, action="reconciliation.mismatch.reopened",
                 object_type="reconciliation_mismatch", object_id=row.id or 0, data=data)


def _resolve(session: Session, row: ReconciliationMismatch, *, resolution: Resolution,
             actor: User | None, note: str | None) -> None:
    session.flush()  # the row's id, for the audit entry
    data = audit.changes(row, status=MismatchStatus.RESOLVED, resolution=resolution,
                         resolved_at=utcnow(), resolved_by_id=actor.id if actor else None,
                         note=note)
    audit.record(session, actor_id=actor.id if actor else None,
                 action="reconciliation.mismatch.resolved",
                 object_type="reconciliation_mismatch", object_id=row.id, data=data)


def do_finish_run(*, session: Session, run: ReconciliationRun, report: Report | None,
                  status: RunStatus, problems: Sequence[dict[str, Any]], credited: int = 0,
                  release_claim: bool = False) -> int:
    """Record the run's end: its counts, status and problems; a complete run clears the open
    mismatches of its provider and day that it no longer found. ``release_claim``: a
    scheduled run that failed for a reason that may pass (the bill not ready yet) gives up its
    claim, so that a later round tries again. Returns how many it cleared."""
    run.status = status
    run.finished_at = utcnow()
    run.problems = list(problems)
    run.credited = credited
    if release_claim:
        run.claim = None
    cleared = 0
    if report is not None:
        for name in ("bill_payments", "bill_payments_fen", "bill_refunds", "bill_refunds_fen",
                     "payments_matched", "payments_matched_fen", "refunds_matched",
                     "refunds_matched_fen"):
            setattr(run, name, getattr(report, name))
        run.mismatches = len(report.mismatches)
    session.flush()
    if status is RunStatus.COMPLETE:
        stale = session.scalars(select(ReconciliationMismatch).where(
            ReconciliationMismatch.provider == run.provider,
            ReconciliationMismatch.day == run.day,
            ReconciliationMismatch.status == MismatchStatus.OPEN,
            ReconciliationMismatch.last_run_id != run.id)).all()
        for row in stale:
            _resolve(session, row, resolution=Resolution.CLEARED, actor=None, note=None)
            cleared += 1
    audit.record(session, actor_id=None, action="reconciliation.run.finished",
                 object_type="reconciliation_run", object_id=run.id,
                 data={"new": {"provider": run.provider, "day": run.day.isoformat(),
                               "status": status.value, "mismatches": run.mismatches,
                               "credited": credited, "cleared": cleared,
                               "problems": len(problems)}})
    session.flush()
    return cleared


# --- reading, for the job, the command and the pages ----------------------------------------


def open_count(*, session: Session, provider: str | None = None,
               day: dt.date | None = None) -> int:
    """How many mismatches are still open (of one provider and day, if given)."""
    query = select(func.count()).select_from(ReconciliationMismatch).where(
        ReconciliationMismatch.status == MismatchStatus.OPEN)
    if provider is not None:
        query = query.where(ReconciliationMismatch.provider == provider)
    if day is not None:
        query = query.where(ReconciliationMismatch.day == day)
    return session.scalar(query) or 0


def mismatches_of_run(*, session: Session, run: ReconciliationRun
                      ) -> list[ReconciliationMismatch]:
    """The mismatches a run last saw (those it found), in the core's report order."""
    return list(session.scalars(select(ReconciliationMismatch).where(
        ReconciliationMismatch.last_run_id == run.id).order_by(
        ReconciliationMismatch.out_trade_no, ReconciliationMismatch.out_refund_no,
        ReconciliationMismatch.kind, ReconciliationMismatch.occurrence)))


def list_runs(*, session: Session, page: int = 1, per_page: int = 20
              ) -> tuple[list[ReconciliationRun], int]:
    """Runs, newest day first (then newest run)."""
    total = session.scalar(select(func.count()).select_from(ReconciliationRun)) or 0
    items = session.scalars(select(ReconciliationRun).order_by(
        ReconciliationRun.day.desc(), ReconciliationRun.id.desc())
        .offset((max(page, 1) - 1) * per_page).limit(per_page)).all()
    return list(items), total


def open_by_run(*, session: Session, run_ids: Collection[int]) -> dict[int, int]:
    """Open mismatches last seen by each run."""
    if not run_ids:
        return {}
    rows = session.execute(select(ReconciliationMismatch.last_run_id, func.count())
                           .where(ReconciliationMismatch.last_run_id.in_(sorted(run_ids)),
                                  ReconciliationMismatch.status == MismatchStatus.OPEN)
                           .group_by(ReconciliationMismatch.last_run_id))
    return {int(run_id): int(n) for run_id, n in rows}


def list_mismatches(*, session: Session, status: MismatchStatus | None = MismatchStatus.OPEN,
                    page: int = 1, per_page: int = 50
                    ) -> tuple[list[ReconciliationMismatch], int]:
    """Mismatches of a status (None: all), oldest day first for open ones, else newest."""
    query = select(ReconciliationMismatch)
    if status is not None:
        query = query.where(ReconciliationMismatch.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    if status is MismatchStatus.OPEN:
        order: tuple[Any, ...] = (ReconciliationMismatch.day, ReconciliationMismatch.id)
    else:
        order = (ReconciliationMismatch.day.desc(), ReconciliationMismatch.id.desc())
    items = session.scalars(query.order_by(*order)
                            .offset((max(page, 1) - 1) * per_page).limit(per_page)).all()
    return list(items), total


def get_run(*, session: Session, run_id: int) -> ReconciliationRun:
    """A run by id, or 404 ``reconciliation_run_not_found``."""
    return get_or_404(session, ReconciliationRun, run_id,
                      message=N_("This reconciliation run does not exist."),
                      code="reconciliation_run_not_found")


def get_mismatch(*, session: Session, mismatch_id: int) -> ReconciliationMismatch:
    """A mismatch by id, or 404 ``mismatch_not_found``."""
    return get_or_404(session, ReconciliationMismatch, mismatch_id,
                      message=N_("This mismatch does not exist."), code="mismatch_not_found")


# --- reviewers -------------------------------------------------------------------------------


def check_reviewer(actor: User) -> None:
    """Only platform reviewers (and admins) see and resolve reconciliation's findings."""
    if not actor.is_reviewer:
        raise PermissionDenied("Only platform reviewers may do this.", code="reviewer_only")


def check_note(note: str | None) -> str:
    """A reviewer's note on a resolution: required, at most :data:`NOTE_MAX` characters."""
    text = (note or "").strip()
    check_characters(text, field="note", multiline=True)
    if not text:
        raise InvalidInput("Say what you found and did.", code="note_required", field="note")
    if len(text) > NOTE_MAX:
        raise InvalidInput("This text is too long: at most %(n)s characters.",
                           code="text_too_long", field="note", params={"n": NOTE_MAX})
    return text


def do_resolve(*, session: Session, mismatch: ReconciliationMismatch, actor: User,
               note: str) -> ReconciliationMismatch:
    """Mark an open mismatch resolved by a reviewer, with the note (audited)."""
    check_reviewer(actor)
    text = check_note(note)
    row = session.scalar(select(ReconciliationMismatch).where(
        ReconciliationMismatch.id == mismatch.id)
        .with_for_update().execution_options(populate_existing=True))
    if row is None or row.status is not MismatchStatus.OPEN:
        raise Conflict("This mismatch is already resolved.", code="mismatch_resolved")
    _resolve(session, row, resolution=Resolution.REVIEWED, actor=actor, note=text)
    session.flush()
    return row
