"""The matching decision: ratio, random ratio with floor, caps, windows, pool — one gift at a
time, purely from the rule, the counters and what the pool has left."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shanju.campaigns import rules
from shanju.campaigns.rules import Decision, GiftContext, RuleParams


def gift(amount: int = 10_000, *, order: str = "o_1", donor: str = "u1", project: int = 7,
         org: int = 3, day: str = "2026-09-07", hhmm: str = "10:30") -> GiftContext:
    return GiftContext(order_id=order, amount_fen=amount, donor_key=donor, project_id=project,
                       organization_id=org, day=day, hhmm=hhmm)


def decide(params: dict[str, Any], g: GiftContext, counters: dict[str, int] | None = None,
           remaining: int = 10**9) -> Decision:
    return rules.decide(RuleParams.model_validate(params), pool_id=5, gift=g,
                        counters={} if counters is None else counters, remaining_fen=remaining)


def test_fixed_ratio_rounds_down_to_the_fen() -> None:
    assert decide({}, gift(10_001)) == Decision(10_001, "", None)
    assert decide({"ratio_num": 1, "ratio_den": 2}, gift(10_001)).matched_fen == 5_000
    assert decide({"ratio_num": 1, "ratio_den": 3}, gift(100)).matched_fen == 33


def test_below_minimum_is_not_matched() -> None:
    d = decide({"min_gift_fen": 100}, gift(99))
    assert d == Decision(0, "below_minimum", {"min_gift_fen": 100})
    assert decide({"min_gift_fen": 100}, gift(100)).matched_fen == 100


def test_windows_end_exclusive() -> None:
    params = {"windows": [{"start": "10:00", "end": "12:00"}]}
    assert decide(params, gift(hhmm="10:00")).matched_fen == 10_000
    assert decide(params, gift(hhmm="11:59")).matched_fen == 10_000
    assert decide(params, gift(hhmm="12:00")).reason == "outside_hours"
    assert decide(params, gift(hhmm="09:59")).matched_fen == 0


def test_per_gift_max_cuts_without_a_cap_reason() -> None:
    d = decide({"max_match_per_gift_fen": 500}, gift(10_000))
    assert (d.matched_fen, d.reason) == (500, "")


@pytest.mark.parametrize(("cap", "key", "code"), [
    ("per_donor_daily_cap_fen", "p5:d:u1:2026-09-07", "donor_daily_cap"),
    ("per_project_daily_cap_fen", "p5:j:7:2026-09-07", "project_daily_cap"),
    ("per_org_cap_fen", "p5:o:3", "org_cap"),
    ("daily_pot_fen", "p5:t:2026-09-07", "daily_pot_exhausted"),
])
def test_each_cap_cuts_then_refuses(cap: str, key: str, code: str) -> None:
    counters = {key: 900}
    d = decide({cap: 1_000}, gift(300), counters)
    assert (d.matched_fen, d.reason) == (100, code)  # partial: cut to what the cap has left
    assert counters[key] == 1_000
    d = decide({cap: 1_000}, gift(300), counters)
    assert (d.matched_fen, d.reason) == (0, code)
    assert counters[key] == 1_000  # a refused match counts nothing


def test_the_last_cap_that_cuts_names_the_reason() -> None:
    counters = {"p5:d:u1:2026-09-07": 0, "p5:j:7:2026-09-07": 800}
    d = decide({"per_donor_daily_cap_fen": 500, "per_project_daily_cap_fen": 1_000},
               gift(1_000), counters)
    assert (d.matched_fen, d.reason) == (200, "project_daily_cap")
    assert counters == {"p5:d:u1:2026-09-07": 200, "p5:j:7:2026-09-07": 1_000}


def test_pool_remaining_cuts_and_exhausts() -> None:
    assert decide({}, gift(1_000), remaining=300) == Decision(300, "pool_exhausted",
                                                              {"wanted_fen": 1_000})
    assert decide({}, gift(1_000), remaining=0) == Decision(0, "pool_exhausted", None)


def test_counters_only_for_the_caps_the_rule_has() -> None:
    counters: dict[str, int] = {}
    decide({"per_org_cap_fen": 10**6}, gift(100), counters)
    assert counters == {"p5:o:3": 100}
    assert rules.counter_keys(RuleParams(per_org_cap_fen=5), 5, gift()) == ["p5:o:3"]


RANDOM = {"random": [{"weight": 1, "num": 0, "den": 1}, {"weight": 1, "num": 1, "den": 1},
                     {"weight": 2, "num": 1, "den": 10}], "floor_fen": 50, "seed": 42}


def test_random_ratio_is_reproducible_and_uses_every_option() -> None:
    outcomes = [decide(RANDOM, gift(1_000, order=f"o_{i}")) for i in range(400)]
    again = [decide(RANDOM, gift(1_000, order=f"o_{i}")) for i in range(400)]
    assert outcomes == again
    matched = {d.matched_fen for d in outcomes}
    assert matched == {0, 1_000, 100}
    assert {d.reason for d in outcomes if d.matched_fen == 0} == {"random_not_matched"}
    share = sum(d.matched_fen == 100 for d in outcomes) / 400
    assert 0.4 < share < 0.6  # weight 2 of 4


def test_random_ratio_depends_on_the_seed() -> None:
    a = [decide(RANDOM, gift(1_000, order=f"o_{i}")).matched_fen for i in range(50)]
    b = [decide({**RANDOM, "seed": 43}, gift(1_000, order=f"o_{i}")).matched_fen
         for i in range(50)]
    assert a != b


def test_floor_raises_small_matches_but_never_above_the_gift() -> None:
    params = {"random": [{"weight": 1, "num": 1, "den": 10}], "floor_fen": 50}
    assert decide(params, gift(200)).matched_fen == 50  # 20 raised to the floor
    assert decide(params, gift(30)).matched_fen == 30  # the floor never exceeds the gift
    assert decide({**params, "per_donor_daily_cap_fen": 40}, gift(200)).matched_fen == 40


def test_engagement_multiplier_hook() -> None:
    assert rules.registered_multipliers() == []
    params = {"multipliers": ["friends"], "per_donor_daily_cap_fen": 1_500}
    assert decide(params, gift(1_000)).matched_fen == 1_000  # unregistered: 1:1
    rules.register_multiplier("friends", lambda g: (3, 2) if g.amount_fen else (1, 1))
    try:
        d = decide(params, gift(1_000))
        assert d.matched_fen == 1_500
        d = decide(params, gift(2_000))
        assert (d.matched_fen, d.reason) == (1_500, "donor_daily_cap")  # caps still bind
    finally:
        rules.unregister_multiplier("friends")


caps = st.one_of(st.none(), st.integers(1, 5_000))


@st.composite
def rule_params(draw: st.DrawFn) -> RuleParams:
    random = draw(st.one_of(st.none(), st.lists(
        st.builds(rules.RatioOption, weight=st.integers(1, 5), num=st.integers(0, 3),
                  den=st.integers(1, 3)), min_size=1, max_size=3).map(tuple)))
    return RuleParams(
        ratio_num=draw(st.integers(0, 3)), ratio_den=draw(st.integers(1, 3)), random=random,
        floor_fen=draw(st.integers(0, 500)), seed=draw(st.integers(0, 2**62)),
        min_gift_fen=draw(st.integers(1, 300)), max_match_per_gift_fen=draw(caps),
        per_donor_daily_cap_fen=draw(caps), per_project_daily_cap_fen=draw(caps),
        per_org_cap_fen=draw(caps), daily_pot_fen=draw(caps),
    )


gift_args = st.tuples(st.integers(1, 3_000), st.sampled_from(["u1", "u2", "x9"]),
                      st.integers(1, 2), st.integers(1, 2), st.sampled_from(["d1", "d2"]))


@settings(max_examples=150, deadline=None)
@given(params=rule_params(), remaining=st.integers(0, 20_000),
       gifts=st.lists(gift_args, max_size=30))
def test_no_cap_or_pool_is_ever_exceeded(params: RuleParams, remaining: int,
                                         gifts: list[tuple[int, str, int, int, str]]) -> None:
    counters: dict[str, int] = {}
    spent: dict[str, int] = {}
    first: list[Decision] = []
    for i, (amount, donor, project, org, day) in enumerate(gifts):
        g = gift(amount, order=f"o_{i}", donor=donor, project=project, org=org, day=day)
        d = rules.decide(params, pool_id=5, gift=g, counters=counters, remaining_fen=remaining)
        first.append(d)
        assert 0 <= d.matched_fen <= remaining
        if d.matched_fen == 0:
            assert d.reason != ""
        if params.max_match_per_gift_fen is not None:
            assert d.matched_fen <= params.max_match_per_gift_fen
        if params.random is None:
            assert d.matched_fen <= max(amount * params.ratio_num // params.ratio_den, 0)
        remaining -= d.matched_fen
        for cap, key in (
            (params.per_donor_daily_cap_fen, f"d:{donor}:{day}"),
            (params.per_project_daily_cap_fen, f"j:{project}:{day}"),
            (params.per_org_cap_fen, f"o:{org}"),
            (params.daily_pot_fen, f"t:{day}"),
        ):
            spent[key] = spent.get(key, 0) + d.matched_fen
            if cap is not None:
                assert spent[key] <= cap
                assert counters.get(f"p5:{key}", 0) == spent[key]
    # Same rule, same gifts, same order: the same decisions.
    counters2: dict[str, int] = {}
    remaining2 = remaining + sum(d.matched_fen for d in first)
    for i, (amount, donor, project, org, day) in enumerate(gifts):
        g = gift(amount, order=f"o_{i}", donor=donor, project=project, org=org, day=day)
        d = rules.decide(params, pool_id=5, gift=g, counters=counters2, remaining_fen=remaining2)
        assert d == first[i]
        remaining2 -= d.matched_fen
