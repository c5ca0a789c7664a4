"""Money for people: yuan strings to integer fen and back, never through floats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shanju.core.errors import InvalidInput
from shanju.core.money import (
    MAX_DONATION_FEN,
    check_amount_fen,
    fen_to_yuan_str,
    format_fen,
    parse_yuan,
)


@pytest.mark.parametrize(
    ("text", "fen"),
    [("20", 2000), ("9.90", 990), ("0.01", 1), (" 1,234.5 ", 123450), ("¥3", 300),
     ("￥0.1", 10), ("100.00", 10000)],
)
def test_parse_yuan(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "amount_not_a_number"), ("abc", "amount_not_a_number"), ("1e", "amount_not_a_number"),
     ("NaN", "amount_not_a_number"), ("Infinity", "amount_not_a_number"),
     ("0.001", "amount_not_whole_fen"), ("1.005", "amount_not_whole_fen"),
     ("0", "amount_not_positive"), ("-5", "amount_not_positive"),
     ("100000000.01", "amount_too_large")],
)
def test_parse_yuan_refuses(text: str, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_yuan(text, field="amount")
    assert info.value.code == code
    assert info.value.field == "amount"


@pytest.mark.parametrize("value", [1.5, "100", True, None, 0, -1])
def test_check_amount_fen_wants_a_positive_int(value: object) -> None:
    with pytest.raises(InvalidInput):
        check_amount_fen(value)


@given(st.integers(min_value=1, max_value=MAX_DONATION_FEN))
def test_yuan_string_round_trips(fen: int) -> None:
    assert parse_yuan(fen_to_yuan_str(fen)) == fen


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_fen_to_yuan_str_is_exact(fen: int) -> None:
    text = fen_to_yuan_str(fen)
    whole, part = text.lstrip("-").split(".")
    assert len(part) == 2
    assert (int(whole) * 100 + int(part)) * (-1 if text.startswith("-") else 1) == fen


@pytest.mark.parametrize(
    ("fen", "locale", "cents", "shown"),
    [(123456, "zh_CN", True, "¥1,234.56"), (5, "zh_CN", True, "¥0.05"),
     (0, "zh_CN", True, "¥0.00"), (100_000_000, "zh_CN", False, "¥1,000,000"),
     (123456, "en", True, "¥1,234.56"), (123456, "zh_CN", False, "¥1,234.56"),
     (-500, "en", True, "-¥5.00"), (10**12 + 1, "zh_CN", True, "¥10,000,000,000.01")],
)
def test_format_fen(fen: int, locale: str, cents: bool, shown: str) -> None:
    assert format_fen(fen, locale, cents=cents) == shown
