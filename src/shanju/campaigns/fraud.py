"""Anti-fraud for matching: whether a gift may be matched (never whether it is accepted).

The engine calls :func:`assess` for each gift of a batch, in order, with the batch's counter
snapshot (read under the campaign lock) — and :func:`record` once the gift's match is decided,
so later gifts of the same batch see it. Both only read and change ``counters`` (a dict of
counter key → value; keys here start with ``f:``); the engine writes changed counters back.

This module is the interface; the rules are being filled in (staff of the receiving
organization, a human ceiling on matched gifts per minute, many accounts sharing one payer or
device, one sum split into many gifts).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any


class Action(enum.StrEnum):
    """ok: may be matched; withhold: no match; hold: match held through the notice period."""

    OK = "ok"
    WITHHOLD = "withhold"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class Verdict:
    """An anti-fraud decision with a stable reason code (explained by campaigns/explain.py)."""

    action: Action
    reason: str = ""
    params: dict[str, Any] = field(default_factory=dict)


OK = Verdict(Action.OK)


@dataclass(frozen=True, slots=True)
class GiftFacts:
    """What anti-fraud may look at for one gift."""

    order_id: str
    campaign_id: int
    project_id: int
    organization_id: int
    donor_id: int | None
    donor_org_id: int | None  # the organization the donor is staff of, if any
    amount_fen: int
    payer_hash: str
    device_hash: str
    paid_at: dt.datetime


def counter_keys(facts: GiftFacts) -> list[str]:  # noqa: ARG001
    """Return the counter keys :func:`assess` and :func:`record` read for this gift."""
    return []


def assess(facts: GiftFacts, counters: dict[str, int]) -> Verdict:  # noqa: ARG001
    """Return whether this gift may be matched."""
    return OK


def record(facts: GiftFacts, counters: dict[str, int], *, matched: bool) -> None:  # noqa: ARG001
    """Update the anti-fraud counters after the gift's match was decided."""
