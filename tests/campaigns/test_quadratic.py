"""Quadratic funding's pure rule: a hand-computed round, exact sums, caps, monotone weights."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shanju.campaigns.quadratic import (
    SQRT_DIGITS,
    allocate,
    group_contributions,
    scaled_sqrt,
    weight,
)

ONE = 10**SQRT_DIGITS  # r(c) of a perfect square c = k² is k · ONE


def example() -> dict[int, list[int]]:
    """The round of :func:`test_hand_computed_round` (donor totals per project, in fen)."""
    gifts = [
        # project 1: donor a gives ¥1 then ¥3 (one contribution of 400 fen), b and c ¥1, d ¥25
        (1, "a", 100), (1, "a", 300), (1, "b", 100), (1, "c", 100), (1, "d", 2_500),
        # project 2: one donor gives ¥100
        (2, "e", 10_000),
        # project 3: nine donors give ¥9 each
        *[(3, f"n{i}", 900) for i in range(9)],
    ]
    return group_contributions(gifts)


def test_hand_computed_round() -> None:
    """Pool ¥10,000 = 1,000,000 fen, no cap. All contributions are perfect squares, so the
    rule's square roots are exact (√c = k, r(c) = k·10¹²; the common factor 10²⁴ cancels).

    project 1: √400 + √100 + √100 + √2500 = 20 + 10 + 10 + 50 = 90    → W₁ = 8,100
    project 2: √10000                     = 100                      → W₂ = 10,000
    project 3: 9 × √900                   = 270                      → W₃ = 72,900
    ΣW = 91,000.   (Project 2 raised the most — 10,000 fen against 3,100 and 8,100 — yet
    project 3's nine donors weigh seven times more.)

    exact shares 1,000,000·W/ΣW:
      1: 8,100,000,000 / 91,000  = 89,010  remainder 90,000
      2: 10,000,000,000 / 91,000 = 109,890 remainder 10,000
      3: 72,900,000,000 / 91,000 = 801,098 remainder 82,000
    floors sum to 999,998: 2 fen left, to the two largest remainders (projects 1 and 3).
    → 89,011 + 109,890 + 801,099 = 1,000,000.
    """
    contributions = example()
    assert contributions == {1: [400, 100, 100, 2_500], 2: [10_000], 3: [900] * 9}
    shares = allocate(1_000_000, contributions)
    assert [shares[p].weight for p in (1, 2, 3)] == [
        8_100 * ONE**2, 10_000 * ONE**2, 72_900 * ONE**2]
    assert [shares[p].share_fen for p in (1, 2, 3)] == [89_011, 109_890, 801_099]
    assert [shares[p].contributors for p in (1, 2, 3)] == [4, 1, 9]
    assert [shares[p].contributed_fen for p in (1, 2, 3)] == [3_100, 10_000, 8_100]
    assert not any(s.capped for s in shares.values())


def test_hand_computed_round_with_cap() -> None:
    """The same round with a cap of ¥5,000 = 500,000 fen per project.

    Project 3's exact share 801,098.9 is above the cap: it gets 500,000 and leaves.
    500,000 fen are left for projects 1 and 2 (ΣW = 8,100 + 10,000 = 18,100):
      1: 4,050,000,000 / 18,100 = 223,756 remainder 16,400 → both below the cap
      2: 5,000,000,000 / 18,100 = 276,243 remainder  1,700
    floors sum to 499,999: the last fen to project 1 (larger remainder).
    → 223,757 + 276,243 + 500,000 = 1,000,000.
    """
    shares = allocate(1_000_000, example(), cap_fen=500_000)
    assert [shares[p].share_fen for p in (1, 2, 3)] == [223_757, 276_243, 500_000]
    assert [shares[p].capped for p in (1, 2, 3)] == [False, False, True]


def test_every_project_capped_leaves_the_rest_in_the_pool() -> None:
    """Cap 100,000: project 3 is capped first, then 900,000 over 1 and 2 puts both above the
    cap too (402,762 and 497,237): 3 × 100,000 are shared, 700,000 stay in the pool."""
    shares = allocate(1_000_000, example(), cap_fen=100_000)
    assert [shares[p].share_fen for p in (1, 2, 3)] == [100_000] * 3
    assert all(s.capped for s in shares.values())


def test_ties_go_to_the_lower_project_id() -> None:
    """Equal weights, 5 fen for 2 projects: 2 each, the odd fen to the lower id."""
    shares = allocate(5, {7: [100], 3: [100]})
    assert shares[3].share_fen == 3 and shares[7].share_fen == 2
    assert list(shares) == [3, 7]


def test_a_project_without_contributions_gets_nothing() -> None:
    shares = allocate(1_000, {1: [], 2: [4]})
    assert shares[1].share_fen == 0 and shares[1].weight == 0
    assert shares[2].share_fen == 1_000


def test_no_contributions_leave_the_pool_whole() -> None:
    assert allocate(1_000, {}) == {}
    assert sum(s.share_fen for s in allocate(1_000, {1: []}).values()) == 0


def test_square_roots_are_rounded_down_to_the_stated_digits() -> None:
    assert scaled_sqrt(400) == 20 * ONE
    assert scaled_sqrt(2) == 1_414_213_562_373  # √2 = 1.414213562373095...
    assert weight([2, 2]) == (2 * 1_414_213_562_373) ** 2


@pytest.mark.parametrize("bad", [0, -1, 1.0, True])
def test_a_contribution_must_be_positive_whole_fen(bad: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        allocate(100, {1: [bad]})  # type: ignore[list-item]


@pytest.mark.parametrize(("pool", "cap"), [(-1, None), (1.5, None), (100, -1)])
def test_pool_and_cap_are_whole_non_negative_fen(pool: object, cap: object) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        allocate(pool, {1: [1]}, cap_fen=cap)  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------

amounts = st.integers(min_value=1, max_value=10**9)
rounds = st.dictionaries(
    st.integers(min_value=1, max_value=10_000),
    st.lists(amounts, max_size=8),
    max_size=12,
)
pools = st.integers(min_value=0, max_value=10**12)
caps = st.none() | st.integers(min_value=0, max_value=10**11)


@settings(max_examples=300, deadline=None)
@given(pool=pools, contributions=rounds, cap=caps)
def test_shares_sum_exactly_and_respect_the_cap(
    pool: int, contributions: dict[int, list[int]], cap: int | None
) -> None:
    shares = allocate(pool, contributions, cap_fen=cap)
    total = sum(s.share_fen for s in shares.values())
    contributing = sum(1 for cs in contributions.values() if cs)
    if not contributing:
        expected = 0
    elif cap is None:
        expected = pool
    else:
        expected = min(pool, cap * contributing)
    assert total == expected
    for project_id, share in shares.items():
        assert share.share_fen >= 0
        if cap is not None:
            assert share.share_fen <= cap
        if not contributions[project_id]:
            assert share.share_fen == 0


@settings(max_examples=200, deadline=None)
@given(pool=pools, contributions=rounds)
def test_largest_remainder_stays_within_a_fen_of_the_exact_share(
    pool: int, contributions: dict[int, list[int]]
) -> None:
    """Without caps each share is its exact share rounded down or up (never further off)."""
    from fractions import Fraction

    shares = allocate(pool, contributions)
    total_weight = sum(s.weight for s in shares.values())
    for share in shares.values():
        if total_weight:
            exact = Fraction(pool * share.weight, total_weight)
            assert exact - 1 < share.share_fen < exact + 1


@settings(max_examples=200, deadline=None)
@given(pool=pools, contributions=rounds, cap=caps, data=st.data())
def test_the_same_round_in_any_order_gives_the_same_shares(
    pool: int, contributions: dict[int, list[int]], cap: int | None, data: st.DataObject
) -> None:
    shuffled = {p: data.draw(st.permutations(cs)) for p, cs in
                data.draw(st.permutations(list(contributions.items())))}
    assert allocate(pool, shuffled, cap_fen=cap) == allocate(pool, contributions, cap_fen=cap)


@settings(max_examples=300, deadline=None)
@given(contributions=st.lists(amounts, max_size=10), more=st.lists(amounts, min_size=1,
       max_size=5), raise_by=st.integers(min_value=0, max_value=10**6))
def test_more_donors_or_more_money_never_lower_a_weight(
    contributions: list[int], more: list[int], raise_by: int
) -> None:
    before = weight(contributions)
    assert weight(contributions + more) > before
    if contributions:
        assert weight([contributions[0] + raise_by, *contributions[1:]]) >= before


@settings(max_examples=200, deadline=None)
@given(pool=st.integers(min_value=1, max_value=10**10), contributions=rounds,
       project=st.integers(min_value=1, max_value=10_000), new_donor=amounts)
def test_a_new_donor_never_costs_the_project_more_than_a_rounding_fen(
    pool: int, contributions: dict[int, list[int]], project: int, new_donor: int
) -> None:
    """A donor joining raises the project's weight, hence its exact share; its fen share can
    only lose the odd fen of the largest-remainder step."""
    before = allocate(pool, contributions).get(project)
    grown = {**contributions, project: [*contributions.get(project, []), new_donor]}
    after = allocate(pool, grown)[project]
    assert after.share_fen >= (before.share_fen - 1 if before else 0)


def test_group_contributions_sums_a_donors_gifts_per_project() -> None:
    grouped = group_contributions([(2, "x", 5), (1, "x", 3), (2, "x", 7), (2, "y", 1)])
    assert grouped == {1: [3], 2: [12, 1]}
