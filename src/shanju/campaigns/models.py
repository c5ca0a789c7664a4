"""Giving-day campaigns: schedule, enrolled projects, sponsors' matching pools and their rules,
and the gifts the group-commit engine writes.

Money lives in the ledger. A pool's sponsor commits money (``sponsor:<id>`` → ``pool:<id>``);
the pool's ledger balance is what is left to match, and ``MatchPool.remaining_fen`` is the same
number kept on the pool's row so that it can be locked and decremented in place (the engine's
locking protocol, ``docs/locking.md``). ``shanju campaigns check`` compares the two.

A :class:`CampaignGift` is one paid giving-day gift with its matching decision (matched, held,
not matched — with the reason and the rule version it used). Gifts are posted in batches: each
batch is one journal entry whose legs are the exact sums of its gifts per account
(``CampaignBatch.entry_id``), so every fen matched is a ledger transfer from the pool to the
project, and the gifts are the detail behind it.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class CampaignStatus(enum.StrEnum):
    """draft → scheduled (published) → live → ended; matching runs only while live."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class Campaign(Base):
    """A giving day (or days): a daily opening time, enrolled projects and sponsors' pools.

    The campaign row is also the lock that serializes every change to its matching state
    (pools' remaining money and the counters behind caps): see ``docs/locking.md``.
    """

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    name_en: Mapped[str] = mapped_column(String(120), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[CampaignStatus] = mapped_column(
        enum_column(CampaignStatus), default=CampaignStatus.DRAFT
    )
    starts_on: Mapped[dt.date] = mapped_column(Date)  # the first day (China time)
    days: Mapped[int] = mapped_column(default=3)
    # Daily opening and closing, "HH:MM" China time; matching runs between them each day.
    opens_at: Mapped[str] = mapped_column(String(5), default="10:00")
    closes_at: Mapped[str] = mapped_column(String(5), default="23:59")
    # Projects one organization may enrol.
    org_quota: Mapped[int] = mapped_column(default=3)
    # Public notice period (公示期) for suspicious matches, in days, before they settle.
    hold_days: Mapped[int] = mapped_column(default=7)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Incremented by every holder of the campaign lock (``locks.lock_campaigns``): a giving-day
    # writer trusts the counters it keeps in memory only while this is the number its own
    # previous batch left (``docs/locking.md``).
    lock_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class EnrolmentStatus(enum.StrEnum):
    """An organization applies; a reviewer approves or rejects; the org may withdraw."""

    APPLIED = "applied"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Enrolment(Base):
    """A project taking part in a campaign."""

    __tablename__ = "campaign_enrolments"
    __table_args__ = (UniqueConstraint("campaign_id", "project_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    status: Mapped[EnrolmentStatus] = mapped_column(
        enum_column(EnrolmentStatus), default=EnrolmentStatus.APPLIED
    )
    # A reviewer may freeze a project's matching (gifts are still accepted, unmatched).
    matching_frozen: Mapped[bool] = mapped_column(default=False)
    frozen_reason: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(String(200), default="")
    applied_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    applied_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]


class SponsorKind(enum.StrEnum):
    """An enterprise or the platform itself."""

    ENTERPRISE = "enterprise"
    PLATFORM = "platform"


class Sponsor(Base):
    """Who puts up matching money for a campaign."""

    __tablename__ = "campaign_sponsors"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    kind: Mapped[SponsorKind] = mapped_column(
        enum_column(SponsorKind), default=SponsorKind.ENTERPRISE
    )
    # The enterprise's staff accounts (if any) belong to this organization row.
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PoolKind(enum.StrEnum):
    """Matching per gift by rules, or a quadratic-funding round shared out at its end."""

    MATCHING = "matching"
    QUADRATIC = "quadratic"


class PoolStatus(enum.StrEnum):
    """active (matching) → paused ↔ active → closed (for a quadratic round: distributed)."""

    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"


class MatchPool(Base):
    """A sponsor's pool; ``remaining_fen`` mirrors the ledger balance of ``pool:<id>``."""

    __tablename__ = "match_pools"
    __table_args__ = (
        CheckConstraint("remaining_fen >= 0", name="remaining_not_negative"),
        CheckConstraint("committed_fen >= 0", name="committed_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    sponsor_id: Mapped[int] = mapped_column(ForeignKey("campaign_sponsors.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    kind: Mapped[PoolKind] = mapped_column(enum_column(PoolKind), default=PoolKind.MATCHING)
    status: Mapped[PoolStatus] = mapped_column(
        enum_column(PoolStatus), default=PoolStatus.ACTIVE
    )
    # Lower goes first when several pools could match a gift.
    priority: Mapped[int] = mapped_column(default=100)
    committed_fen: Mapped[int] = mapped_column(BigInteger, default=0)  # all ever committed
    remaining_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    rule_version: Mapped[int] = mapped_column(default=1)  # the version in force
    exhausted_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PoolRule(Base):
    """One version of a pool's matching rule; a change adds a version, never edits one."""

    __tablename__ = "match_pool_rules"
    __table_args__ = (UniqueConstraint("pool_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("match_pools.id"), index=True)
    version: Mapped[int]
    # The rule's parameters (see campaigns/rules.py, RuleParams): ratio or random ratio,
    # caps, minimum, windows.
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CampaignCounter(Base):
    """A running sum behind a cap or an anti-fraud signal, e.g. ``p3:donor:17:2026-09-07``.

    Counters change only while their campaign's row is locked (``docs/locking.md``).
    """

    __tablename__ = "campaign_counters"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class CampaignBatch(Base):
    """One commit of the group-commit engine: its journal entry and how many gifts."""

    __tablename__ = "campaign_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    gifts: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str] = mapped_column(String(60), default="")  # host:pid of the writer
    # The escrow lease the batch spent from (its matches leave match_escrow:<lease>:<pool>
    # instead of pool:<pool>); None: the batch locked the campaign (docs/locking.md).
    lease_id: Mapped[int | None]
    committed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class GiftStatus(enum.StrEnum):
    """A gift is paid when written; a refund reverses it and its match."""

    PAID = "paid"
    REFUNDED = "refunded"


class MatchStatus(enum.StrEnum):
    """What happened to a gift's match.

    none: not matched (``reason`` says why); matched: pool → project; held: pool → hold,
    waiting out the public notice period; released: a held match returned to the pool;
    reversed: the gift was refunded and its match went back to the pool.
    A held match that settles becomes ``matched``.
    """

    NONE = "none"
    MATCHED = "matched"
    HELD = "held"
    RELEASED = "released"
    REVERSED = "reversed"


class CampaignGift(Base):
    """A paid giving-day gift and its matching decision (one row; the engine's hot table)."""

    __tablename__ = "campaign_gifts"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("matched_fen >= 0", name="matched_not_negative"),
        Index("ix_campaign_gifts_campaign_project", "campaign_id", "project_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The order id ("o_...") the payment was made for: a second callback for the same order
    # meets this unique key and is answered "duplicate".
    order_id: Mapped[str] = mapped_column(String(40), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    donor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    donor_name: Mapped[str] = mapped_column(String(60))
    anonymous: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str] = mapped_column(String(200), default="")
    province: Mapped[str | None] = mapped_column(String(20))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    provider: Mapped[str] = mapped_column(String(20))
    provider_txn_id: Mapped[str] = mapped_column(String(80))
    # Hashes (never the raw values) of the payer's account and device, for anti-fraud links.
    payer_hash: Mapped[str] = mapped_column(String(32), default="")
    device_hash: Mapped[str] = mapped_column(String(32), default="")
    day: Mapped[dt.date] = mapped_column(Date)  # the campaign day (China time) it counts for
    status: Mapped[GiftStatus] = mapped_column(enum_column(GiftStatus), default=GiftStatus.PAID)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("match_pools.id"))
    rule_version: Mapped[int | None]
    matched_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    match_status: Mapped[MatchStatus] = mapped_column(
        enum_column(MatchStatus), default=MatchStatus.NONE
    )
    # Why (a stable code, explained to donors and reviewers by campaigns/explain.py) and
    # its parameters, e.g. {"cap_fen": 99900}.
    reason: Mapped[str] = mapped_column(String(40), default="")
    reason_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    hold_until: Mapped[dt.datetime | None]
    batch_id: Mapped[int] = mapped_column(ForeignKey("campaign_batches.id"))
    paid_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    refunded_at: Mapped[dt.datetime | None]


class CampaignStat(Base):
    """Running aggregates for live pages, kept by each batch in its own transaction.

    ``dim`` is ``total``, ``project``, ``org``, ``province``, ``pool`` or ``minute``;
    ``shanju campaigns check`` recomputes them from the gifts.
    """

    __tablename__ = "campaign_stats"

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    dim: Mapped[str] = mapped_column(String(10), primary_key=True)
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    gifts: Mapped[int] = mapped_column(BigInteger, default=0)
    raised_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    matched_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class QuadraticShare(Base):
    """A project's share of a quadratic-funding pool, written when the round is distributed."""

    __tablename__ = "quadratic_shares"
    __table_args__ = (UniqueConstraint("pool_id", "project_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("match_pools.id"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    contributors: Mapped[int] = mapped_column(default=0)
    contributed_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    share_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LeaseState(enum.StrEnum):
    """A writer's escrow lease: active until its holder releases it or it is revoked (the
    holder died or stalled past its expiry, or a flow changed the matching configuration)."""

    ACTIVE = "active"
    RELEASED = "released"
    REVOKED = "revoked"


class CampaignLease(Base):
    """One writer process's escrow lease (``campaigns/escrow.py``, ``docs/locking.md``).

    The lease id is the fencing token: every batch that spends from the lease first updates
    this row ``WHERE id = :id AND state = 'active'`` and aborts unless one row changed. A
    revoked or released lease never becomes active again; a restarted writer opens a new one.
    """

    __tablename__ = "campaign_leases"

    id: Mapped[int] = mapped_column(primary_key=True)
    holder: Mapped[str] = mapped_column(String(60))  # host:pid of the writer
    state: Mapped[LeaseState] = mapped_column(enum_column(LeaseState), default=LeaseState.ACTIVE)
    expires_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None]


class LeaseSlice(Base):
    """Headroom a lease holds on one cap counter (``p<pool>:d:…``, ``:j:``, ``:o:``, ``:t:``)
    or on a pool's budget (``p<pool>:b``, money in ``match_escrow:<lease>:<pool>``).

    The counter (or, for the budget, the pool's ``remaining_fen``) already counts
    ``reserved_fen`` as used: the holder's batches spend it without touching the shared row.
    """

    __tablename__ = "campaign_lease_slices"
    __table_args__ = (CheckConstraint("reserved_fen >= 0", name="reserved_not_negative"),)

    lease_id: Mapped[int] = mapped_column(ForeignKey("campaign_leases.id"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    reserved_fen: Mapped[int] = mapped_column(BigInteger, default=0)
