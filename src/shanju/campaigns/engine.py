"""The group-commit engine: giving-day gifts and their matches, many per transaction.

A single writer per process gathers submitted gifts for a few milliseconds and commits them as
one transaction — gifts, matching decisions, counters, pools, one balanced journal entry and
the live aggregates — then answers every submitter once the batch is durable.
:func:`apply_batch` is that transaction's work (it never commits); :class:`GroupCommitEngine`
is the writer thread around it. Locking protocol: ``docs/locking.md``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PaidGift:
    """A payment the provider confirmed for a giving-day order (the engine's input)."""

    order_id: str  # "o_...": unique per order; a repeat is a duplicate callback
    campaign_id: int
    project_id: int
    donor_id: int | None
    donor_name: str
    anonymous: bool
    message: str
    province: str | None
    amount_fen: int
    provider: str
    provider_txn_id: str
    payer_hash: str
    device_hash: str
    paid_at: dt.datetime


@dataclass(frozen=True, slots=True)
class GiftResult:
    """What became of one submitted gift."""

    order_id: str
    outcome: str  # "credited" | "duplicate"
    gift_id: int
    matched_fen: int
    match_status: str  # MatchStatus value
    reason: str  # reason code ("" when matched without remark)
