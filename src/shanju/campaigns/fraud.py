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
    minute (the China-time minute the payment was made in). Only matched (or held) gifts
    count, so a donor whose gifts were withheld is not locked out further.
``split_gift`` (withhold)
    One sum split into many gifts: more than :data:`MAX_GIFTS_PER_PROJECT_DAY` gifts from one
    donor to one project on one China-time day are not matched beyond the third (a day, not a
    sliding window: it is what a donor can understand and check, and it matches the "one
    match per donor, project and day" habit of giving days). Every assessed gift counts,
    matched or not — splitting to draw a random ratio again is exactly the abuse.
``shared_payer`` / ``shared_device`` (hold)
    Many donor accounts behind one payment account (or one device): the first two distinct
    donor accounts that pay with a payer hash in the campaign are matched as usual; gifts
    from every further account (the :data:`SHARED_ACCOUNTS_HOLD_FROM`-rd on) have their
    matches held through the public notice period (公示期) instead of settling at once. A
    held match is not lost: it settles after the period unless a reviewer releases it.

A donor is their account (``u<id>``); a guest gift (no account) is identified by its payer
hash (``g<hash>``), and has no per-donor checks if it has neither. Staff and the receiving
organization are compared by id. Everything here is pure and deterministic: the same facts
and counters give the same verdict, whatever the clock or the machine says.

Counters (at most four per gift; every key is a row the engine reads and writes per batch, so
there are as few as the rules allow):

- ``f:m:<donor>`` = minute × 8 + matched gifts in that minute (minute = Unix seconds // 60;
  China time is UTC+8, a whole number of minutes, so UTC and China-time minutes are the same
  buckets). One row per donor, not per donor-minute. A late gift from an earlier minute than
  the one stored is judged as the only gift of its minute and does not change the row.
- ``f:s:<donor>:<project>:<day>`` = gifts that day (day = days since 1970-01-01, China time).
- ``f:p:<payer>`` / ``f:d:<device>`` = the first two distinct accounts seen on that payer or
  device, packed as ``first << 31 | second`` (account numbers are user ids; a guest's is
  derived from its payer hash, with bit 30 set). That is all the rule needs — "is this one
  of the first two?" — so there is no row per (payer, donor) pair; the price is that the
  exact number of accounts is not kept (a reviewer sees "at least three"). Hashes are cut to
  their first :data:`HASH_KEY_CHARS` characters in keys (64 bits of a cryptographic hash:
  no collision to expect among a campaign's payers).

Speed: the engine runs this for every gift (tens of thousands a second), so a gift's keys are
computed once per :class:`GiftFacts` (cached on it) from integer buckets — no regex, no date
formatting.
"""

from __future__ import annotations

import datetime as dt
import enum
import zlib
from dataclasses import dataclass, field
from typing import Any

#: At most this many matched gifts per donor per minute (a person gives about 4 a minute).
MAX_MATCHED_PER_MINUTE = 4
#: At most this many gifts per donor, project and China-time day may be matched.
MAX_GIFTS_PER_PROJECT_DAY = 3
#: Gifts from the n-th distinct donor account on one payer (or device) on are held. The
#: counter keeps the first n - 1 = 2 accounts, so this is fixed at 3.
SHARED_ACCOUNTS_HOLD_FROM = 3
#: How many characters of a payer or device hash go into a counter key.
HASH_KEY_CHARS = 16

_CHINA_OFFSET_S = 8 * 3600
_SLOT_BITS = 31
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_ACCOUNT_SPACE = 1 << 30  # user ids below this are their own account number
_GUEST_BIT = 1 << 30
assert MAX_MATCHED_PER_MINUTE < 8  # noqa: S101 - the count lives in 3 bits of f:m:
assert SHARED_ACCOUNTS_HOLD_FROM == 3  # noqa: S101 - f:p:/f:d: keep two accounts

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


# What a gift's rules need, computed once per gift (a plain tuple: it is built for every gift):
# the minute key and minute, the split key, the payer and device keys, the account number.
Keys = tuple[str, int, str, str, str, int]
_NO_KEYS: Keys = ("", 0, "", "", "", 0)


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
    _keys: Keys | None = field(default=None, init=False, repr=False, compare=False)


def _unix_seconds(at: dt.datetime) -> int:
    if at.tzinfo is None:  # a naive time is UTC here (never the machine's local time)
        at = at.replace(tzinfo=dt.UTC)
    return int(at.timestamp())  # exact: whole seconds of an aware time fit a float


def _account(donor_id: int | None, payer: str) -> tuple[str, int]:
    """Return the donor's tag in keys and their account number (0: no per-donor checks)."""
    if donor_id is not None:
        number = donor_id if 0 < donor_id < _ACCOUNT_SPACE else donor_id % (_ACCOUNT_SPACE - 1) + 1
        return f"u{donor_id}", number
    if payer:
        short = payer[:HASH_KEY_CHARS]
        return f"g{short}", _GUEST_BIT | (zlib.crc32(short.encode()) & (_GUEST_BIT - 1))
    return "", 0


def unix_seconds(at: dt.datetime) -> int:
    """Whole seconds since 1970 of a payment time (a naive time is UTC)."""
    return _unix_seconds(at)


def keys_of(*, donor_id: int | None, payer_hash: str, device_hash: str, seconds: int,
            project_id: int) -> Keys:
    """What a gift's rules need (its counter keys, minute and account number), from the gift
    alone (``seconds``: :func:`unix_seconds` of its payment) — no counter, no lock: the
    giving-day engine's submitters work it out before the gift reaches the writer."""
    donor, account = _account(donor_id, payer_hash)
    if not donor:
        return _NO_KEYS
    return (
        f"f:m:{donor}",
        seconds // 60,
        f"f:s:{donor}:{project_id}:{(seconds + _CHINA_OFFSET_S) // 86400}",
        # A guest is identified by its payer: one payer is then one account by definition.
        f"f:p:{payer_hash[:HASH_KEY_CHARS]}" if payer_hash and donor_id is not None else "",
        f"f:d:{device_hash[:HASH_KEY_CHARS]}" if device_hash else "",
        account,
    )


def _keys(facts: GiftFacts) -> Keys:
    cached = facts._keys
    if cached is not None:
        return cached
    keys = keys_of(donor_id=facts.donor_id, payer_hash=facts.payer_hash,
                   device_hash=facts.device_hash, seconds=_unix_seconds(facts.paid_at),
                   project_id=facts.project_id)
    object.__setattr__(facts, "_keys", keys)
    return keys


def counter_keys(facts: GiftFacts) -> list[str]:
    """Return the counter keys :func:`assess` and :func:`record` read for this gift."""
    return keys_counters(_keys(facts))


def keys_counters(keys: Keys) -> list[str]:
    """The counter keys among a gift's :func:`keys_of`."""
    minute, _, split, payer, device, _ = keys
    return [key for key in (minute, split, payer, device) if key]


def _among_first(value: int, account: int) -> bool:
    """Whether ``account`` is (or may become) one of the first two on a payer/device."""
    second = value & _SLOT_MASK
    return not second or account in (second, value >> _SLOT_BITS)


_SHARED_PARAMS = {"limit": SHARED_ACCOUNTS_HOLD_FROM, "allowed": SHARED_ACCOUNTS_HOLD_FROM - 1}


def assess(facts: GiftFacts, counters: dict[str, int]) -> Verdict:
    """Return whether this gift may be matched."""
    return assess_keys(_keys(facts), counters, donor_org_id=facts.donor_org_id,
                       organization_id=facts.organization_id)


def assess_keys(keys: Keys, counters: dict[str, int], *, donor_org_id: int | None,
                organization_id: int) -> Verdict:
    """:func:`assess` for a gift given by its :func:`keys_of`, the organization its donor is
    staff of (if any) and the organization receiving it."""
    if donor_org_id is not None and donor_org_id == organization_id:
        return _STAFF
    minute_key, minute, split, payer, device, account = keys
    if not minute_key:
        return OK
    get = counters.get
    seen = get(minute_key, 0)
    if seen >> 3 == minute and seen & 7 >= MAX_MATCHED_PER_MINUTE:
        return Verdict(Action.WITHHOLD, TOO_FAST, {"limit": MAX_MATCHED_PER_MINUTE})
    earlier = get(split, 0)
    if earlier >= MAX_GIFTS_PER_PROJECT_DAY:
        return Verdict(Action.WITHHOLD, SPLIT_GIFT,
                       {"limit": MAX_GIFTS_PER_PROJECT_DAY, "gift_number": earlier + 1})
    if payer and not _among_first(get(payer, 0), account):
        return Verdict(Action.HOLD, SHARED_PAYER, dict(_SHARED_PARAMS))
    if device and not _among_first(get(device, 0), account):
        return Verdict(Action.HOLD, SHARED_DEVICE, dict(_SHARED_PARAMS))
    return OK


def _link(counters: dict[str, int], key: str, account: int) -> None:
    value = counters.get(key, 0)
    if not value:
        counters[key] = account << _SLOT_BITS
    elif not value & _SLOT_MASK and value >> _SLOT_BITS != account:
        counters[key] = value | account


def record(facts: GiftFacts, counters: dict[str, int], *, matched: bool) -> None:
    """Update the anti-fraud counters after the gift's match was decided.

    ``matched``: the gift got a match (matched or held); only those count towards the
    per-minute ceiling. Every recorded gift counts towards the per-project-day limit and
    links its account to its payer and device.
    """
    record_keys(_keys(facts), counters, matched=matched)


def record_keys(keys: Keys, counters: dict[str, int], *, matched: bool) -> None:
    """:func:`record` for a gift given by its :func:`keys_of`."""
    minute_key, minute, split, payer, device, account = keys
    if not minute_key:
        return
    if matched:
        seen = counters.get(minute_key, 0)
        if seen >> 3 == minute:
            counters[minute_key] = seen + 1
        elif minute > seen >> 3:
            counters[minute_key] = minute << 3 | 1
    counters[split] = counters.get(split, 0) + 1
    if payer:
        _link(counters, payer, account)
    if device:
        _link(counters, device, account)
