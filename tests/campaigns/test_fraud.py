"""Anti-fraud rules, pure: each rule withholds (or holds) the match and says why.

The engine's way of calling them is imitated by :func:`run`: for each gift, in order, read its
counters, assess, decide, record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

import pytest

from shanju.campaigns import fraud
from shanju.campaigns.fraud import Action, GiftFacts, Verdict

T0 = dt.datetime(2026, 9, 7, 2, 0, 0, tzinfo=dt.UTC)  # 10:00 China time
_n = iter(range(1, 1_000_000))


def gift(*, donor: int | None = 1, project: int = 10, org: int = 100,
         donor_org: int | None = None, payer: str = "", device: str = "",
         at: dt.datetime = T0, amount: int = 100_00) -> GiftFacts:
    return GiftFacts(
        order_id=f"o_{next(_n)}", campaign_id=1, project_id=project, organization_id=org,
        donor_id=donor, donor_org_id=donor_org, amount_fen=amount, payer_hash=payer,
        device_hash=device, paid_at=at,
    )


def run(gifts: Iterable[GiftFacts], counters: dict[str, int] | None = None,
        *, matched_unless_refused: bool = True) -> list[Verdict]:
    """Assess and record gifts in order, as the engine does (a gift not refused is matched)."""
    counters = {} if counters is None else counters
    verdicts = []
    for facts in gifts:
        keys = fraud.counter_keys(facts)
        assert all(k.startswith("f:") and len(k) <= 120 for k in keys)
        verdict = fraud.assess(facts, counters)
        verdicts.append(verdict)
        matched = matched_unless_refused and verdict.action != Action.WITHHOLD
        fraud.record(facts, counters, matched=matched)
    return verdicts


def test_an_ordinary_gift_may_be_matched() -> None:
    assert fraud.assess(gift(payer="p1", device="d1"), {}) == fraud.OK


# --- staff_own_org ----------------------------------------------------------------------------


def test_staff_of_the_receiving_organization_get_no_match() -> None:
    verdict = fraud.assess(gift(org=100, donor_org=100), {})
    assert verdict.action == Action.WITHHOLD
    assert verdict.reason == "staff_own_org"


def test_staff_of_another_organization_are_matched() -> None:
    assert fraud.assess(gift(org=100, donor_org=200), {}).action == Action.OK


# --- too_fast ---------------------------------------------------------------------------------


def test_more_than_four_matched_gifts_in_a_minute_are_withheld() -> None:
    gifts = [gift(project=p, at=T0 + dt.timedelta(seconds=s))
             for p, s in zip(range(10, 16), (0, 5, 10, 20, 30, 59), strict=True)]
    verdicts = run(gifts)
    assert [v.action for v in verdicts] == [Action.OK] * 4 + [Action.WITHHOLD] * 2
    assert verdicts[4].reason == "too_fast"
    assert verdicts[4].params == {"limit": fraud.MAX_MATCHED_PER_MINUTE}


def test_a_late_gift_from_an_earlier_minute_does_not_reset_the_current_one() -> None:
    counters: dict[str, int] = {}
    run([gift(project=p, at=T0 + dt.timedelta(minutes=1)) for p in range(10, 14)], counters)
    late = run([gift(project=20, at=T0)], counters)  # paid a minute earlier, arrives now
    assert late == [fraud.OK]
    assert fraud.assess(gift(project=21, at=T0 + dt.timedelta(minutes=1, seconds=30)),
                        counters).reason == "too_fast"


def test_the_next_minute_starts_afresh_and_other_donors_are_not_counted() -> None:
    counters: dict[str, int] = {}
    run([gift(project=p) for p in range(10, 14)], counters)
    assert fraud.assess(gift(project=20), counters).reason == "too_fast"
    assert fraud.assess(gift(project=20, at=T0 + dt.timedelta(minutes=1)), counters) == fraud.OK
    assert fraud.assess(gift(donor=2, project=20), counters) == fraud.OK


def test_only_matched_gifts_count_towards_the_minute() -> None:
    counters: dict[str, int] = {}
    run([gift(project=p) for p in range(10, 16)], counters, matched_unless_refused=False)
    assert fraud.assess(gift(project=20), counters) == fraud.OK


def test_the_minute_is_the_china_time_minute_whatever_the_timezone_given() -> None:
    china = dt.timezone(dt.timedelta(hours=8))
    counters: dict[str, int] = {}
    run([gift(project=p) for p in range(10, 14)], counters)
    same_minute = (T0 + dt.timedelta(seconds=30)).astimezone(china)
    assert fraud.assess(gift(project=20, at=same_minute), counters).reason == "too_fast"
    naive_utc = (T0 + dt.timedelta(seconds=30)).replace(tzinfo=None)
    assert fraud.assess(gift(project=20, at=naive_utc), counters).reason == "too_fast"


# --- split_gift -------------------------------------------------------------------------------


def test_more_than_three_gifts_to_one_project_in_a_day_are_withheld() -> None:
    gifts = [gift(project=10, at=T0 + dt.timedelta(minutes=m)) for m in (0, 5, 60, 300, 600)]
    verdicts = run(gifts)
    assert [v.action for v in verdicts] == [Action.OK] * 3 + [Action.WITHHOLD] * 2
    assert verdicts[3].reason == "split_gift"
    assert verdicts[3].params == {"limit": 3, "gift_number": 4}
    assert verdicts[4].params["gift_number"] == 5


def test_split_counts_unmatched_gifts_too() -> None:
    verdicts = run([gift(project=10, at=T0 + dt.timedelta(minutes=m)) for m in range(4)],
                   matched_unless_refused=False)
    assert verdicts[3].reason == "split_gift"


def test_split_day_is_the_china_time_day() -> None:
    # 23:59 and 00:01 China time (15:59 and 16:01 UTC) are different days.
    before = dt.datetime(2026, 9, 7, 15, 59, tzinfo=dt.UTC)
    counters: dict[str, int] = {}
    run([gift(project=10, at=before - dt.timedelta(minutes=m)) for m in (30, 20, 10)], counters)
    assert fraud.assess(gift(project=10, at=before), counters).reason == "split_gift"
    after = dt.datetime(2026, 9, 7, 16, 1, tzinfo=dt.UTC)
    assert fraud.assess(gift(project=10, at=after), counters) == fraud.OK
    assert fraud.assess(gift(project=11, at=before), counters) == fraud.OK


# --- shared_payer / shared_device -------------------------------------------------------------


@pytest.mark.parametrize(("field", "reason"), [("payer", "shared_payer"),
                                               ("device", "shared_device")])
def test_the_third_account_on_one_payer_or_device_is_held(field: str, reason: str) -> None:
    counters: dict[str, int] = {}
    gifts = [gift(donor=d, **{field: "abc123"}) for d in (1, 2, 3, 4)]  # type: ignore[arg-type]
    verdicts = run(gifts, counters)
    assert [v.action for v in verdicts] == [Action.OK, Action.OK, Action.HOLD, Action.HOLD]
    assert verdicts[2].reason == reason
    assert verdicts[2].params == verdicts[3].params == {"limit": 3, "allowed": 2}
    # The first two accounts stay unheld; the third stays held on its next gift.
    later = [gift(donor=d, project=11, **{field: "abc123"})  # type: ignore[arg-type]
             for d in (1, 2, 3)]
    assert [v.action for v in run(later, counters)] == [Action.OK, Action.OK, Action.HOLD]


def test_the_first_two_accounts_are_remembered_whatever_their_ids() -> None:
    counters: dict[str, int] = {}
    big = 2**40 + 7
    first = run([gift(donor=d, payer="p") for d in (big, 2**31 - 1)], counters)
    assert first == [fraud.OK, fraud.OK]
    again = run([gift(donor=d, payer="p", project=11) for d in (2**31 - 1, big, 5)], counters)
    assert [v.action for v in again] == [Action.OK, Action.OK, Action.HOLD]


def test_one_account_with_many_gifts_on_one_payer_is_one_account() -> None:
    verdicts = run([gift(donor=1, project=p, payer="p1", device="d1",
                         at=T0 + dt.timedelta(minutes=p)) for p in range(10, 20)])
    assert all(v == fraud.OK for v in verdicts)


def test_guests_are_linked_by_device_but_one_payer_is_one_guest() -> None:
    counters: dict[str, int] = {}
    same_payer = [gift(donor=None, payer="p1", project=p) for p in (10, 11, 12)]
    assert all(v == fraud.OK for v in run(same_payer, counters))
    devices = [gift(donor=None, payer=f"p{n}", device="d9", project=20) for n in (2, 3, 4)]
    assert [v.action for v in run(devices, counters)] == [Action.OK, Action.OK, Action.HOLD]


def test_a_withhold_beats_a_hold() -> None:
    counters: dict[str, int] = {}
    run([gift(donor=d, payer="p1") for d in (1, 2)], counters)
    assert fraud.assess(gift(donor=3, payer="p1", donor_org=100), counters).reason == \
        "staff_own_org"


# --- the contract -----------------------------------------------------------------------------


def test_keys_are_stable_and_facts_compare_by_their_fields() -> None:
    a = gift(payer="p", device="d")
    b = dataclasses.replace(a)
    assert fraud.counter_keys(a) == fraud.counter_keys(b)
    assert a == b and hash(a) == hash(b)
    assert fraud.counter_keys(a) == ["f:m:u1", "f:s:u1:10:20703", "f:p:p", "f:d:d"]
    long = gift(donor=None, payer="0123456789abcdef" * 2, device="fedcba9876543210" * 2)
    assert fraud.counter_keys(long) == [
        "f:m:g0123456789abcdef", "f:s:g0123456789abcdef:10:20703", "f:d:fedcba9876543210"]


def test_record_changes_only_the_gifts_own_keys() -> None:
    counters: dict[str, int] = {"p1:donor:1:2026-09-07": 5}
    facts = gift(payer="p", device="d")
    fraud.record(facts, counters, matched=True)
    assert set(counters) - {"p1:donor:1:2026-09-07"} == set(fraud.counter_keys(facts))
    assert counters["p1:donor:1:2026-09-07"] == 5


def test_a_gift_without_donor_payer_or_device_has_no_counters() -> None:
    facts = gift(donor=None)
    assert fraud.counter_keys(facts) == []
    counters: dict[str, int] = {}
    fraud.record(facts, counters, matched=True)
    assert counters == {}
    assert fraud.assess(facts, counters) == fraud.OK


def test_same_facts_and_counters_give_the_same_verdict() -> None:
    counters: dict[str, int] = {}
    gifts = [gift(donor=d % 4, project=10 + d % 3, payer=f"p{d % 2}", device=f"d{d % 5}",
                  at=T0 + dt.timedelta(seconds=7 * d)) for d in range(60)]
    first = run(gifts, counters)
    again = run([dataclasses.replace(g) for g in gifts], {})
    assert first == again
