"""Daily reconciliation's matching core (``payments/reconcile.py``): bills against our records.

No database: the core works on plain data. Each mismatch kind has a minimal example, the day
boundary has its cases (a late callback, a fast clock, a record missing near midnight), and a
Hypothesis test builds a consistent world of payments and refunds over three China-time days,
derives the providers' bills from it, perturbs bills and records, and checks that the runs of
every day together report each perturbation exactly once, with its kind, and nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shanju.core.clock import CHINA_TZ
from shanju.payments.gateway import BillKind, BillLine, PaymentState
from shanju.payments.reconcile import (
    Action,
    Mismatch,
    MismatchKind,
    OurPayment,
    OurPaymentStatus,
    OurRefund,
    OurRefundStatus,
    ReconcileError,
    Report,
    match,
)

D = dt.date(2026, 3, 14)
ONE_DAY = dt.timedelta(days=1)
W = dt.timedelta(minutes=5)
WX, ALI = "wechatpay", "alipay"
M1, M2 = "1900000109", "1900000110"


def cn(day: dt.date, clock: str) -> dt.datetime:
    """A China-time moment of ``day`` (``"23:59:58"``), as the aware UTC time lines carry."""
    hour, minute, second = (int(part) for part in clock.split(":"))
    return dt.datetime(day.year, day.month, day.day, hour, minute, second,
                       tzinfo=CHINA_TZ).astimezone(dt.UTC)


def pay_line(no: str, fen: int, at: dt.datetime, *, merchant: str = M1, provider: str = WX,
             txn: str | None = None) -> BillLine:
    return BillLine(provider=provider, kind=BillKind.PAYMENT, out_trade_no=no,
                    provider_txn_id=txn or f"tx_{no}", amount_fen=fen, merchant_id=merchant,
                    happened_at=at, status="SUCCESS" if provider == WX else "交易")


def refund_line(no: str, refund_no: str, fen: int, at: dt.datetime, *, provider: str = WX,
                status: str | None = None) -> BillLine:
    return BillLine(provider=provider, kind=BillKind.REFUND, out_trade_no=no,
                    provider_txn_id=f"tx_{no}", amount_fen=fen, merchant_id=M1,
                    happened_at=at, out_refund_no=refund_no,
                    provider_refund_id=f"rf_{refund_no}",
                    status=status or ("SUCCESS" if provider == WX else "退款"))


def paid(no: str, fen: int, at: dt.datetime, *, merchant: str = M1, provider: str = WX,
         txn: str | None = None) -> OurPayment:
    return OurPayment(provider=provider, out_trade_no=no, amount_fen=fen, merchant_id=merchant,
                      status=OurPaymentStatus.PAID, provider_txn_id=txn or f"tx_{no}",
                      paid_at=at)


def refunded(no: str, refund_no: str, fen: int, at: dt.datetime, *, provider: str = WX,
             status: OurRefundStatus = OurRefundStatus.SUCCEEDED) -> OurRefund:
    return OurRefund(provider=provider, out_refund_no=refund_no, out_trade_no=no,
                     amount_fen=fen, status=status, happened_at=at)


def run(day: dt.date, lines: Sequence[BillLine], payments: Sequence[OurPayment] = (),
        refunds: Sequence[OurRefund] = (), *, previous: Sequence[BillLine] = (),
        window: dt.timedelta = W) -> Report:
    return match(day, lines, payments, refunds, previous_lines=previous, day_window=window)


def kinds(report: Report) -> list[tuple[MismatchKind, str, str | None]]:
    return [(m.kind, m.out_trade_no, m.out_refund_no) for m in report.mismatches]


# --- a clean day -----------------------------------------------------------------------------


def test_a_clean_day_reports_nothing_and_counts_what_matched() -> None:
    lines = [pay_line("pi_a", 10000, cn(D, "09:00:00")),
             pay_line("pi_b", 2345, cn(D, "10:00:00"), provider=ALI, merchant="2088001"),
             refund_line("pi_a", "re_a1", 4000, cn(D, "11:00:00")),
             refund_line("pi_old", "re_o1", 500, cn(D, "12:00:00"), status="PROCESSING")]
    payments = [paid("pi_a", 10000, cn(D, "09:00:01")),
                paid("pi_b", 2345, cn(D, "10:00:00"), provider=ALI, merchant="2088001"),
                # not paid, on no bill: nothing to say about it
                OurPayment(provider=WX, out_trade_no="pi_open", amount_fen=100, merchant_id=M1,
                           status=OurPaymentStatus.UNPAID)]
    refunds = [refunded("pi_a", "re_a1", 4000, cn(D, "11:00:00")),
               refunded("pi_old", "re_o1", 500, cn(D, "12:00:00"),
                        status=OurRefundStatus.PENDING)]
    report = run(D, lines, payments, refunds)
    assert report.mismatches == ()
    assert report.open == ()
    assert (report.bill_payments, report.bill_payments_fen) == (2, 12345)
    assert (report.bill_refunds, report.bill_refunds_fen) == (2, 4500)
    assert (report.payments_matched, report.payments_matched_fen) == (2, 12345)
    assert (report.refunds_matched, report.refunds_matched_fen) == (2, 4500)


def test_an_empty_day_is_clean() -> None:
    report = run(D, [])
    assert report.mismatches == () and report.bill_payments == 0 and report.payments_matched == 0


# --- each kind, minimally ----------------------------------------------------------------------


def test_missing_ours_carries_what_crediting_needs() -> None:
    line = pay_line("pi_lost", 5000, cn(D, "14:00:00"), txn="4200001")
    report = run(D, [line])
    [mismatch] = report.mismatches
    assert (mismatch.kind, mismatch.action) == (MismatchKind.MISSING_OURS, Action.CREDIT)
    assert mismatch.line == line and mismatch.payment is None
    assert report.payments_matched == 0 and report.open == (mismatch,)
    statement = mismatch.payment_report()
    assert (statement.provider, statement.out_trade_no, statement.state, statement.amount_fen,
            statement.merchant_id, statement.provider_txn_id, statement.paid_at) == (
        WX, "pi_lost", PaymentState.PAID, 5000, M1, "4200001", cn(D, "14:00:00"))


def test_missing_theirs() -> None:
    ours = paid("pi_ghost", 5000, cn(D, "14:00:00"))
    [mismatch] = run(D, [], [ours]).mismatches
    assert (mismatch.kind, mismatch.action) == (MismatchKind.MISSING_THEIRS, Action.REVIEW)
    assert mismatch.payment == ours and mismatch.line is None
    with pytest.raises(ValueError, match="not credited"):
        mismatch.payment_report()


def test_amount_mismatch_of_a_payment() -> None:
    report = run(D, [pay_line("pi_a", 5001, cn(D, "14:00:00"))],
                 [paid("pi_a", 5000, cn(D, "14:00:00"))])
    assert kinds(report) == [(MismatchKind.AMOUNT_MISMATCH, "pi_a", None)]
    assert report.payments_matched == 0


def test_amount_mismatch_of_a_refund() -> None:
    report = run(D, [refund_line("pi_a", "re_1", 300, cn(D, "14:00:00"))], [],
                 [refunded("pi_a", "re_1", 200, cn(D, "14:00:00"))])
    assert kinds(report) == [(MismatchKind.AMOUNT_MISMATCH, "pi_a", "re_1")]
    assert report.refunds_matched == 0


def test_merchant_mismatch() -> None:
    report = run(D, [pay_line("pi_a", 5000, cn(D, "14:00:00"), merchant=M2)],
                 [paid("pi_a", 5000, cn(D, "14:00:00"), merchant=M1)])
    assert kinds(report) == [(MismatchKind.MERCHANT_MISMATCH, "pi_a", None)]


def test_txn_mismatch_and_an_unknown_txn_id_is_not_one() -> None:
    line = pay_line("pi_a", 5000, cn(D, "14:00:00"), txn="4200002")
    report = run(D, [line], [paid("pi_a", 5000, cn(D, "14:00:00"), txn="4200001")])
    assert kinds(report) == [(MismatchKind.TXN_MISMATCH, "pi_a", None)]
    ours = dataclasses.replace(paid("pi_a", 5000, cn(D, "14:00:00")), provider_txn_id=None)
    assert run(D, [line], [ours]).mismatches == ()


def test_several_faults_of_one_payment_are_each_reported() -> None:
    report = run(D, [pay_line("pi_a", 5001, cn(D, "14:00:00"), merchant=M2)],
                 [paid("pi_a", 5000, cn(D, "14:00:00"))])
    assert kinds(report) == [(MismatchKind.AMOUNT_MISMATCH, "pi_a", None),
                             (MismatchKind.MERCHANT_MISMATCH, "pi_a", None)]


@pytest.mark.parametrize(("ours", "action"), [(OurPaymentStatus.UNPAID, Action.CREDIT),
                                              (OurPaymentStatus.CLOSED, Action.REVIEW)])
def test_status_mismatch_of_a_payment_paid_at_the_provider(ours: OurPaymentStatus,
                                                           action: Action) -> None:
    line = pay_line("pi_a", 5000, cn(D, "14:00:00"))
    record = OurPayment(provider=WX, out_trade_no="pi_a", amount_fen=5000, merchant_id=M1,
                        status=ours)
    [mismatch] = run(D, [line], [record]).mismatches
    assert (mismatch.kind, mismatch.action) == (MismatchKind.STATUS_MISMATCH, action)
    if action is Action.CREDIT:
        assert mismatch.payment_report().amount_fen == 5000


@pytest.mark.parametrize(("theirs", "ours", "action"), [
    ("SUCCESS", OurRefundStatus.PENDING, Action.SETTLE_REFUND),   # its callback was lost
    ("SUCCESS", OurRefundStatus.FAILED, Action.REVIEW),           # money left; we think not
    ("CLOSED", OurRefundStatus.SUCCEEDED, Action.REVIEW),         # we think it left; it did not
    ("ABNORMAL", OurRefundStatus.PENDING, Action.SETTLE_REFUND),
    ("SUCCESS", OurRefundStatus.SUCCEEDED, None),
    ("CLOSED", OurRefundStatus.FAILED, None),
    # A line still processing is a snapshot taken before the refund ended: no contradiction.
    ("PROCESSING", OurRefundStatus.PENDING, None),
    ("PROCESSING", OurRefundStatus.SUCCEEDED, None),
    ("PROCESSING", OurRefundStatus.FAILED, None),
])
def test_status_of_a_refund(theirs: str, ours: OurRefundStatus, action: Action | None) -> None:
    report = run(D, [refund_line("pi_a", "re_1", 300, cn(D, "14:00:00"), status=theirs)], [],
                 [refunded("pi_a", "re_1", 300, cn(D, "14:00:00"), status=ours)])
    if action is None:
        assert report.mismatches == () and report.refunds_matched == 1
    else:
        [mismatch] = report.mismatches
        assert (mismatch.kind, mismatch.action) == (MismatchKind.STATUS_MISMATCH, action)
        assert mismatch.out_refund_no == "re_1"


def test_refund_missing_ours() -> None:
    [mismatch] = run(D, [refund_line("pi_a", "re_x", 300, cn(D, "14:00:00"))]).mismatches
    assert (mismatch.kind, mismatch.action) == (MismatchKind.REFUND_MISSING_OURS, Action.REVIEW)


def test_refund_missing_theirs_only_for_a_refund_we_think_done() -> None:
    refunds = [refunded("pi_a", "re_1", 300, cn(D, "14:00:00")),
               refunded("pi_a", "re_2", 300, cn(D, "14:00:00"), status=OurRefundStatus.PENDING),
               refunded("pi_a", "re_3", 300, cn(D, "14:00:00"), status=OurRefundStatus.FAILED)]
    report = run(D, [], [], refunds)
    assert kinds(report) == [(MismatchKind.REFUND_MISSING_THEIRS, "pi_a", "re_1")]


def test_duplicate_lines_are_reported_per_extra_copy() -> None:
    line = pay_line("pi_a", 5000, cn(D, "14:00:00"))
    twice = refund_line("pi_a", "re_1", 300, cn(D, "15:00:00"))
    report = run(D, [line, line, line, twice, twice], [paid("pi_a", 5000, cn(D, "14:00:00"))],
                 [refunded("pi_a", "re_1", 300, cn(D, "15:00:00"))])
    assert [(m.kind, m.out_refund_no, m.occurrence) for m in report.mismatches] == [
        (MismatchKind.DUPLICATE_LINE, None, 1), (MismatchKind.DUPLICATE_LINE, None, 2),
        (MismatchKind.DUPLICATE_LINE, "re_1", 1)]
    # The first copy is matched; the bill's totals count every copy.
    assert (report.payments_matched, report.refunds_matched) == (1, 1)
    assert (report.bill_payments, report.bill_payments_fen) == (3, 15000)


def test_a_trade_on_two_days_bills_is_a_duplicate_on_the_second() -> None:
    ours = paid("pi_a", 5000, cn(D - ONE_DAY, "23:00:00"))
    before = [pay_line("pi_a", 5000, cn(D - ONE_DAY, "23:00:00"))]
    again = pay_line("pi_a", 5001, cn(D, "01:00:00"))  # its amount is not checked twice
    report = run(D, [again], [ours], previous=before)
    assert [(m.kind, m.occurrence) for m in report.mismatches] == [
        (MismatchKind.DUPLICATE_LINE, 1)]
    assert run(D - ONE_DAY, before, [ours]).mismatches == ()


# --- partial refunds ---------------------------------------------------------------------------


def test_several_refunds_of_one_trade_are_matched_one_by_one() -> None:
    payment = paid("pi_a", 10000, cn(D, "09:00:00"))
    lines = [pay_line("pi_a", 10000, cn(D, "09:00:00")),
             refund_line("pi_a", "re_1", 3000, cn(D, "10:00:00")),
             refund_line("pi_a", "re_2", 2000, cn(D, "11:00:00")),
             refund_line("pi_a", "re_3", 1000, cn(D, "12:00:00"))]
    refunds = [refunded("pi_a", "re_1", 3000, cn(D, "10:00:00")),
               refunded("pi_a", "re_2", 2000, cn(D, "11:00:00")),
               refunded("pi_a", "re_3", 1000, cn(D, "12:00:00"))]
    report = run(D, lines, [payment], refunds)
    assert report.mismatches == ()
    assert (report.refunds_matched, report.refunds_matched_fen) == (3, 6000)
    # One of three missing, another of a different amount: each is told apart by its number.
    report = run(D, [lines[0], lines[1], dataclasses.replace(lines[3], amount_fen=1100)],
                 [payment], refunds)
    assert kinds(report) == [(MismatchKind.REFUND_MISSING_THEIRS, "pi_a", "re_2"),
                             (MismatchKind.AMOUNT_MISMATCH, "pi_a", "re_3")]
    assert (report.refunds_matched, report.refunds_matched_fen) == (1, 3000)


def test_an_alipay_refund_without_request_number_is_keyed_by_its_trade() -> None:
    # Alipay names such a refund by the trade's out_trade_no (alipay._bill_line).
    line = refund_line("pi_a", "pi_a", 300, cn(D, "14:00:00"), provider=ALI)
    [mismatch] = run(D, [line]).mismatches
    assert (mismatch.kind, mismatch.out_refund_no) == (MismatchKind.REFUND_MISSING_OURS, "pi_a")


# --- the day boundary ----------------------------------------------------------------------------


def test_a_late_callback_across_midnight_is_no_mismatch_on_either_day() -> None:
    # The provider was paid at 23:59:58; its callback came at 00:00:05 and we stamped that.
    before = [pay_line("pi_a", 5000, cn(D - ONE_DAY, "23:59:58"))]
    ours = [paid("pi_a", 5000, cn(D, "00:00:05"))]
    earlier = run(D - ONE_DAY, before, ours)
    assert earlier.mismatches == () and earlier.payments_matched == 1
    assert run(D, [], ours, previous=before).mismatches == ()


def test_a_fast_clock_across_midnight_is_no_mismatch_on_either_day() -> None:
    # Our clock is 4 s ahead: we say 23:59:58 of D, the provider 00:00:02 of D + 1.
    after = [pay_line("pi_a", 5000, cn(D + ONE_DAY, "00:00:02"))]
    ours = [paid("pi_a", 5000, cn(D, "23:59:58"))]
    assert run(D, [], ours).mismatches == ()
    later = run(D + ONE_DAY, after, ours, previous=[])
    assert later.mismatches == () and later.payments_matched == 1


def test_a_record_just_after_midnight_missing_from_both_bills_is_reported_once() -> None:
    ours = [paid("pi_a", 5000, cn(D, "00:00:05"))]
    assert run(D - ONE_DAY, [], ours).mismatches == ()
    assert kinds(run(D, [], ours)) == [(MismatchKind.MISSING_THEIRS, "pi_a", None)]
    assert run(D + ONE_DAY, [], ours).mismatches == ()


def test_a_record_in_the_last_window_of_a_day_is_checked_by_the_next_day() -> None:
    ours = [paid("pi_a", 5000, cn(D, "23:55:00"))]  # exactly D + 1 − 5 min: owned by D + 1
    assert run(D, [], ours).mismatches == ()
    assert kinds(run(D + ONE_DAY, [], ours)) == [(MismatchKind.MISSING_THEIRS, "pi_a", None)]
    just_before = [paid("pi_a", 5000, cn(D, "23:54:59"))]
    assert kinds(run(D, [], just_before)) == [(MismatchKind.MISSING_THEIRS, "pi_a", None)]
    assert run(D + ONE_DAY, [], just_before).mismatches == ()


def test_a_succeeded_refund_near_midnight_follows_the_same_rule() -> None:
    before = [refund_line("pi_a", "re_1", 300, cn(D - ONE_DAY, "23:59:59"))]
    ours = [refunded("pi_a", "re_1", 300, cn(D, "00:01:00"))]
    assert run(D - ONE_DAY, before, [], ours).mismatches == ()
    assert run(D, [], [], ours, previous=before).mismatches == ()
    assert kinds(run(D, [], [], ours)) == [(MismatchKind.REFUND_MISSING_THEIRS, "pi_a", "re_1")]


def test_days_are_china_time_days() -> None:
    # 16:30 UTC on the 13th is 00:30 on the 14th in China: a line of D's bill.
    at = dt.datetime(2026, 3, 13, 16, 30, tzinfo=dt.UTC)
    assert run(D, [pay_line("pi_a", 5000, at)], [paid("pi_a", 5000, at)]).mismatches == ()
    # 15:59:59 UTC on the 13th is 23:59:59 on the 13th: not a line of D's bill.
    early = dt.datetime(2026, 3, 13, 15, 59, 59, tzinfo=dt.UTC)
    with pytest.raises(ReconcileError) as caught:
        run(D, [pay_line("pi_a", 5000, early)])
    assert caught.value.code == "bill_line_outside_day"
    with pytest.raises(ReconcileError):
        run(D, [], previous=[pay_line("pi_a", 5000, cn(D, "00:00:00"))])


# --- input errors, order, resolution ------------------------------------------------------------


def test_an_unknown_refund_status_word_is_refused() -> None:
    line = refund_line("pi_a", "re_1", 300, cn(D, "14:00:00"), status="MAYBE")
    with pytest.raises(ReconcileError) as caught:
        run(D, [line], [], [refunded("pi_a", "re_1", 300, cn(D, "14:00:00"))])
    assert caught.value.code == "bill_status_unknown"
    nameless = dataclasses.replace(line, status="SUCCESS", out_refund_no=None)
    with pytest.raises(ReconcileError) as caught:
        run(D, [nameless])
    assert caught.value.code == "bill_line_malformed"


def test_records_are_checked() -> None:
    with pytest.raises(ValueError, match="paid_at"):
        OurPayment(provider=WX, out_trade_no="pi_a", amount_fen=1, merchant_id=M1,
                   status=OurPaymentStatus.PAID)
    with pytest.raises(ValueError, match="fen"):
        paid("pi_a", 0, cn(D, "12:00:00"))
    with pytest.raises(ValueError, match="fen"):
        refunded("pi_a", "re_1", True, cn(D, "12:00:00"))
    with pytest.raises(ValueError, match="aware"):
        paid("pi_a", 1, dt.datetime(2026, 3, 14, 12))  # noqa: DTZ001 - the naive time refused
    with pytest.raises(ValueError, match="twice"):
        run(D, [], [paid("pi_a", 1, cn(D, "12:00:00"))] * 2)
    for window in (dt.timedelta(seconds=-1), dt.timedelta(hours=12)):
        with pytest.raises(ValueError, match="day_window"):
            run(D, [], window=window)


def test_the_report_does_not_depend_on_the_order_of_its_inputs() -> None:
    lines = [pay_line("pi_c", 1, cn(D, "09:00:00")), pay_line("pi_a", 7, cn(D, "10:00:00")),
             pay_line("pi_a", 7, cn(D, "08:00:00")), refund_line("pi_a", "re_9", 1,
                                                                 cn(D, "11:00:00")),
             pay_line("pi_b", 2, cn(D, "12:00:00"), provider=ALI)]
    payments = [paid("pi_a", 6, cn(D, "08:00:00")), paid("pi_z", 3, cn(D, "13:00:00"))]
    forward = run(D, lines, payments)
    backward = run(D, lines[::-1], payments[::-1])
    assert forward == backward
    assert kinds(forward) == [
        (MismatchKind.MISSING_OURS, "pi_b", None),   # alipay sorts before wechatpay
        (MismatchKind.AMOUNT_MISMATCH, "pi_a", None),
        (MismatchKind.DUPLICATE_LINE, "pi_a", None),
        (MismatchKind.REFUND_MISSING_OURS, "pi_a", "re_9"),
        (MismatchKind.MISSING_OURS, "pi_c", None),
        (MismatchKind.MISSING_THEIRS, "pi_z", None)]
    # The first copy (08:00) is the one matched; the 10:00 copy is the duplicate.
    duplicate = next(m for m in forward.mismatches if m.kind is MismatchKind.DUPLICATE_LINE)
    assert duplicate.line is not None and duplicate.line.happened_at == cn(D, "10:00:00")


def test_resolving_closes_only_what_was_resolved() -> None:
    report = run(D, [pay_line("pi_lost", 500, cn(D, "14:00:00"))],
                 [paid("pi_ghost", 700, cn(D, "15:00:00"))])
    lost, ghost = (next(m for m in report.mismatches if m.kind is kind)
                   for kind in (MismatchKind.MISSING_OURS, MismatchKind.MISSING_THEIRS))
    credited = report.resolve(lost)
    assert credited.open == (ghost,) and credited.mismatches == report.mismatches
    assert report.open == report.mismatches  # the report it came from is unchanged
    assert credited.resolve(ghost).open == ()
    stranger = Mismatch(MismatchKind.MISSING_OURS, Action.CREDIT, WX, "pi_other")
    with pytest.raises(ValueError, match="not a mismatch"):
        report.resolve(stranger)


# --- the property: a consistent world, perturbed --------------------------------------------------

FIRST = D - ONE_DAY  # the world's payments and refunds happen at the providers on D−1, D, D+1
DAYS = [FIRST + ONE_DAY * i for i in range(4)]  # … and their records are owned up to D+2
MERCHANTS = [M1, M2, "1900000111"]
DAY_SECONDS = 86400


@dataclasses.dataclass
class World:
    """Our records and the providers' bills by day, with what the perturbations should cause."""

    window: dt.timedelta
    payments: dict[str, OurPayment]
    refunds: dict[str, OurRefund]
    bills: dict[dt.date, list[BillLine]]
    expected: Counter[tuple[MismatchKind, str, str, str | None]]

    def reconcile(self) -> list[Report]:
        return [match(day, self.bills.get(day, []), list(self.payments.values()),
                      list(self.refunds.values()),
                      previous_lines=self.bills.get(day - ONE_DAY, []), day_window=self.window)
                for day in DAYS]


@st.composite
def provider_times(draw: st.DrawFn, *, after: dt.datetime | None = None) -> dt.datetime:
    """A whole-second moment of D−1, D or D+1 (China time), often within minutes of midnight."""
    day = draw(st.integers(0, 2))
    second = draw(st.one_of(st.sampled_from([0, DAY_SECONDS - 1]),
                            st.integers(0, DAY_SECONDS - 1), st.integers(0, 900),
                            st.integers(DAY_SECONDS - 900, DAY_SECONDS - 1)))
    moment = cn(FIRST, "00:00:00") + ONE_DAY * day + dt.timedelta(seconds=second)
    return max(moment, after) if after is not None else moment


@st.composite
def our_time(draw: st.DrawFn, theirs: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """Our record's time: at most ``window`` before the provider's, at most 24 h − it after."""
    low, high = -int(window.total_seconds()), DAY_SECONDS - int(window.total_seconds())
    lag = draw(st.one_of(st.sampled_from([low, 0, high]), st.integers(low, min(high, 600)),
                         st.integers(low, high)))
    return theirs + dt.timedelta(seconds=lag)


def other(draw: st.DrawFn, fen: int) -> int:
    return fen + draw(st.integers(1, 5000)) * draw(st.sampled_from([1, -1])) if fen > 5000 \
        else fen + draw(st.integers(1, 5000))


@st.composite
def worlds(draw: st.DrawFn, *, perturb: bool) -> World:  # noqa: C901 - one world, told in order
    window = draw(st.sampled_from([dt.timedelta(0), dt.timedelta(seconds=1), W,
                                   dt.timedelta(hours=3)]))
    world = World(window, {}, {}, {}, Counter())
    lines: list[BillLine] = []
    for i in range(draw(st.integers(0, 10))):
        no = f"pi_{i:03d}"
        provider = draw(st.sampled_from([WX, ALI]))
        fen = draw(st.integers(1, 10**7))
        merchant = draw(st.sampled_from(MERCHANTS))
        status = draw(st.sampled_from(list(OurPaymentStatus)))
        if status is not OurPaymentStatus.PAID:  # never paid: on no bill
            world.payments[no] = OurPayment(provider=provider, out_trade_no=no, amount_fen=fen,
                                            merchant_id=merchant, status=status)
            continue
        at = draw(provider_times())
        world.payments[no] = paid(no, fen, draw(our_time(at, window)), merchant=merchant,
                                  provider=provider)
        lines.append(pay_line(no, fen, at, merchant=merchant, provider=provider))
        left = fen
        for j in range(draw(st.integers(0, 3))):
            if left == 0:
                break
            refund_no, refund_fen = f"re_{i:03d}_{j}", draw(st.integers(1, left))
            left -= refund_fen
            refund_at = draw(provider_times(after=at))
            state = draw(st.sampled_from(list(OurRefundStatus)))
            world.refunds[refund_no] = refunded(no, refund_no, refund_fen,
                                                draw(our_time(refund_at, window)),
                                                provider=provider, status=state)
            # WeChat Pay bills every refund it accepted, with its state; Alipay only those
            # that moved money.
            word = {OurRefundStatus.SUCCEEDED: "SUCCESS", OurRefundStatus.PENDING: "PROCESSING",
                    OurRefundStatus.FAILED: "CLOSED"}[state] if provider == WX else "退款"
            if provider == WX or state is OurRefundStatus.SUCCEEDED:
                lines.append(refund_line(no, refund_no, refund_fen, refund_at,
                                         provider=provider, status=word))

    if perturb:
        lines = perturbed(draw, world, lines)
    for line in draw(st.permutations(lines)):
        world.bills.setdefault(line.happened_at.astimezone(CHINA_TZ).date(), []).append(line)
    return world


def perturbed(draw: st.DrawFn, world: World, lines: list[BillLine]) -> list[BillLine]:
    """Perturb each payment and refund at most once; record what the report must say."""
    out: list[BillLine] = []
    expect = world.expected
    for line in lines:
        key = line.out_refund_no or line.out_trade_no
        provider, no, refund_no = line.provider, line.out_trade_no, line.out_refund_no
        if line.kind is BillKind.PAYMENT:
            ours = world.payments[no]
            change = draw(st.sampled_from([None, None, "drop_line", "drop_record",
                                           "line_amount", "record_amount", "line_merchant",
                                           "record_merchant", "duplicate", "unpaid"]))
        else:
            ours_refund = world.refunds[key]
            choices: list[str | None] = [None, None, "drop_record", "line_amount",
                                         "record_amount", "duplicate"]
            if ours_refund.status is OurRefundStatus.SUCCEEDED:
                choices += ["drop_line", "pending"]  # a succeeded refund must be billed
            change = draw(st.sampled_from(choices))
        if change is None:
            out.append(line)
        elif change == "drop_line":
            kind = (MismatchKind.MISSING_THEIRS if line.kind is BillKind.PAYMENT
                    else MismatchKind.REFUND_MISSING_THEIRS)
            expect[(kind, provider, no, refund_no)] += 1
        elif change == "drop_record":
            out.append(line)
            if line.kind is BillKind.PAYMENT:
                del world.payments[no]
                expect[(MismatchKind.MISSING_OURS, provider, no, None)] += 1
            else:
                del world.refunds[key]
                expect[(MismatchKind.REFUND_MISSING_OURS, provider, no, refund_no)] += 1
        elif change in ("line_amount", "record_amount"):
            if change == "line_amount":
                out.append(dataclasses.replace(line, amount_fen=other(draw, line.amount_fen)))
            else:
                out.append(line)
                if line.kind is BillKind.PAYMENT:
                    world.payments[no] = dataclasses.replace(
                        ours, amount_fen=other(draw, ours.amount_fen))
                else:
                    world.refunds[key] = dataclasses.replace(
                        ours_refund, amount_fen=other(draw, ours_refund.amount_fen))
            expect[(MismatchKind.AMOUNT_MISMATCH, provider, no, refund_no)] += 1
        elif change in ("line_merchant", "record_merchant"):
            moved = draw(st.sampled_from([m for m in MERCHANTS if m != line.merchant_id]))
            if change == "line_merchant":
                out.append(dataclasses.replace(line, merchant_id=moved))
            else:
                out.append(line)
                world.payments[no] = dataclasses.replace(ours, merchant_id=moved)
            expect[(MismatchKind.MERCHANT_MISMATCH, provider, no, None)] += 1
        elif change == "duplicate":
            out += [line, line]
            expect[(MismatchKind.DUPLICATE_LINE, provider, no, refund_no)] += 1
        elif change == "unpaid":
            out.append(line)
            world.payments[no] = dataclasses.replace(ours, status=OurPaymentStatus.UNPAID,
                                                     paid_at=None)
            expect[(MismatchKind.STATUS_MISMATCH, provider, no, None)] += 1
        else:  # "pending": a succeeded refund whose success we never heard of
            out.append(line)
            world.refunds[key] = dataclasses.replace(ours_refund,
                                                     status=OurRefundStatus.PENDING)
            expect[(MismatchKind.STATUS_MISMATCH, provider, no, refund_no)] += 1
    return out


def found(reports: Sequence[Report]) -> Counter[tuple[MismatchKind, str, str, str | None]]:
    return Counter((m.kind, m.provider, m.out_trade_no, m.out_refund_no)
                   for report in reports for m in report.mismatches)


@settings(max_examples=300, deadline=None)
@given(worlds(perturb=False))
def test_a_consistent_world_reconciles_clean_and_every_line_is_matched_once(
        world: World) -> None:
    reports = world.reconcile()
    assert found(reports) == Counter()
    billed = [line for lines in world.bills.values() for line in lines]
    assert sum(r.payments_matched for r in reports) == sum(
        1 for line in billed if line.kind is BillKind.PAYMENT)
    assert sum(r.refunds_matched_fen for r in reports) == sum(
        line.amount_fen for line in billed if line.kind is BillKind.REFUND)


@settings(max_examples=400, deadline=None)
@given(worlds(perturb=True))
def test_every_perturbation_is_reported_exactly_once_with_its_kind(world: World) -> None:
    reports = world.reconcile()
    assert found(reports) == world.expected
    assert all(report.open == report.mismatches for report in reports)
