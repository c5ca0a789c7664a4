"""Disclosure API shapes: public data only (masked donor names, no ids of people)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel


class TotalsRow(BaseModel):
    """A project's four flows and its balance, in fen (see docs/transparency/disclosure.md)."""

    project_id: int
    received_fen: int
    matched_fen: int
    refunded_fen: int
    disbursed_fen: int
    balance_fen: int


class TotalsRead(BaseModel):
    """Every project with a fund account or any movement, by id."""

    projects: list[TotalsRow]


class FlowsRead(BaseModel):
    """Received, matched, refunded, disbursed and the balance they make, in fen."""

    received_fen: int
    matched_fen: int
    refunded_fen: int
    disbursed_fen: int
    balance_fen: int


class MonthRead(BaseModel):
    """One month's flows (``YYYY-MM``, China time)."""

    month: str
    received_fen: int
    matched_fen: int
    refunded_fen: int
    disbursed_fen: int


class AttachmentRead(BaseModel):
    """A file attached to a fund usage (its SHA-256 is also in the transparency log)."""

    url: str
    filename: str
    sha256: str


class DisbursementRead(BaseModel):
    """A fund usage as disclosed."""

    ref: str
    spent_on: dt.date
    disclosed_at: dt.datetime
    purpose: str
    description: str
    amount_fen: int
    attachments: list[AttachmentRead]
    receipt_url: str


class MovementRead(BaseModel):
    """A movement of the project's fund; ``amount_fen`` is signed (+ in, − out)."""

    time: dt.datetime
    kind: str
    category: str
    amount_fen: int
    donor: str | None
    anonymous: bool
    ref: str
    receipt_url: str


class ProjectRef(BaseModel):
    """Which project."""

    id: int
    title: str
    organization_id: int
    recipient_org_id: int


ExportLinks = dict[str, str]  # format (csv, json, xlsx) → where to download the open data


class ProjectLedgerRead(BaseModel):
    """A project's public ledger: flows, balance check against the ledger, months,
    disbursements and the latest movements."""

    project: ProjectRef
    totals: FlowsRead
    ledger_balance_fen: int
    balanced: bool
    months: list[MonthRead]
    disbursements: list[DisbursementRead]
    recent: list[MovementRead]
    exports: ExportLinks


class AnnualProjectRead(BaseModel):
    """One project's year."""

    project_id: int
    title: str
    received_fen: int
    matched_fen: int
    refunded_fen: int
    disbursed_fen: int
    balance_fen: int  # at the end of the year
    gifts: int
    donors: int


class PurposeRead(BaseModel):
    """Money disbursed for one purpose in the year."""

    purpose: str
    amount_fen: int
    usages: int


class AnnualRead(BaseModel):
    """An organization's year (China time): per project and in total."""

    organization_id: int
    year: int
    empty: bool
    projects: list[AnnualProjectRead]
    total: AnnualProjectRead
    months: list[MonthRead]
    purposes: list[PurposeRead]
    exports: ExportLinks
