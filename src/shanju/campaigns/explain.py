"""Why a gift was (or was not) matched, in plain words — for the donor and for reviewers.

Every matching decision stores a stable reason code and its parameters on the gift
(``CampaignGift.reason`` / ``reason_params``, e.g. ``donor_daily_cap`` with
``{"cap_fen": 99900}``) and a match status. :func:`explain` turns them into:

- ``title``: a short label of the reason (lists, the reviewer's queue);
- ``donor``: what the donor reads on their gift's page ("why was my gift not matched?"):
  what happened to the match, then why, with the numbers that applied (the cap in yuan, the
  hold's end date);
- ``reviewer``: the same plus the rule's mechanics, for people checking the decision.

Messages are English msgids (``N_``) translated from ``messages.po``. Parameters:
money keys end in ``_fen`` and are shown as yuan under the name without the suffix
(``cap_fen`` → ``%(cap)s``); the rule's own names are understood too (``min_gift_fen``,
``max_match_per_gift_fen``, ``windows`` as ``[[start, end], ...]`` or ``opens_at`` and
``closes_at``). A message whose parameters are missing falls back to its wording without
numbers, so an old or partial ``reason_params`` never breaks a page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shanju.campaigns.models import MatchStatus
from shanju.core import i18n
from shanju.core.clock import CHINA_TZ
from shanju.core.i18n import N_
from shanju.core.money import format_fen


@dataclass(frozen=True, slots=True)
class _Reason:
    title: str
    donor: str  # may use parameters (see `needs`)
    donor_plain: str  # the same without parameters
    reviewer: str
    reviewer_plain: str
    needs: tuple[str, ...] = ()


def _plain(title: str, donor: str, reviewer: str) -> _Reason:
    return _Reason(title, donor, donor, reviewer, reviewer)


REASONS: dict[str, _Reason] = {
    # --- the campaign and the project --------------------------------------------------------
    "campaign_not_live": _plain(
        N_("The giving day was not running"),
        N_("Matching only runs while the giving day is live, and it was not when your gift "
           "was paid."),
        N_("The campaign was not live (draft, scheduled or ended) when the gift was paid; no "
           "pool was tried."),
    ),
    "outside_hours": _Reason(
        N_("Outside matching hours"),
        N_("Matching is open %(hours)s (China time) on each day of the giving day, and your "
           "gift was paid outside those hours."),
        N_("Matching runs only during the giving day's daily hours, and your gift was paid "
           "outside them."),
        N_("Paid outside the matching hours (%(hours)s China time: the campaign's opening "
           "hours or the pool rule's windows)."),
        N_("Paid outside the campaign's opening hours or the pool rule's windows."),
        needs=("hours",),
    ),
    "not_enrolled": _plain(
        N_("Project not in the giving day"),
        N_("This project is not taking part in the giving day's matching."),
        N_("The project has no approved enrolment in this campaign."),
    ),
    "matching_frozen": _Reason(
        N_("Matching paused for this project"),
        N_("Platform reviewers have paused matching for this project while they look into "
           "it."),
        N_("Platform reviewers have paused matching for this project while they look into "
           "it."),
        N_("A reviewer froze matching for this project's enrolment. Reason given: "
           "%(frozen_reason)s"),
        N_("A reviewer froze matching for this project's enrolment."),
        needs=("frozen_reason",),
    ),
    # --- the pool's rule ---------------------------------------------------------------------
    "below_minimum": _Reason(
        N_("Below the minimum for a match"),
        N_("Only gifts of %(min)s or more are matched."),
        N_("Your gift was below the smallest amount that is matched."),
        N_("The gift is below the pool rule's minimum qualifying amount (%(min)s)."),
        N_("The gift is below the pool rule's minimum qualifying amount."),
        needs=("min",),
    ),
    "random_not_matched": _plain(
        N_("Not drawn for a match"),
        N_("This sponsor matches gifts at a random ratio and not every gift is matched; this "
           "one was not drawn."),
        N_("The pool's random ratio drew a no-match outcome for this order (reproducible from "
           "the rule's seed and the order id)."),
    ),
    "donor_daily_cap": _Reason(
        N_("Daily match limit per donor reached"),
        N_("Each donor can receive at most %(cap)s of matching a day, and your gifts today "
           "have reached that limit."),
        N_("Each donor's matching has a daily limit, and your gifts today have reached it."),
        N_("The pool rule's per-donor daily cap (%(cap)s) was reached: the match was cut to "
           "what was left of it, or refused."),
        N_("The pool rule's per-donor daily cap was reached: the match was cut to what was "
           "left of it, or refused."),
        needs=("cap",),
    ),
    "project_daily_cap": _Reason(
        N_("Project's daily match limit reached"),
        N_("This project can receive at most %(cap)s of matching a day, and today's amount "
           "has been reached."),
        N_("This project's matching for today has reached its daily limit."),
        N_("The pool rule's per-project daily cap (%(cap)s) was reached: the match was cut to "
           "what was left of it, or refused."),
        N_("The pool rule's per-project daily cap was reached: the match was cut to what was "
           "left of it, or refused."),
        needs=("cap",),
    ),
    "org_cap": _Reason(
        N_("Organization's match limit reached"),
        N_("The organization receiving this gift can get at most %(cap)s of matching in this "
           "giving day, and it has been reached."),
        N_("The organization receiving this gift has reached its matching limit for this "
           "giving day."),
        N_("The pool rule's per-organization cap over the campaign (%(cap)s) was reached: the "
           "match was cut to what was left of it, or refused."),
        N_("The pool rule's per-organization cap over the campaign was reached: the match was "
           "cut to what was left of it, or refused."),
        needs=("cap",),
    ),
    "daily_pot_exhausted": _Reason(
        N_("Today's matching money used up"),
        N_("The sponsor puts up %(cap)s of matching a day, and today's has all been given "
           "out. Matching starts again at the next day's opening."),
        N_("The sponsor's matching money for today has all been given out. Matching starts "
           "again at the next day's opening."),
        N_("The pool's daily pot (%(cap)s) was spent."),
        N_("The pool's daily pot was spent."),
        needs=("cap",),
    ),
    "pool_exhausted": _plain(
        N_("Sponsor's matching money used up"),
        N_("The sponsor's matching money has all been given out."),
        N_("The pool's remaining money was used up (less was left than the match)."),
    ),
    "no_pool": _plain(
        N_("No matching money for this gift"),
        N_("No sponsor's matching money was available for this gift."),
        N_("No active matching pool's rule applied to this gift."),
    ),
    # --- anti-fraud (campaigns/fraud.py) -----------------------------------------------------
    "staff_own_org": _plain(
        N_("Staff giving to their own organization"),
        N_("Gifts from an organization's own staff to its projects are welcome, but they are "
           "not matched, so that sponsors' money goes to gifts from the public."),
        N_("Anti-fraud: the donor is staff of the organization receiving the gift; staff "
           "gifts to their own organization are never matched."),
    ),
    "too_fast": _Reason(
        N_("Too many gifts in one minute"),
        N_("A person gives at most about %(limit)s gifts a minute, so no more than %(limit)s "
           "gifts a minute from one donor are matched."),
        N_("Only a few gifts a minute from one donor are matched, and this gift was beyond "
           "that."),
        N_("Anti-fraud: the donor already had %(limit)s matched gifts in this minute (China "
           "time); matches beyond that are withheld."),
        N_("Anti-fraud: the donor already had the most matched gifts allowed in this minute; "
           "matches beyond that are withheld."),
        needs=("limit",),
    ),
    "split_gift": _Reason(
        N_("Too many gifts to one project in a day"),
        N_("At most %(limit)s gifts a day from one donor to the same project are matched, and "
           "this was your gift number %(gift_number)s to it today."),
        N_("Only the first few gifts a day from one donor to the same project are matched, "
           "and this gift was beyond them."),
        N_("Anti-fraud (one sum split into many gifts): gift number %(gift_number)s from this "
           "donor to this project on this China-time day; only the first %(limit)s are "
           "matched."),
        N_("Anti-fraud (one sum split into many gifts): too many gifts from this donor to "
           "this project on this China-time day."),
        needs=("limit", "gift_number"),
    ),
    "shared_payer": _Reason(
        N_("Payment account shared by many accounts"),
        N_("The payment account you paid with has been used by several donor accounts in this "
           "giving day, so the match waits through a public notice period before it is paid."),
        N_("The payment account you paid with has been used by several donor accounts in this "
           "giving day, so the match waits through a public notice period before it is paid."),
        N_("Anti-fraud: at least %(limit)s donor accounts have paid with this payment "
           "account (hashed) in the campaign, and this donor's account is not among the first "
           "%(allowed)s, so its matches are held. Release the match if the accounts look "
           "coordinated; otherwise it settles when the notice period ends."),
        N_("Anti-fraud: several donor accounts have paid with this payment account (hashed) "
           "in the campaign, so the match is held. Release it if the accounts look "
           "coordinated; otherwise it settles when the notice period ends."),
        needs=("limit", "allowed"),
    ),
    "shared_device": _Reason(
        N_("Device shared by many accounts"),
        N_("The device you gave from has been used by several donor accounts in this giving "
           "day, so the match waits through a public notice period before it is paid."),
        N_("The device you gave from has been used by several donor accounts in this giving "
           "day, so the match waits through a public notice period before it is paid."),
        N_("Anti-fraud: at least %(limit)s donor accounts have given from this device (hashed) "
           "in the campaign, and this donor's account is not among the first %(allowed)s, so "
           "its matches are held. Release the match if the accounts look coordinated; "
           "otherwise it settles when the notice period ends."),
        N_("Anti-fraud: several donor accounts have given from this device (hashed) in the "
           "campaign, so the match is held. Release it if the accounts look coordinated; "
           "otherwise it settles when the notice period ends."),
        needs=("limit", "allowed"),
    ),
}

# What happened to the match (MatchStatus), said first; the reason follows.
STATUS_TITLES: dict[str, str] = {
    MatchStatus.NONE: N_("Not matched"),
    MatchStatus.MATCHED: N_("Matched"),
    MatchStatus.HELD: N_("Match held"),
    MatchStatus.RELEASED: N_("Held match released"),
    MatchStatus.REVERSED: N_("Match reversed"),
}
_MATCHED_FULL = N_("Your gift of %(amount)s was matched with %(matched)s by a sponsor.")
_MATCHED_PARTLY = N_("Your gift of %(amount)s was matched with %(matched)s, less than the "
                     "rule's full ratio.")
_HELD_UNTIL = N_("A match of %(matched)s is held until %(until)s (the public notice period) "
                 "and is then paid to the project, unless reviewers release it.")
_HELD = N_("A match of %(matched)s is held through the public notice period and is then paid "
           "to the project, unless reviewers release it.")
_RELEASED = N_("The match that was held for this gift went back to the sponsor's pool after "
               "review; your gift itself went to the project in full.")
_REVERSED = N_("Your gift was refunded, so its match went back to the sponsor's pool.")
_NONE = N_("Your gift of %(amount)s went to the project in full, but it was not matched.")
_PER_GIFT_MAX = N_("A single gift is matched with at most %(max)s.")
# The heading of the donor's explanation: what it explains, as the donor would ask it.
_HEADINGS = {
    "matched": N_("About the match"),
    "partly": N_("Why was my gift only partly matched?"),
    "held": N_("Why is the match held?"),
    "released": N_("What happened to the match?"),
    "reversed": N_("What happened to the match?"),
    "none": N_("Why was my gift not matched?"),
}
_WHY = N_("Why: %(why)s")
_UNKNOWN_REASON = N_("Reason code: %(code)s")

# Parameter names the engine may use for the same number (the first found wins).
_ALIASES: dict[str, tuple[str, ...]] = {
    "min_fen": ("min_gift_fen",),
    "cap_fen": ("per_donor_daily_cap_fen", "per_project_daily_cap_fen", "per_org_cap_fen",
                "daily_pot_fen", "pot_fen", "limit_fen"),
    "max_fen": ("max_match_per_gift_fen",),
}


@dataclass(frozen=True, slots=True)
class Explanation:
    """A gift's matching decision in words (one language)."""

    status: str  # MatchStatus value
    reason: str  # the stable code ("" when matched without remark)
    status_title: str
    title: str  # the reason's label ("" when none)
    donor: str
    reviewer: str
    heading: str = ""  # the question the donor's explanation answers
    reason_text: str = ""  # why alone, for the donor ("" when matched without remark)

    @property
    def partly(self) -> bool:
        """A match, but less than the rule's full ratio (a cap, a pool running out)."""
        return self.status == MatchStatus.MATCHED and bool(self.reason)


def _values(locale: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    values: dict[str, Any] = dict(params or {})
    for name, others in _ALIASES.items():
        if name not in values:
            for other in others:
                if other in values:
                    values[name] = values[other]
                    break
    for key, value in list(values.items()):
        if key.endswith("_fen") and type(value) is int:
            values.setdefault(key[:-4], format_fen(value, locale, cents=False))
    if "hours" not in values:
        windows = values.get("windows")
        if "opens_at" in values and "closes_at" in values:
            windows = [[values["opens_at"], values["closes_at"]]]
        if isinstance(windows, list) and windows and all(
                isinstance(w, list | tuple) and len(w) == 2 for w in windows):
            sep = "、" if locale.startswith("zh") else ", "
            values["hours"] = sep.join(f"{a}–{b}" for a, b in windows)
    return values


def _say(locale: str, msgid: str, values: Mapping[str, Any]) -> str:
    text = i18n.gettext(locale, msgid)
    return text % values if "%(" in text else text


def _pick(locale: str, reason: _Reason, values: Mapping[str, Any]) -> tuple[str, str]:
    complete = all(values.get(name) not in (None, "") for name in reason.needs)
    donor = reason.donor if complete else reason.donor_plain
    reviewer = reason.reviewer if complete else reason.reviewer_plain
    return _say(locale, donor, values), _say(locale, reviewer, values)


def reason_title(code: str, locale: str) -> str:
    """Return the short label of a reason code (the code itself if unknown)."""
    reason = REASONS.get(code)
    return i18n.gettext(locale, reason.title) if reason else code


def _join(locale: str, *sentences: str) -> str:
    sep = "" if locale.startswith("zh") else " "
    return sep.join(s for s in sentences if s)


def explain(
    *,
    locale: str,
    match_status: str,
    reason: str,
    params: Mapping[str, Any] | None = None,
    amount_fen: int,
    matched_fen: int,
    hold_until: dt.datetime | None = None,
) -> Explanation:
    """Explain a gift's matching decision in ``locale`` for its donor and for reviewers."""
    values = _values(locale, params)
    values["amount"] = format_fen(amount_fen, locale)
    values["matched"] = format_fen(matched_fen, locale)
    if hold_until is not None:
        values["until"] = hold_until.astimezone(CHINA_TZ).strftime("%Y-%m-%d")
    status = str(match_status)
    known = REASONS.get(reason)
    if known is not None:
        why_donor, why_reviewer = _pick(locale, known, values)
    elif reason:
        why_donor = why_reviewer = _say(locale, _UNKNOWN_REASON, {"code": reason})
    else:
        why_donor = why_reviewer = ""

    if status == MatchStatus.MATCHED:
        head = _MATCHED_PARTLY if reason else _MATCHED_FULL
    elif status == MatchStatus.HELD:
        head = _HELD_UNTIL if hold_until is not None else _HELD
    elif status == MatchStatus.RELEASED:
        head = _RELEASED
    elif status == MatchStatus.REVERSED:
        head = _REVERSED
    else:
        head = _NONE
    headline = _say(locale, head, values)
    if status == MatchStatus.MATCHED and not reason and "max" in values:
        headline = _join(locale, headline, _say(locale, _PER_GIFT_MAX, values))
    if status == MatchStatus.MATCHED:
        heading = _HEADINGS["partly" if reason else "matched"]
    else:
        heading = _HEADINGS.get(status, _HEADINGS["none"])
    donor_why = _say(locale, _WHY, {"why": why_donor}) if why_donor else ""
    reviewer_why = _say(locale, _WHY, {"why": why_reviewer}) if why_reviewer else ""
    return Explanation(
        status=status,
        reason=reason,
        status_title=i18n.gettext(locale, STATUS_TITLES.get(status, STATUS_TITLES["none"])),
        title=reason_title(reason, locale) if reason else "",
        donor=_join(locale, headline, donor_why),
        reviewer=_join(locale, headline, reviewer_why),
        heading=i18n.gettext(locale, heading),
        reason_text=why_donor,
    )


def explain_gift(gift: Any, locale: str) -> Explanation:
    """Explain a :class:`~shanju.campaigns.models.CampaignGift` (or anything shaped like it)."""
    return explain(
        locale=locale, match_status=str(gift.match_status), reason=gift.reason or "",
        params=i18n.load_params(gift.reason_params), amount_fen=gift.amount_fen,
        matched_fen=gift.matched_fen, hold_until=gift.hold_until,
    )
