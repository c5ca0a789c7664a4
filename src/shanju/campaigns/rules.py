"""Matching rules: the parameters of a pool's rule version, and (below) the decision.

A rule version is immutable: a change adds a version (``PoolRule``), and every gift stores the
version it was decided with. Parameters are validated here, once, when a version is created.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class RatioOption(BaseModel):
    """One outcome of a random ratio: with relative ``weight``, match ``num/den`` of the gift."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: int = Field(ge=1, le=1_000_000)
    num: int = Field(ge=0, le=100)  # num == 0: this outcome is "not matched"
    den: int = Field(ge=1, le=100)


class Window(BaseModel):
    """A daily time window (China time), e.g. 10:00–12:00; ``end`` is exclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str = Field(pattern=HHMM)
    end: str = Field(pattern=HHMM)

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError("a window must end after it starts")
        return self


class RuleParams(BaseModel):
    """A matching rule's parameters (all money in integer fen; ``None`` means no such cap).

    Fixed ratio: ``ratio_num/ratio_den`` of each qualifying gift (1/1 is 1:1, 1/2 is 1:0.5).
    Random ratio: when ``random`` is given, the ratio is drawn per gift from those weighted
    options (reproducibly, from ``seed`` and the order id); a drawn match smaller than
    ``floor_fen`` is raised to it (never above the gift, a cap or the pool).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio_num: int = Field(default=1, ge=0, le=100)
    ratio_den: int = Field(default=1, ge=1, le=100)
    random: tuple[RatioOption, ...] | None = None
    floor_fen: int = Field(default=0, ge=0)
    seed: int = Field(default=0, ge=0, le=2**62)
    min_gift_fen: int = Field(default=1, ge=1)
    max_match_per_gift_fen: int | None = Field(default=None, ge=1)
    per_donor_daily_cap_fen: int | None = Field(default=None, ge=1)
    per_project_daily_cap_fen: int | None = Field(default=None, ge=1)
    per_org_cap_fen: int | None = Field(default=None, ge=1)  # over the whole campaign
    daily_pot_fen: int | None = Field(default=None, ge=1)  # the pool may spend per day
    windows: tuple[Window, ...] = ()  # empty: the campaign's opening hours
    # The engagement hook: names of registered multipliers (see ``engagement``); none yet.
    multipliers: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _random_has_options(self) -> RuleParams:
        if self.random is not None and not self.random:
            raise ValueError("a random ratio needs at least one option")
        return self


# --- the decision --------------------------------------------------------------------------
#
# ``decide`` is pure and deterministic: the same rule, gift, counters and remaining give the
# same answer on every machine (no clock, no global random state). The engine calls it under
# the campaign lock with the counters it read there; a match adds itself to the counters of
# the caps the rule has, so the next gift of the same batch sees it.
#
# Counter keys (``CampaignCounter.key``) of a pool, all in fen of matches still standing
# (matched or held; a refund or a released hold takes its match back out):
#   p<pool>:d:<donor>:<day>     the donor's matches on a campaign day (China time)
#   p<pool>:j:<project>:<day>   the project's matches on a day
#   p<pool>:o:<organization>    the organization's matches over the whole campaign
#   p<pool>:t:<day>             the pool's spending on a day (the daily pot)
# A counter is kept only while the rule version in force has that cap; a new version
# rebuilds the pool's counters from its gifts (``flows.add_rule_version``).

# Reason codes (stable; explained to donors and reviewers by campaigns/explain.py).
MATCHED = ""
OUTSIDE_HOURS = "outside_hours"
BELOW_MINIMUM = "below_minimum"
RANDOM_NOT_MATCHED = "random_not_matched"
DONOR_DAILY_CAP = "donor_daily_cap"
PROJECT_DAILY_CAP = "project_daily_cap"
ORG_CAP = "org_cap"
DAILY_POT_EXHAUSTED = "daily_pot_exhausted"
POOL_EXHAUSTED = "pool_exhausted"
NO_POOL = "no_pool"


class GiftContext(NamedTuple):
    """What a rule looks at for one gift (the engine builds it once per gift)."""

    order_id: str
    amount_fen: int
    donor_key: str  # "u<user id>", or "x<payer hash>" for a guest
    project_id: int
    organization_id: int
    day: str  # the campaign day, ISO date, China time
    hhmm: str  # the time of payment, "HH:MM" China time


class Decision(NamedTuple):
    """The match one pool's rule gives one gift: ``matched_fen`` > 0 means matched.

    ``reason`` is ``""`` for a full match, the code of the cap that cut a partial match, or
    why there is no match at all; ``params`` holds the numbers the explanation shows.
    """

    matched_fen: int
    reason: str
    params: dict[str, Any] | None = None


# Multiplier: gift → (num, den); the match is multiplied by num/den before the caps apply.
Multiplier = Callable[[GiftContext], tuple[int, int]]
_multipliers: dict[str, Multiplier] = {}


def register_multiplier(name: str, multiplier: Multiplier) -> None:
    """Register an engagement multiplier (e.g. "friends who helped") under ``name``.

    A rule version lists the names it applies (``RuleParams.multipliers``). None is
    registered by default; a name no multiplier is registered under counts as 1:1.
    """
    _multipliers[name] = multiplier


def unregister_multiplier(name: str) -> None:
    """Remove a registered multiplier (tests)."""
    _multipliers.pop(name, None)


def registered_multipliers() -> list[str]:
    """Names of the registered multipliers."""
    return sorted(_multipliers)


def draw(seed: int, order_id: str, options: tuple[RatioOption, ...]) -> RatioOption:
    """Draw one random-ratio option for ``order_id``, reproducibly from ``seed``.

    A hash (BLAKE2b of seed and order id), not a random generator: the same order always
    draws the same option, in any process and in any order of processing.
    """
    total = sum(o.weight for o in options)
    digest = hashlib.blake2b(f"{seed}:{order_id}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") % total
    for option in options:
        point -= option.weight
        if point < 0:
            return option
    return options[-1]  # pragma: no cover - the weights cover every point


def in_windows(windows: tuple[Window, ...], hhmm: str) -> bool:
    """True when ``hhmm`` falls in one of the windows (``end`` exclusive)."""
    return any(w.start <= hhmm < w.end for w in windows)


# (cap field, key tag, reason code) in the order the caps apply.
_CAPS = (
    ("per_donor_daily_cap_fen", "d", DONOR_DAILY_CAP),
    ("per_project_daily_cap_fen", "j", PROJECT_DAILY_CAP),
    ("per_org_cap_fen", "o", ORG_CAP),
    ("daily_pot_fen", "t", DAILY_POT_EXHAUSTED),
)
# The caps a rule has, worked out once per rule version (params are immutable).
_active: dict[int, tuple[RuleParams, tuple[tuple[int, str, str], ...]]] = {}


def active_caps(params: RuleParams) -> tuple[tuple[int, str, str], ...]:
    """The rule's caps as ``(cap_fen, key tag, reason code)``, in the order they apply."""
    found = _active.get(id(params))
    if found is not None and found[0] is params:
        return found[1]
    caps = tuple((cap, tag, code) for name, tag, code in _CAPS
                 if (cap := getattr(params, name)) is not None)
    if len(_active) > 10_000:
        _active.clear()
    _active[id(params)] = (params, caps)
    return caps


def cap_key(pool_id: int, tag: str, gift: GiftContext) -> str:
    """The counter key of one cap of a pool for ``gift`` (see the key list above)."""
    if tag == "d":
        return f"p{pool_id}:d:{gift.donor_key}:{gift.day}"
    if tag == "j":
        return f"p{pool_id}:j:{gift.project_id}:{gift.day}"
    if tag == "o":
        return f"p{pool_id}:o:{gift.organization_id}"
    return f"p{pool_id}:t:{gift.day}"


def counter_keys(params: RuleParams, pool_id: int, gift: GiftContext) -> list[str]:
    """The counter keys this rule reads and writes for ``gift``."""
    return [cap_key(pool_id, tag, gift) for _, tag, _ in active_caps(params)]


def all_counter_keys(pool_id: int, gift: GiftContext) -> list[str]:
    """Every counter key a pool may keep for ``gift``, whatever its rule's caps."""
    return [
        f"p{pool_id}:d:{gift.donor_key}:{gift.day}",
        f"p{pool_id}:j:{gift.project_id}:{gift.day}",
        f"p{pool_id}:o:{gift.organization_id}",
        f"p{pool_id}:t:{gift.day}",
    ]


def decide(
    params: RuleParams,
    *,
    pool_id: int,
    gift: GiftContext,
    counters: dict[str, int],
    remaining_fen: int,
    keys: list[str] | None = None,
) -> Decision:
    """Decide one gift's match from one pool's rule version; on a match, count it in.

    Order: window → minimum gift → ratio (fixed, or random with its floor) → engagement
    multipliers → per-gift maximum → per-donor-per-day cap → per-project-per-day cap →
    per-organization cap → daily pot → what is left in the pool. A cap that cuts the match
    down leaves a partial match whose reason is that cap's code; a cap with nothing left
    refuses the match with that code. ``counters`` must hold the keys of
    :func:`counter_keys` (missing keys count as 0); ``keys``, if given, are those keys
    already worked out (the engine builds them once per gift).
    """
    amount = gift.amount_fen
    if params.windows and not in_windows(params.windows, gift.hhmm):
        return Decision(0, OUTSIDE_HOURS, {"windows": [[w.start, w.end] for w in params.windows]})
    if amount < params.min_gift_fen:
        return Decision(0, BELOW_MINIMUM, {"min_gift_fen": params.min_gift_fen})

    if params.random is not None:
        option = draw(params.seed, gift.order_id, params.random)
        if option.num == 0:
            return Decision(0, RANDOM_NOT_MATCHED, None)
        match = amount * option.num // option.den
        if match < params.floor_fen:
            match = min(params.floor_fen, amount)
    else:
        match = amount * params.ratio_num // params.ratio_den
    for name in params.multipliers:
        multiplier = _multipliers.get(name)
        if multiplier is not None:
            num, den = multiplier(gift)
            if num >= 0 and den > 0:
                match = match * num // den
    if match <= 0:
        return Decision(0, RANDOM_NOT_MATCHED if params.random is not None else NO_POOL, None)

    reason = MATCHED
    cut: dict[str, Any] | None = None
    if params.max_match_per_gift_fen is not None and match > params.max_match_per_gift_fen:
        match = params.max_match_per_gift_fen
        cut = {"max_match_per_gift_fen": match}

    caps = active_caps(params)
    if keys is None:
        keys = [cap_key(pool_id, tag, gift) for _, tag, _ in caps]
    for (cap, _, code), key in zip(caps, keys, strict=True):
        left = cap - counters.get(key, 0)
        if left <= 0:
            return Decision(0, code, {"cap_fen": cap})
        if match > left:
            match, reason, cut = left, code, {"cap_fen": cap, "wanted_fen": match}
    if remaining_fen <= 0:
        return Decision(0, POOL_EXHAUSTED, None)
    if match > remaining_fen:
        match, reason, cut = remaining_fen, POOL_EXHAUSTED, {"wanted_fen": match}
    for key in keys:
        counters[key] = counters.get(key, 0) + match
    return Decision(match, reason, cut)
