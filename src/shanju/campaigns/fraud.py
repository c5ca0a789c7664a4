"""Anti-fraud for matching: whether a gift may be matched (never whether it is accepted).

The engine calls :func:`assess` for each gift of a batch, in order, with the batch's counter
snapshot (read under the campaign lock) — and :func:`record` once the gift's match is decided,
so later gifts of the same batch see it. Both only read and change ``counters`` (a dict of
counter key → value; keys here start with ``f:``); the engine writes changed counters back.
Counters belong to one campaign (``CampaignCounter.campaign_id``), so keys need not name it.

The rules (checked in this order; the first that applies decides, and a withhold beats a
hold):

``staff_own_org`` (withhold)
    A donor who is staff of the organization receiving the gift gets no match: an
    organization must not capture sponsors' money by giving to itself.
``too_fast`` (withhold)
    A human ceiling: at most :data:`MAX_MATCHED_PER_MINUTE` matched gifts per donor per
    minute (the China-time minute the payment was made in). Only matched gifts count, so a
    donor whose gifts were withheld is not locked out further. Counter
    ``f:m:<donor>:<minute>`` (minute = Unix seconds // 60; China time is UTC+8, a whole number
    of minutes, so the UTC and China-time minutes are the same buckets).
``split_gift`` (withhold)
    One sum split into many gifts: more than :data:`MAX_GIFTS_PER_PROJECT_DAY` gifts from one
    donor to one project on one China-time day are not matched beyond the third (a day, not a
    sliding window: it is what a donor can understand and check, and it matches the "one
    match per donor, project and day" habit of giving days). Every assessed gift counts,
    matched or not — splitting to draw a random ratio again is exactly the abuse. Counter
    ``f:s:<donor>:<project>:<day>`` (day = days since 1970-01-01 in China time).
``shared_payer`` / ``shared_device`` (hold)
    Many donor accounts behind one payment account (or one device): once a payer hash has
    been used by :data:`SHARED_ACCOUNTS_HOLD_FROM` distinct donor accounts in the campaign,
    matches of gifts from the third account on (in the order the accounts first appeared)
    are held through the public notice period (公示期) instead of settling at once. A held
    match is not lost: it settles after the period unless a reviewer releases it. Counters
    ``f:pn:<hash>`` (distinct accounts so far) and ``f:pd:<hash>:<donor>`` (the account's
    place in that order: 1, 2, 3, ...); ``f:dn:`` / ``f:dd:`` for devices.

A donor is their account (``u<id>``); a guest gift (no account) is identified by its payer
hash (``g<hash>``), and has no per-donor checks if it has neither. Staff and the receiving
organization are compared by id. Everything here is pure and deterministic: the same facts
and counters give the same verdict, whatever the clock or the machine says.

Speed: the engine runs this for every gift (tens of thousands a second), so the counter keys
are computed once per :class:`GiftFacts` (cached on it) from integer buckets — no regex, no
date formatting.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

#: At most this many matched gifts per donor per minute (a person gives about 4 a minute).
MAX_MATCHED_PER_MINUTE = 4
#: At most this many gifts per donor, project and China-time day may be matched.
MAX_GIFTS_PER_PROJECT_DAY = 3
#: The n-th distinct donor account on one payer (or device) and later ones are held.
SHARED_ACCOUNTS_HOLD_FROM = 3

_CHINA_OFFSET_S = 8 * 3600

# Reason codes of this module (explained by campaigns/explain.py).
STAFF_OWN_ORG = "staff_own_org"
TOO_FAST = "too_fast"
SPLIT_GIFT = "split_gift"
SHARED_PAYER = "shared_payer"
SHARED_DEVICE = "shared_device"
REASONS = (STAFF_OWN_ORG, TOO_FAST, SPLIT_GIFT, SHARED_PAYER, SHARED_DEVICE)
HOLD_REASONS = frozenset({SHARED_PAYER, SHARED_DEVICE})


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
_STAFF = Verdict(Action.WITHHOLD, STAFF_OWN_ORG)


# The counter keys of one gift, "" where a rule does not apply (a plain tuple: built for
# every gift, so it must be cheap): minute, split, payer count, payer-donor, device count,
# device-donor.
_Keys = tuple[str, str, str, str, str, str]
_MINUTE, _SPLIT, _PAYER_N, _PAYER_D, _DEVICE_N, _DEVICE_D = range(6)
_NO_KEYS: _Keys = ("", "", "", "", "", "")


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
    # The counter keys, computed on first use (not part of the facts' identity).
    _keys: _Keys | None = field(default=None, init=False, repr=False, compare=False)


def _unix_seconds(at: dt.datetime) -> int:
    if at.tzinfo is None:  # a naive time is UTC here (never the machine's local time)
        at = at.replace(tzinfo=dt.UTC)
    return int(at.timestamp())  # exact: whole seconds of an aware time fit a float


def _donor_tag(facts: GiftFacts) -> str:
    if facts.donor_id is not None:
        return f"u{facts.donor_id}"
    if facts.payer_hash:
        return f"g{facts.payer_hash}"
    return ""


def _keys(facts: GiftFacts) -> _Keys:
    cached = facts._keys
    if cached is not None:
        return cached
    donor = _donor_tag(facts)
    if not donor:
        keys = _NO_KEYS
    else:
        seconds = _unix_seconds(facts.paid_at)
        payer, device = facts.payer_hash, facts.device_hash
        # A guest is identified by the payer: one payer is then one "account" by definition.
        linked = payer and facts.donor_id is not None
        keys = (
            f"f:m:{donor}:{seconds // 60}",
            f"f:s:{donor}:{facts.project_id}:{(seconds + _CHINA_OFFSET_S) // 86400}",
            f"f:pn:{payer}" if linked else "",
            f"f:pd:{payer}:{donor}" if linked else "",
            f"f:dn:{device}" if device else "",
            f"f:dd:{device}:{donor}" if device else "",
        )
    object.__setattr__(facts, "_keys", keys)
    return keys


def counter_keys(facts: GiftFacts) -> list[str]:
    """Return the counter keys :func:`assess` and :func:`record` read for this gift."""
    return [key for key in _keys(facts) if key]


def _shared_params(place: int, seen: int) -> dict[str, Any]:
    return {"accounts": max(place, seen), "place": place, "limit": SHARED_ACCOUNTS_HOLD_FROM}


def assess(facts: GiftFacts, counters: dict[str, int]) -> Verdict:
    """Return whether this gift may be matched."""
    if facts.donor_org_id is not None and facts.donor_org_id == facts.organization_id:
        return _STAFF
    minute, split, payer_n, payer_d, device_n, device_d = _keys(facts)
    if not minute:
        return OK
    get = counters.get
    if get(minute, 0) >= MAX_MATCHED_PER_MINUTE:
        return Verdict(Action.WITHHOLD, TOO_FAST, {"limit": MAX_MATCHED_PER_MINUTE})
    earlier = get(split, 0)
    if earlier >= MAX_GIFTS_PER_PROJECT_DAY:
        return Verdict(Action.WITHHOLD, SPLIT_GIFT,
                       {"limit": MAX_GIFTS_PER_PROJECT_DAY, "gift_number": earlier + 1})
    if payer_n:
        seen = get(payer_n, 0)
        place = get(payer_d, 0) or seen + 1
        if place >= SHARED_ACCOUNTS_HOLD_FROM:
            return Verdict(Action.HOLD, SHARED_PAYER, _shared_params(place, seen))
    if device_n:
        seen = get(device_n, 0)
        place = get(device_d, 0) or seen + 1
        if place >= SHARED_ACCOUNTS_HOLD_FROM:
            return Verdict(Action.HOLD, SHARED_DEVICE, _shared_params(place, seen))
    return OK


def _link(counters: dict[str, int], count_key: str, donor_key: str) -> None:
    if not counters.get(donor_key, 0):
        place = counters.get(count_key, 0) + 1
        counters[count_key] = place
        counters[donor_key] = place


def record(facts: GiftFacts, counters: dict[str, int], *, matched: bool) -> None:
    """Update the anti-fraud counters after the gift's match was decided.

    ``matched``: the gift got a match (matched or held); only those count towards the
    per-minute ceiling. Every recorded gift counts towards the per-project-day limit and
    links its account to its payer and device.
    """
    minute, split, payer_n, payer_d, device_n, device_d = _keys(facts)
    if not minute:
        return
    if matched:
        counters[minute] = counters.get(minute, 0) + 1
    counters[split] = counters.get(split, 0) + 1
    if payer_n:
        _link(counters, payer_n, payer_d)
    if device_n:
        _link(counters, device_n, device_d)
