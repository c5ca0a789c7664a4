"""Double-entry ledger tables: accounts, journal entries and their postings.

Sign convention: a posting's ``amount_fen`` is the money that *enters* the account (negative:
leaves it). An account's balance is the sum of its postings, i.e. the money it holds; the
external source of donors' money (``donor_clearing:<provider>``) therefore runs negative.
Every journal entry's postings sum to zero, so all balances together always sum to zero.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class AccountKind(enum.StrEnum):
    """What an account stands for; its code is ``<kind>`` or ``<kind>:<ref>``."""

    DONOR_CLEARING = "donor_clearing"  # donors' money arriving through a payment provider
    PROJECT_FUND = "project"  # raised for a project, not yet used
    ORGANIZATION = "organization"  # released to an organization and used as disclosed
    REFUNDS = "refunds"  # refunds requested and on their way back to donors
    PLATFORM = "platform"  # the platform's own money (fees, if an operator charges any)
    SPONSOR = "sponsor"  # a sponsor's money arriving for its matching pools (runs negative)
    MATCH_POOL = "pool"  # a sponsor's matching pool, not yet matched
    MATCH_HOLD = "match_hold"  # matches of a pool held through the public notice period
    MATCH_ESCROW = "match_escrow"  # a pool's budget leased to one writer (campaigns/escrow.py)


class LedgerAccount(Base):
    """An account; ``balance_fen`` is a running sum kept for speed, checked by ``ledger check``."""

    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[AccountKind] = mapped_column(enum_column(AccountKind))
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class JournalEntry(Base):
    """One balanced movement of money, made of two or more postings."""

    __tablename__ = "journal_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(60), index=True)
    memo: Mapped[str] = mapped_column(String(200), default="")
    # At most one entry per business event (e.g. "donation.paid:d_123"): a second attempt
    # to post the same event fails on this constraint instead of moving money twice.
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class Posting(Base):
    """Money entering (positive) or leaving (negative) one account within one entry."""

    __tablename__ = "postings"
    __table_args__ = (Index("ix_postings_account_entry", "account_id", "entry_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
