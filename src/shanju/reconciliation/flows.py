"""The daily reconciliation and the sweep: provider calls, then transactions of their own.

:func:`reconcile_day` reconciles one China-time day for each configured gateway: it downloads
the day's bill and the day before's (WeChat Pay: one bill across sub-merchants; Alipay: one
per merchant in force, with that merchant's ``app_auth_token``), reads our payment orders and
refunds, runs the matching core (``payments.reconcile.match``) and acts on what it found:

* a payment the provider took and we never credited (``credit``) goes through the one
  exactly-once intake, ``gifts.flows.apply_report``, with the bill line's
  :class:`~shanju.payments.gateway.PaymentReport` — a giving-day order's gift is written by the
  engine's ``apply_batch`` in the same transaction; the mismatch is recorded resolved when
  the order is credited, open with the intake's outcome when the intake refused it;
* a refund pending with us that the bill shows finished (``settle_refund``) is settled by the
  refund query (``gifts.flows.settle_refund_by_query``);
* everything else is recorded as an open mismatch for a reviewer.

:func:`sweep` is the frequent companion: it asks the provider about orders still open after
a while and refunds still pending (their callbacks may never come).

Provider calls never run inside a transaction; nothing here holds one across a call. The
callers (the ``shanju payments`` commands, the application's payments job) are the boundary.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from shanju.campaigns.engine import PaidGift, apply_batch
from shanju.campaigns.models import CampaignGift
from shanju.core.db import Database
from shanju.core.errors import DomainError, InvalidInput
from shanju.gifts import flows as gift_flows
from shanju.organizations import payment_routes
from shanju.payments.gateway import BillLine, Gateway, GatewayError, MerchantRoute, RefundState
from shanju.payments.models import IntentStatus, PaymentIntent, Refund
from shanju.payments.reconcile import (
    DAY_WINDOW,
    Action,
    Mismatch,
    ReconcileError,
    Report,
    bill_refund_state,
    match,
)
from shanju.reconciliation import service
from shanju.reconciliation.models import ReconciliationRun, Resolution, RunStatus, RunTrigger

log = structlog.get_logger(__name__)

Progress = Callable[[str], None]
"""Told what the job is doing, one line of English at a time (the command prints it)."""


def _quiet(_message: str) -> None:
    return None


@dataclass
class RunResult:
    """What one provider's run of a day came to."""

    run_id: int
    provider: str
    day: dt.date
    status: RunStatus
    report: Report | None
    credited: int = 0
    cleared: int = 0
    open: int = 0  # mismatches of this provider and day still open after the run
    problems: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)  # what it found, acted on

    def as_json(self) -> dict[str, Any]:
        """The run for ``--json`` (stable keys)."""
        report = self.report
        counts = {name: getattr(report, name) if report else 0 for name in (
            "bill_payments", "bill_payments_fen", "bill_refunds", "bill_refunds_fen",
            "payments_matched", "payments_matched_fen", "refunds_matched",
            "refunds_matched_fen")}
        return {"run_id": self.run_id, "provider": self.provider, "day": self.day.isoformat(),
                "status": self.status.value, **counts,
                "mismatches": len(report.mismatches) if report else 0,
                "credited": self.credited, "cleared": self.cleared, "open": self.open,
                "problems": self.problems, "findings": self.findings}


# --- bills ------------------------------------------------------------------------------------


@dataclass
class _Bills:
    today: list[BillLine]
    previous: list[BillLine]
    merchant_ids: set[str] | None  # None: the bill covers every merchant
    problems: list[dict[str, Any]]


def _download(gateway: Gateway, day: dt.date, merchant: MerchantRoute | None
              ) -> tuple[list[BillLine], list[BillLine]]:
    today = gateway.download_bill(day=day, merchant=merchant)
    previous = gateway.download_bill(day=day - dt.timedelta(days=1), merchant=merchant)
    return today, previous


def _bills(*, database: Database, gateway: Gateway, day: dt.date, secret_key: str,
           progress: Progress) -> _Bills:
    """The day's and the day before's bills: across merchants if the provider has such a
    bill, else merchant by merchant (a merchant whose bill fails is left out and named)."""
    progress(f"Downloading the {gateway.name} bills of {day} and the day before")
    try:
        today, previous = _download(gateway, day, None)
        return _Bills(today, previous, None, [])
    except GatewayError as exc:
        if exc.code != "payment_merchant_required":
            raise
    with database.transaction(write=False) as session:
        merchants, unreadable = payment_routes.approved_merchant_routes(
            session=session, provider=gateway.name, secret_key=secret_key)
    bills = _Bills([], [], set(), [
        {"code": "route_unreadable", "merchant_id": m} for m in unreadable])
    for merchant in merchants:
        progress(f"Downloading the {gateway.name} bills of merchant {merchant.merchant_id}")
        try:
            today, previous = _download(gateway, day, merchant)
        except GatewayError as exc:
            log.warning("reconciliation.bill_failed", provider=gateway.name,
                        merchant_id=merchant.merchant_id, code=exc.code)
            bills.problems.append({"code": "bill_failed", "merchant_id": merchant.merchant_id,
                                   "error": exc.code})
            continue
        bills.today += today
        bills.previous += previous
        assert bills.merchant_ids is not None  # noqa: S101 - set above
        bills.merchant_ids.add(merchant.merchant_id)
    return bills


# --- acting on mismatches -------------------------------------------------------------------


def _gift_written(session: Session, order_id: str) -> bool:
    return session.scalar(select(CampaignGift.id).where(CampaignGift.order_id == order_id)
                          ) is not None


def credit(*, session: Session, mismatch: Mismatch, run: ReconciliationRun,
           hash_payer: gift_flows.PayerHasher) -> tuple[str, Resolution | None]:
    """Credit a payment the provider took and we did not, through the one exactly-once
    intake; a giving-day order's gift is written by the engine's batch in this transaction.
    Returns the intake's outcome and the resolution (None: not credited, still open)."""
    report = dataclasses.replace(mismatch.payment_report(),
                                 event_id=f"bill:{run.id}:{mismatch.out_trade_no}")
    applied = gift_flows.apply_report(session=session, report=report, hash_payer=hash_payer)
    credited_now = applied.outcome == "credited"
    if applied.gift is not None:
        [result] = apply_batch(session, [applied.gift], worker="reconciliation")
        credited_now = result.outcome == "credited"
    intent = session.get(PaymentIntent, mismatch.out_trade_no)
    done = (intent is not None and intent.status is IntentStatus.SUCCEEDED
            and (intent.campaign_id is None or _gift_written(session, intent.id)))
    if not done:
        return applied.outcome, None
    return applied.outcome, Resolution.CREDITED if credited_now else Resolution.ALREADY_CREDITED


def _settle_refund(*, database: Database, gateway: Gateway, run_id: int, mismatch: Mismatch,
                   secret_key: str, hash_payer: gift_flows.PayerHasher) -> Resolution | None:
    refund_id = mismatch.out_refund_no or ""
    try:
        applied = gift_flows.settle_refund_by_query(
            database=database, gateway=gateway, refund_id=refund_id, secret_key=secret_key,
            hash_payer=hash_payer)
        attempt = applied.outcome if applied is not None else "refund_not_settled"
    except GatewayError as exc:
        attempt = exc.code
    assert mismatch.line is not None  # noqa: S101 - a settle_refund mismatch has its line
    wanted = bill_refund_state(mismatch.line)
    with database.transaction() as session:
        run = session.get_one(ReconciliationRun, run_id)
        refund = session.get(Refund, refund_id)
        settled = refund is not None and (
            (wanted is RefundState.SUCCEEDED and refund.status.value == "succeeded")
            or (wanted is RefundState.FAILED and refund.status.value == "failed"))
        resolution = Resolution.REFUND_SETTLED if settled else None
        service.do_record_mismatch(session=session, run=run, mismatch=mismatch,
                                   attempt=attempt, resolution=resolution)
    return resolution


def _finding(mismatch: Mismatch, attempt: str, resolution: Resolution | None
             ) -> dict[str, Any]:
    return {"kind": mismatch.kind.value, "action": mismatch.action.value,
            "out_trade_no": mismatch.out_trade_no, "out_refund_no": mismatch.out_refund_no,
            "occurrence": mismatch.occurrence, "attempt": attempt,
            "resolution": resolution.value if resolution else None}


# --- one provider's day ---------------------------------------------------------------------


def reconcile_day(*, database: Database, gateways: Mapping[str, Gateway], day: dt.date,
                  secret_key: str, hash_payer: gift_flows.PayerHasher,
                  provider: str | None = None, trigger: RunTrigger = RunTrigger.COMMAND,
                  claim: bool = False, progress: Progress = _quiet,
                  day_window: dt.timedelta = DAY_WINDOW) -> list[RunResult]:
    """Reconcile ``day`` (China time) for ``provider``, or for every gateway in ``gateways``.

    ``claim``: the scheduled job's — a provider's day already claimed (by this or another
    process) is skipped. Raises InvalidInput ``unknown_provider`` for a provider that is not
    configured. A run that cannot match (no bill, a bill no day can have) is recorded failed.
    """
    if provider is not None and provider not in gateways:
        raise InvalidInput("Unknown payment provider: %(name)s", code="unknown_provider",
                           field="provider", params={"name": provider})
    names = [provider] if provider is not None else sorted(gateways)
    results = []
    for name in names:
        result = _reconcile_provider(
            database=database, gateway=gateways[name], day=day, secret_key=secret_key,
            hash_payer=hash_payer, trigger=trigger, claim=claim, progress=progress,
            day_window=day_window)
        if result is not None:
            results.append(result)
    return results


def _reconcile_provider(*, database: Database, gateway: Gateway, day: dt.date,
                        secret_key: str, hash_payer: gift_flows.PayerHasher,
                        trigger: RunTrigger, claim: bool, progress: Progress,
                        day_window: dt.timedelta) -> RunResult | None:
    if claim:
        with database.transaction(write=False) as session:
            if service.has_claim(session=session, provider=gateway.name, day=day):
                return None
    with database.transaction() as session:
        run = service.do_start_run(session=session, provider=gateway.name, day=day,
                                   trigger=trigger, claim=claim)
        if run is None:
            return None
        run_id = run.id
    try:
        return _run(database=database, gateway=gateway, run_id=run_id, day=day,
                    secret_key=secret_key, hash_payer=hash_payer, progress=progress,
                    day_window=day_window)
    except (GatewayError, ReconcileError) as exc:
        code = "bill_failed" if isinstance(exc, GatewayError) else "bill_refused"
        problem = {"code": code, "error": exc.code, "detail": str(exc.message)}
        log.warning("reconciliation.run_failed", provider=gateway.name, day=day.isoformat(),
                    code=exc.code)
        progress(f"The {gateway.name} run of {day} failed: {exc.code}")
        retry = isinstance(exc, GatewayError) and exc.retryable
        return _fail(database, run_id, gateway.name, day, [problem], release_claim=retry)
    except Exception:
        log.exception("reconciliation.run_error", provider=gateway.name, day=day.isoformat())
        _fail(database, run_id, gateway.name, day, [{"code": "internal_error"}],
              release_claim=True)
        raise


def _fail(database: Database, run_id: int, provider: str, day: dt.date,
          problems: list[dict[str, Any]], *, release_claim: bool) -> RunResult:
    with database.transaction() as session:
        run = session.get_one(ReconciliationRun, run_id)
        service.do_finish_run(session=session, run=run, report=None, status=RunStatus.FAILED,
                              problems=problems, release_claim=release_claim)
        still_open = service.open_count(session=session, provider=provider, day=day)
    return RunResult(run_id=run_id, provider=provider, day=day, status=RunStatus.FAILED,
                     report=None, open=still_open, problems=problems)


def _run(*, database: Database, gateway: Gateway, run_id: int, day: dt.date, secret_key: str,
         hash_payer: gift_flows.PayerHasher, progress: Progress,
         day_window: dt.timedelta) -> RunResult:
    name = gateway.name
    bills = _bills(database=database, gateway=gateway, day=day, secret_key=secret_key,
                   progress=progress)
    problems = list(bills.problems)
    with database.transaction(write=False) as session:
        payments, refunds = service.read_ours(
            session=session, provider=name, day=day, merchant_ids=bills.merchant_ids,
            lines=[*bills.today, *bills.previous])
        if bills.merchant_ids is not None:
            left_out = service.unreconciled_merchants(
                session=session, provider=name, day=day, merchant_ids=bills.merchant_ids)
            problems += [{"code": "merchant_not_reconciled", "merchant_id": merchant,
                          "orders": n} for merchant, n in sorted(left_out.items())]
    progress(f"Matching {len(bills.today)} bill lines against {len(payments)} orders and "
             f"{len(refunds)} refunds")
    report = match(day, bills.today, payments, refunds, previous_lines=bills.previous,
                   day_window=day_window)

    findings: list[dict[str, Any]] = []
    credited = 0
    for mismatch in report.mismatches:
        if mismatch.action is Action.CREDIT:
            progress(f"Crediting {mismatch.out_trade_no} ({mismatch.kind.value})")
            attempt, resolution = _credit_in_transaction(database, run_id, mismatch, hash_payer)
            credited += resolution is Resolution.CREDITED
            findings.append(_finding(mismatch, attempt, resolution))
        elif mismatch.action is Action.SETTLE_REFUND:
            progress(f"Settling refund {mismatch.out_refund_no} by its query")
            resolution = _settle_refund(database=database, gateway=gateway, run_id=run_id,
                                        mismatch=mismatch, secret_key=secret_key,
                                        hash_payer=hash_payer)
            findings.append(_finding(mismatch, "", resolution))
    reviews = [m for m in report.mismatches if m.action is Action.REVIEW]
    status = RunStatus.INCOMPLETE if problems else RunStatus.COMPLETE
    with database.transaction() as session:
        run = session.get_one(ReconciliationRun, run_id)
        for mismatch in reviews:
            service.do_record_mismatch(session=session, run=run, mismatch=mismatch)
            findings.append(_finding(mismatch, "", None))
        cleared = service.do_finish_run(session=session, run=run, report=report,
                                        status=status, problems=problems, credited=credited)
        still_open = service.open_count(session=session, provider=name, day=day)
    log.info("reconciliation.run_finished", provider=name, day=day.isoformat(),
             status=status.value, mismatches=len(report.mismatches), credited=credited,
             open=still_open)
    return RunResult(run_id=run_id, provider=name, day=day, status=status, report=report,
                     credited=credited, cleared=cleared, open=still_open, problems=problems,
                     findings=findings)


def _credit_in_transaction(database: Database, run_id: int, mismatch: Mismatch,
                           hash_payer: gift_flows.PayerHasher) -> tuple[str, Resolution | None]:
    try:
        with database.transaction() as session:
            run = session.get_one(ReconciliationRun, run_id)
            # The mismatch's row first: locking protocol (docs/locking.md), domain rows are
            # locked before the credit posts, and none after.
            row = service.do_record_mismatch(session=session, run=run, mismatch=mismatch)
            attempt, resolution = credit(session=session, mismatch=mismatch, run=run,
                                         hash_payer=hash_payer)
            service.do_note_attempt(session=session, row=row, attempt=attempt,
                                    resolution=resolution)
            return attempt, resolution
    except DomainError as exc:
        # Rolled back: nothing credited. Recorded open, with why, for a reviewer.
        log.warning("reconciliation.credit_failed", order_id=mismatch.out_trade_no,
                    code=exc.code)
        with database.transaction() as session:
            run = session.get_one(ReconciliationRun, run_id)
            service.do_record_mismatch(session=session, run=run, mismatch=mismatch,
                                       attempt=exc.code)
        return exc.code, None


# --- the sweep ------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What one sweep asked and found."""

    orders: int = 0          # open orders asked about
    credited: int = 0        # … found paid and credited now
    closed: int = 0          # … found closed unpaid (marked failed)
    still_open: int = 0      # … not paid yet, or unknown to the provider
    refunds: int = 0         # pending refunds asked about
    refunds_settled: int = 0
    skipped: int = 0         # of a provider not configured here
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The sweep for ``--json``."""
        return dataclasses.asdict(self)


def _write_gift(database: Database, gift: PaidGift) -> bool:
    with database.transaction() as session:
        [result] = apply_batch(session, [gift], worker="sweep")
    return result.outcome == "credited"


def sweep(*, database: Database, gateways: Mapping[str, Gateway], older_than: dt.datetime,
          secret_key: str, hash_payer: gift_flows.PayerHasher, limit: int = 500,
          progress: Progress = _quiet) -> SweepResult:
    """Ask the providers about orders still open and refunds still pending since before
    ``older_than`` (at most ``limit`` of each), and apply their answers exactly once."""
    with database.transaction(write=False) as session:
        order_ids = gift_flows.open_orders(session=session, older_than=older_than, limit=limit)
        refund_ids = gift_flows.pending_refunds(session=session, older_than=older_than,
                                                limit=limit)
        providers = dict(session.execute(
            select(PaymentIntent.id, PaymentIntent.provider)
            .where(PaymentIntent.id.in_(order_ids))).all()) if order_ids else {}
        refund_providers = dict(session.execute(
            select(Refund.id, PaymentIntent.provider)
            .join(PaymentIntent, PaymentIntent.id == Refund.intent_id)
            .where(Refund.id.in_(refund_ids))).all()) if refund_ids else {}
    result = SweepResult()
    progress(f"Asking about {len(order_ids)} open orders and {len(refund_ids)} pending refunds")
    for order_id in order_ids:
        gateway = gateways.get(providers.get(order_id, ""))
        if gateway is None:
            result.skipped += 1
            continue
        result.orders += 1
        try:
            applied = gift_flows.settle_by_query(
                database=database, gateway=gateway, intent_id=order_id,
                secret_key=secret_key, hash_payer=hash_payer)
        except GatewayError as exc:
            result.errors.append({"order": order_id, "code": exc.code})
            continue
        if applied is None or applied.outcome == "not_paid":
            result.still_open += 1
        elif applied.outcome == "failed":
            result.closed += 1
        elif applied.outcome == "credited" or (
                applied.gift is not None and _write_gift(database, applied.gift)):
            result.credited += 1
        elif applied.outcome in gift_flows.TROUBLE:
            result.errors.append({"order": order_id, "code": applied.outcome})
    for refund_id in refund_ids:
        gateway = gateways.get(refund_providers.get(refund_id, ""))
        if gateway is None:
            result.skipped += 1
            continue
        result.refunds += 1
        try:
            refunded = gift_flows.settle_refund_by_query(
                database=database, gateway=gateway, refund_id=refund_id,
                secret_key=secret_key, hash_payer=hash_payer)
        except GatewayError as exc:
            result.errors.append({"refund": refund_id, "code": exc.code})
            continue
        if refunded is not None and refunded.outcome in ("refunded", "refund_failed"):
            result.refunds_settled += 1
        elif refunded is not None and refunded.outcome in gift_flows.TROUBLE:
            result.errors.append({"refund": refund_id, "code": refunded.outcome})
    log.info("reconciliation.sweep", **{k: v for k, v in result.as_json().items()
                                        if k != "errors"}, errors=len(result.errors))
    return result
