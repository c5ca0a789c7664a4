"""The reconciliation API's shapes: runs, mismatches, a reviewer's resolution."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shanju.core.text import MultiLine


class RunRead(BaseModel):
    """One reconciliation of one provider's bills of one China-time day."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    provider: str
    day: dt.date
    status: str = Field(description="running | complete | incomplete | failed")
    trigger: str = Field(description="command | scheduled")
    started_at: dt.datetime
    finished_at: dt.datetime | None
    bill_payments: int
    bill_payments_fen: int
    bill_refunds: int
    bill_refunds_fen: int
    payments_matched: int
    payments_matched_fen: int
    refunds_matched: int
    refunds_matched_fen: int
    mismatches: int = Field(description="Mismatches this run found, resolved or not")
    credited: int = Field(description="Payments this run credited")
    open: int = Field(description="Mismatches last seen by this run that are still open")
    problems: list[dict[str, Any]] = Field(
        description="What kept the run from seeing everything (code, merchant_id, …)")


class RunPage(BaseModel):
    """One page of runs, newest day first."""

    items: list[RunRead]
    total: int
    page: int
    per_page: int


class MismatchRead(BaseModel):
    """One disagreement between a bill and our records (amounts in fen)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    provider: str
    day: dt.date
    kind: str = Field(description="missing_ours | missing_theirs | amount_mismatch | "
                                   "merchant_mismatch | txn_mismatch | status_mismatch | "
                                   "refund_missing_ours | refund_missing_theirs | duplicate_line")
    action: str = Field(description="credit | settle_refund | review")
    out_trade_no: str
    out_refund_no: str
    occurrence: int
    theirs: dict[str, Any] | None = Field(description="The bill's line, if any")
    ours: dict[str, Any] | None = Field(description="Our order or refund, if any")
    attempt: str = Field(description="What the job's last attempt to act came to")
    status: str = Field(description="open | resolved")
    resolution: str | None = Field(
        description="credited | already_credited | refund_settled | cleared | reviewed")
    resolved_at: dt.datetime | None
    resolved_by_id: int | None
    note: str | None
    first_run_id: int
    last_run_id: int
    created_at: dt.datetime


class MismatchPage(BaseModel):
    """One page of mismatches."""

    items: list[MismatchRead]
    total: int
    page: int
    per_page: int


class RunDetail(RunRead):
    """A run and the mismatches it found."""

    found: list[MismatchRead]


class Resolve(BaseModel):
    """A reviewer's note on what they found and did (required)."""

    note: MultiLine = Field(max_length=10_000)
