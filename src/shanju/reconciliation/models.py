"""Daily reconciliation's records: each run of a provider's day, and what it found.

A *run* reconciles one provider's bills of one China-time day against our payment orders and
refunds (``reconciliation.flows``). A *mismatch* is one disagreement the matching core
(``payments.reconcile``) reported, stored once per identity — provider, day, kind, order
number, refund number and occurrence — however many runs of that day find it again: the first
and the last run that saw it are kept. The job resolves the mismatches it acts on (a payment
credited through the one exactly-once path, a refund settled by its query); a reviewer
resolves the others with a note. A mismatch a later complete run of the same day no longer
finds is resolved as ``cleared``.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class RunStatus(enum.StrEnum):
    """Where a run is, and whether it saw everything it had to."""

    RUNNING = "running"        # started, not finished (or its process died)
    COMPLETE = "complete"      # every bill of its scope downloaded and matched
    INCOMPLETE = "incomplete"  # matched, but some merchant's bill could not be had
    FAILED = "failed"          # nothing matched: no bill, or a bill no day can have


class RunTrigger(enum.StrEnum):
    """Who started a run."""

    COMMAND = "command"      # `shanju payments reconcile` (an operator or a timer)
    SCHEDULED = "scheduled"  # the application's payments job, once a day


class MismatchStatus(enum.StrEnum):
    """Whether someone still has to look at a mismatch."""

    OPEN = "open"
    RESOLVED = "resolved"


class Resolution(enum.StrEnum):
    """How a mismatch was resolved (``resolved_by_id`` names the reviewer of ``reviewed``)."""

    CREDITED = "credited"                  # the job credited the payment just now
    ALREADY_CREDITED = "already_credited"  # credited by another path meanwhile (callback, query)
    REFUND_SETTLED = "refund_settled"      # the job settled the refund as the bill says
    CLEARED = "cleared"                    # a later complete run of the day no longer found it
    REVIEWED = "reviewed"                  # a reviewer looked, acted outside and left a note


class ReconciliationRun(Base):
    """One reconciliation of one provider's bills of one China-time day."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (Index("ix_reconciliation_runs_provider_day", "provider", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    day: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[RunStatus] = mapped_column(enum_column(RunStatus), default=RunStatus.RUNNING)
    trigger: Mapped[RunTrigger] = mapped_column(enum_column(RunTrigger))
    # The scheduled job's claim on (provider, day): unique, so that of several server
    # processes one runs the day; cleared when the run fails, so that a later round retries.
    claim: Mapped[str | None] = mapped_column(String(60), unique=True)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    # The bill's lines (every line, duplicates included) and the lines that agreed, in fen.
    bill_payments: Mapped[int] = mapped_column(default=0)
    bill_payments_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    bill_refunds: Mapped[int] = mapped_column(default=0)
    bill_refunds_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    payments_matched: Mapped[int] = mapped_column(default=0)
    payments_matched_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds_matched: Mapped[int] = mapped_column(default=0)
    refunds_matched_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    mismatches: Mapped[int] = mapped_column(default=0)  # found by this run, resolved or not
    credited: Mapped[int] = mapped_column(default=0)    # payments this run credited
    # What kept the run from seeing everything: [{"code", "merchant_id", "day", "detail"}].
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class ReconciliationMismatch(Base):
    """One disagreement between a provider's bill and our records, however often seen."""

    __tablename__ = "reconciliation_mismatches"
    __table_args__ = (
        # A mismatch's identity (the default name would pass PostgreSQL's 63 characters).
        UniqueConstraint("provider", "day", "kind", "out_trade_no", "out_refund_no",
                         "occurrence", name="uq_reconciliation_mismatches_identity"),
        Index("ix_reconciliation_mismatches_status_day", "status", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    day: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(30))     # payments.reconcile.MismatchKind
    action: Mapped[str] = mapped_column(String(20))   # payments.reconcile.Action
    out_trade_no: Mapped[str] = mapped_column(String(64))
    out_refund_no: Mapped[str] = mapped_column(String(64), default="")
    occurrence: Mapped[int] = mapped_column(default=0)
    # Both sides as the last run saw them (None where a side lacks the record).
    theirs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ours: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_run_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_runs.id"))
    last_run_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_runs.id"), index=True)
    # What the job's last attempt to act came to (the intake's outcome, a gateway error code).
    attempt: Mapped[str] = mapped_column(String(40), default="")
    status: Mapped[MismatchStatus] = mapped_column(enum_column(MismatchStatus),
                                                   default=MismatchStatus.OPEN)
    resolution: Mapped[Resolution | None] = mapped_column(enum_column(Resolution))
    resolved_at: Mapped[dt.datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
