"""Daily reconciliation's matching core: a provider's bill against the platform's records.

Pure functions on plain data: no database, no clock, no provider call. The caller
(``reconciliation.flows``, behind ``shanju payments reconcile`` and the app's payments job)
reads the provider's bills through its gateway (``download_bill``), reads our payment orders
and refunds into :class:`OurPayment` / :class:`OurRefund`, calls :func:`match` and acts on the
:class:`Report`: it credits what the provider was paid and we never credited (through the
same exactly-once path as a callback, :meth:`Mismatch.payment_report`), settles refunds the
bill shows finished and records the rest for reviewers; the command exits non-zero while a
mismatch of the day is open. docs/reconciliation.md states the rules for people.

**The day boundary.** A bill covers one China-time (Asia/Shanghai) day and dates a payment by
the provider's own time; our ``paid_at`` may differ from it (a late callback stamped by our
clock, a clock a little fast). So:

* every line of day D's bill is matched to our record by its order number, whatever the day
  of our record; the run of D checks the pair (amount, merchant, transaction id, status);
* every record of ours that must be on a bill (a paid payment, a succeeded refund) is checked
  by exactly one run: the run of the China day of ``paid_at + day_window``. That run looks for
  it on its own bill and on the previous day's (``previous_lines``), and reports it missing
  only when it is on neither.

A record is therefore found as long as our time is at most ``day_window`` earlier than the
provider's and at most ``24 h − day_window`` later. A record near midnight is neither missed
nor reported twice: the runs of D and D+1 own half-open windows of our time that never
overlap, ``[D − day_window, D + 1 − day_window)`` and the next.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from shanju.core.clock import CHINA_TZ
from shanju.core.errors import DomainError
from shanju.core.i18n import N_
from shanju.payments import alipay, wechatpay
from shanju.payments.gateway import BillKind, BillLine, PaymentReport, PaymentState, RefundState

DAY_WINDOW = dt.timedelta(minutes=5)
"""How much earlier than the provider's time our record's time may be (clocks disagree)."""

MAX_DAY_WINDOW = dt.timedelta(hours=12)

# The bill's refund status word → the refund's state. WeChat Pay's bill lists a refund on the
# day it accepted it, with its status when the bill was made; Alipay's lists only refunds that
# moved money, on the day they did (its word is the business type 退款).
BILL_REFUND_STATES: Mapping[str, Mapping[str, RefundState]] = {
    wechatpay.PROVIDER: wechatpay.REFUND_STATES,
    alipay.PROVIDER: {"退款": RefundState.SUCCEEDED},
}


class ReconcileError(DomainError):
    """A bill handed to reconciliation is not what a bill of that day can be."""

    code = "reconcile_bad_bill"


class OurPaymentStatus(enum.StrEnum):
    """Our view of a payment order."""

    PAID = "paid"      # credited
    UNPAID = "unpaid"  # opened at the provider, no payment seen yet
    CLOSED = "closed"  # expired or cancelled on our side: we will not credit it


class OurRefundStatus(enum.StrEnum):
    """Our view of a refund."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _check_time(value: dt.datetime | None, name: str) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _check_fen(value: int, name: str) -> None:
    if type(value) is not int or value <= 0:
        raise ValueError(f"{name} must be a positive integer number of fen")


@dataclass(frozen=True, slots=True)
class OurPayment:
    """One payment order of ours (``out_trade_no`` is the intent's ``pi_…`` id).

    ``paid_at`` is the provider's payment time as its callback or query stated it, or else the
    time we credited it; it is required when ``status`` is paid. ``merchant_id`` is the
    sub-merchant (WeChat ``sub_mchid``, Alipay PID) the order was opened for.
    """

    provider: str
    out_trade_no: str
    amount_fen: int
    merchant_id: str
    status: OurPaymentStatus
    provider_txn_id: str | None = None
    paid_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        _check_fen(self.amount_fen, "amount_fen")
        _check_time(self.paid_at, "paid_at")
        if self.status is OurPaymentStatus.PAID and self.paid_at is None:
            raise ValueError("a paid payment needs its paid_at")


@dataclass(frozen=True, slots=True)
class OurRefund:
    """One refund of ours (``out_refund_no`` is its ``re_…`` id) of the order ``out_trade_no``.

    ``happened_at`` is the time the provider's bill dates the refund, as far as we know it:
    for WeChat Pay when it accepted the refund request, for Alipay when the refund succeeded.
    Only a succeeded refund must be on a bill; a pending one is the refund flow's to settle.
    """

    provider: str
    out_refund_no: str
    out_trade_no: str
    amount_fen: int
    status: OurRefundStatus
    happened_at: dt.datetime

    def __post_init__(self) -> None:
        _check_fen(self.amount_fen, "amount_fen")
        _check_time(self.happened_at, "happened_at")


class MismatchKind(enum.StrEnum):
    """What is wrong between the bill and our records (stable words: the CLI prints them)."""

    MISSING_OURS = "missing_ours"            # the provider was paid; we never credited it
    MISSING_THEIRS = "missing_theirs"        # we credited a payment no bill has
    AMOUNT_MISMATCH = "amount_mismatch"      # a payment's or a refund's amount differs
    MERCHANT_MISMATCH = "merchant_mismatch"  # the money went to another sub-merchant
    TXN_MISMATCH = "txn_mismatch"            # the provider's transaction id differs from ours
    STATUS_MISMATCH = "status_mismatch"      # paid/refunded at one side, not at the other
    REFUND_MISSING_OURS = "refund_missing_ours"      # a refund we never asked for
    REFUND_MISSING_THEIRS = "refund_missing_theirs"  # a refund we think done, on no bill
    DUPLICATE_LINE = "duplicate_line"        # the same trade or refund billed twice


_KIND_ORDER = {kind: index for index, kind in enumerate(MismatchKind)}


class Action(enum.StrEnum):
    """Who acts on a mismatch."""

    CREDIT = "credit"                # the job credits it through the exactly-once path
    SETTLE_REFUND = "settle_refund"  # the job settles the refund (after a refund query)
    REVIEW = "review"                # a reviewer: money may have gone where it should not


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One disagreement, with both sides as far as they exist.

    ``line`` is the bill's side (None when the bill lacks it); ``payment`` / ``refund`` ours
    (None when we lack it). ``out_refund_no`` is set for refund mismatches. ``occurrence``
    numbers the extra copies of a duplicated line (1, 2, …) and is 0 otherwise.
    """

    kind: MismatchKind
    action: Action
    provider: str
    out_trade_no: str
    out_refund_no: str | None = None
    line: BillLine | None = None
    payment: OurPayment | None = None
    refund: OurRefund | None = None
    occurrence: int = 0

    def sort_key(self) -> tuple[str, str, str, int, int]:
        """The report's order: by trade, its payment before its refunds, then by kind."""
        return (self.provider, self.out_trade_no, self.out_refund_no or "",
                _KIND_ORDER[self.kind], self.occurrence)

    def payment_report(self) -> PaymentReport:
        """The bill's statement of a payment to credit, as the exactly-once intake takes it.

        Only for :attr:`Action.CREDIT` mismatches. The bill is the provider's (downloaded
        through its signed API); the caller may still confirm with ``query_payment`` first.
        """
        if self.action is not Action.CREDIT or self.line is None:
            raise ValueError(f"a {self.kind} mismatch is not credited")
        line = self.line
        return PaymentReport(provider=line.provider, out_trade_no=line.out_trade_no,
                             state=PaymentState.PAID, amount_fen=line.amount_fen,
                             merchant_id=line.merchant_id, provider_txn_id=line.provider_txn_id,
                             paid_at=line.happened_at,
                             raw={"source": "bill", "status": line.status})


@dataclass(frozen=True, slots=True)
class Report:
    """What one day's reconciliation found.

    ``payments_matched`` / ``refunds_matched`` count the lines of the day's bill that agree
    with our record in every respect (their fen summed in ``…_fen``); ``bill_…`` count every
    line of the bill, duplicates included. A refund line counts whatever its state.
    """

    day: dt.date
    bill_payments: int
    bill_payments_fen: int
    bill_refunds: int
    bill_refunds_fen: int
    payments_matched: int
    payments_matched_fen: int
    refunds_matched: int
    refunds_matched_fen: int
    mismatches: tuple[Mismatch, ...]
    resolved: frozenset[Mismatch] = frozenset()

    @property
    def open(self) -> tuple[Mismatch, ...]:
        """The mismatches nobody has resolved yet, in report order (the CLI fails on any)."""
        return tuple(m for m in self.mismatches if m not in self.resolved)

    def resolve(self, *mismatches: Mismatch) -> Report:
        """The same report with ``mismatches`` marked resolved (e.g. credited)."""
        unknown = [m for m in mismatches if m not in self.mismatches]
        if unknown:
            raise ValueError(f"not a mismatch of this report: {unknown[0]!r}")
        return dataclasses.replace(self, resolved=self.resolved | frozenset(mismatches))


def china_day(moment: dt.datetime) -> dt.date:
    """The China-time day of an aware moment (the day whose bill lists it)."""
    if moment.utcoffset() is None:
        raise ValueError("a naive time has no China-time day")
    return moment.astimezone(CHINA_TZ).date()


def owner_day(moment: dt.datetime, day_window: dt.timedelta) -> dt.date:
    """The day whose reconciliation checks that a record of ``moment`` is on a bill."""
    return china_day(moment + day_window)


def bill_refund_state(line: BillLine) -> RefundState:
    """The refund's state as the bill line states it (ReconcileError if the word is unknown)."""
    state = BILL_REFUND_STATES.get(line.provider, {}).get(line.status)
    if state is None:
        raise ReconcileError(
            N_("The bill's refund status %(status)s (%(provider)s) is not known."),
            code="bill_status_unknown", params={"status": line.status, "provider": line.provider},
            details={"out_trade_no": line.out_trade_no, "out_refund_no": line.out_refund_no})
    return state


_PaymentKey = tuple[str, str]            # provider, out_trade_no
_RefundKey = tuple[str, str, str]        # provider, out_trade_no, out_refund_no


def _payment_key(item: BillLine | OurPayment) -> _PaymentKey:
    return (item.provider, item.out_trade_no)


def _refund_key(line: BillLine) -> _RefundKey:
    if not line.out_refund_no:
        raise ReconcileError(N_("A refund line of the bill has no refund number."),
                             code="bill_line_malformed",
                             details={"out_trade_no": line.out_trade_no})
    return (line.provider, line.out_trade_no, line.out_refund_no)


def _line_order(line: BillLine) -> tuple[object, ...]:
    # Lines of one key in a canonical order, so that the "first" copy of a duplicated line
    # does not depend on the order the caller passed them in.
    return (line.happened_at, line.provider_txn_id, line.provider_refund_id or "",
            line.amount_fen, line.merchant_id, line.status)


def _check_lines(lines: Iterable[BillLine], day: dt.date) -> None:
    for line in lines:
        line_day = china_day(line.happened_at)
        if line_day != day:
            raise ReconcileError(N_("A line of the bill of %(day)s is dated %(line_day)s."),
                                 code="bill_line_outside_day",
                                 params={"day": day.isoformat(),
                                         "line_day": line_day.isoformat()},
                                 details={"out_trade_no": line.out_trade_no})


def match(day: dt.date, bill_lines: Sequence[BillLine], payments: Sequence[OurPayment],
          refunds: Sequence[OurRefund], *, previous_lines: Sequence[BillLine],
          day_window: dt.timedelta = DAY_WINDOW) -> Report:
    """Match the bill of ``day`` (China time) against our records: a :class:`Report`.

    ``bill_lines``: every line of the day's bills in scope (one provider's, or several
    providers' together). ``previous_lines``: the bills of the day before, same scope (empty
    on the first day). ``payments``: every order of ours that a line names, whatever its
    status, and every paid order whose ``paid_at`` lies in ``[D − day_window, D + 1 −
    day_window)`` — passing all orders paid from D − 1 to D + 1 is simplest and harmless.
    ``refunds``: likewise, every refund a line names and every succeeded refund dated in
    that window. The records must be of the bills' scope: a paid order of a merchant whose
    bill was not fetched would be reported missing on theirs.

    Raises ReconcileError ``bill_line_outside_day`` for a line not of its day,
    ``bill_status_unknown`` for a refund status word not known, ``bill_line_malformed`` for a
    refund line without its refund number; ValueError for our records given twice or a
    ``day_window`` outside [0, 12 h).
    """
    if not dt.timedelta(0) <= day_window < MAX_DAY_WINDOW:
        raise ValueError("day_window must be at least 0 and less than 12 hours")
    _check_lines(bill_lines, day)
    _check_lines(previous_lines, day - dt.timedelta(days=1))

    ours_payments: dict[_PaymentKey, OurPayment] = {}
    for payment in payments:
        if _payment_key(payment) in ours_payments:
            raise ValueError(f"payment {payment.out_trade_no} is given twice")
        ours_payments[_payment_key(payment)] = payment
    ours_refunded: dict[_RefundKey, OurRefund] = {}
    for refund in refunds:
        rkey = (refund.provider, refund.out_trade_no, refund.out_refund_no)
        if rkey in ours_refunded:
            raise ValueError(f"refund {refund.out_refund_no} is given twice")
        ours_refunded[rkey] = refund

    payment_lines: dict[_PaymentKey, list[BillLine]] = defaultdict(list)
    refund_lines: dict[_RefundKey, list[BillLine]] = defaultdict(list)
    for line in bill_lines:
        if line.kind is BillKind.PAYMENT:
            payment_lines[_payment_key(line)].append(line)
        else:
            refund_lines[_refund_key(line)].append(line)
    previous_payments = {_payment_key(line) for line in previous_lines
                         if line.kind is BillKind.PAYMENT}
    previous_refunds = {_refund_key(line) for line in previous_lines
                        if line.kind is BillKind.REFUND}

    found: list[Mismatch] = []
    matched: Counter[str] = Counter()

    # The day's payment lines: each key once, its extra copies as duplicates.
    for key, lines in payment_lines.items():
        lines.sort(key=_line_order)
        provider, out_trade_no = key
        extra = lines if key in previous_payments else lines[1:]
        found.extend(Mismatch(MismatchKind.DUPLICATE_LINE, Action.REVIEW, provider,
                              out_trade_no, line=line, payment=ours_payments.get(key),
                              occurrence=index)
                     for index, line in enumerate(extra, start=1))
        if key in previous_payments:
            continue  # the pair was checked by the previous day's run
        problems = _check_payment(lines[0], ours_payments.get(key))
        found.extend(problems)
        if not problems:
            matched["payments"] += 1
            matched["payments_fen"] += lines[0].amount_fen

    # The day's refund lines, likewise.
    for rkey, lines in refund_lines.items():
        lines.sort(key=_line_order)
        provider, out_trade_no, out_refund_no = rkey
        extra = lines if rkey in previous_refunds else lines[1:]
        found.extend(Mismatch(MismatchKind.DUPLICATE_LINE, Action.REVIEW, provider,
                              out_trade_no, out_refund_no, line=line,
                              refund=ours_refunded.get(rkey), occurrence=index)
                     for index, line in enumerate(extra, start=1))
        if rkey in previous_refunds:
            continue
        problems = _check_refund(lines[0], ours_refunded.get(rkey))
        found.extend(problems)
        if not problems:
            matched["refunds"] += 1
            matched["refunds_fen"] += lines[0].amount_fen

    # Our records this run owns: each must be on this day's bill or the previous day's.
    for key, payment in ours_payments.items():
        if (payment.status is OurPaymentStatus.PAID and payment.paid_at is not None
                and owner_day(payment.paid_at, day_window) == day
                and key not in payment_lines and key not in previous_payments):
            found.append(Mismatch(MismatchKind.MISSING_THEIRS, Action.REVIEW, payment.provider,
                                  payment.out_trade_no, payment=payment))
    for rkey, refund in ours_refunded.items():
        if (refund.status is OurRefundStatus.SUCCEEDED
                and owner_day(refund.happened_at, day_window) == day
                and rkey not in refund_lines and rkey not in previous_refunds):
            found.append(Mismatch(MismatchKind.REFUND_MISSING_THEIRS, Action.REVIEW,
                                  refund.provider, refund.out_trade_no, refund.out_refund_no,
                                  refund=refund))

    payment_bill = [line for line in bill_lines if line.kind is BillKind.PAYMENT]
    refund_bill = [line for line in bill_lines if line.kind is BillKind.REFUND]
    return Report(
        day=day,
        bill_payments=len(payment_bill),
        bill_payments_fen=sum(line.amount_fen for line in payment_bill),
        bill_refunds=len(refund_bill),
        bill_refunds_fen=sum(line.amount_fen for line in refund_bill),
        payments_matched=matched["payments"], payments_matched_fen=matched["payments_fen"],
        refunds_matched=matched["refunds"], refunds_matched_fen=matched["refunds_fen"],
        mismatches=tuple(sorted(found, key=Mismatch.sort_key)),
    )


def _check_payment(line: BillLine, ours: OurPayment | None) -> list[Mismatch]:
    """What is wrong between a payment line and our order (a bill's payment line is paid)."""
    provider, out_trade_no = line.provider, line.out_trade_no
    if ours is None:
        return [Mismatch(MismatchKind.MISSING_OURS, Action.CREDIT, provider, out_trade_no,
                         line=line)]
    if ours.status is not OurPaymentStatus.PAID:
        # An open order paid without our knowing (its callback lost) is credited; a closed
        # one was given up on our side and needs a person (credit it, or refund the donor).
        action = Action.CREDIT if ours.status is OurPaymentStatus.UNPAID else Action.REVIEW
        return [Mismatch(MismatchKind.STATUS_MISMATCH, action, provider, out_trade_no,
                         line=line, payment=ours)]
    found: list[Mismatch] = []
    if line.amount_fen != ours.amount_fen:
        found.append(Mismatch(MismatchKind.AMOUNT_MISMATCH, Action.REVIEW, provider,
                              out_trade_no, line=line, payment=ours))
    if line.merchant_id != ours.merchant_id:
        found.append(Mismatch(MismatchKind.MERCHANT_MISMATCH, Action.REVIEW, provider,
                              out_trade_no, line=line, payment=ours))
    if ours.provider_txn_id is not None and line.provider_txn_id != ours.provider_txn_id:
        found.append(Mismatch(MismatchKind.TXN_MISMATCH, Action.REVIEW, provider,
                              out_trade_no, line=line, payment=ours))
    return found


def _check_refund(line: BillLine, ours: OurRefund | None) -> list[Mismatch]:
    """What is wrong between a refund line and our refund."""
    provider, out_trade_no, out_refund_no = line.provider, line.out_trade_no, line.out_refund_no
    theirs = bill_refund_state(line)
    if ours is None:
        return [Mismatch(MismatchKind.REFUND_MISSING_OURS, Action.REVIEW, provider,
                         out_trade_no, out_refund_no, line=line)]
    found: list[Mismatch] = []
    if line.amount_fen != ours.amount_fen:
        found.append(Mismatch(MismatchKind.AMOUNT_MISMATCH, Action.REVIEW, provider,
                              out_trade_no, out_refund_no, line=line, refund=ours))
    # A line still processing contradicts nothing: the bill is a snapshot taken before the
    # refund ended, and our side may already know how it ended.
    final = {RefundState.SUCCEEDED: OurRefundStatus.SUCCEEDED,
             RefundState.FAILED: OurRefundStatus.FAILED}.get(theirs)
    if final is not None and ours.status is not final:
        # Pending with us: the refund flow settles it as the provider says. Finished the
        # other way: money moved that our ledger says did not, or the reverse.
        action = Action.SETTLE_REFUND if ours.status is OurRefundStatus.PENDING else Action.REVIEW
        found.append(Mismatch(MismatchKind.STATUS_MISMATCH, action, provider, out_trade_no,
                              out_refund_no, line=line, refund=ours))
    return found
