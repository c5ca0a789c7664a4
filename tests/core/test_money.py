"""Money for people: yuan strings to integer fen and back, never through floats."""

from __future__ import annotations

from decimal import Decimal

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
    read_yuan,
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


# --- amounts read exactly as meant (issue 11, item 11) ----------------------------------------


@pytest.mark.parametrize(
    ("text", "fen"),
    [("1,000", 100_000), ("12,345.67", 1_234_567), ("1,234,567", 123_456_700),
     ("１，０００", 100_000), ("１２．５", 1_250), ("￥ 20", 2_000), ("　20　", 2_000)],
)
def test_parse_yuan_reads_thousands_separators_and_full_width(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    ("text", "code"),
    [("5,00", "amount_bad_separator"), ("1,0000", "amount_bad_separator"),
     (",100", "amount_bad_separator"), ("1,,000", "amount_bad_separator"),
     ("1000,", "amount_bad_separator"), ("12,34.5", "amount_bad_separator"),
     ("1_000", "amount_not_a_number"), ("1e3", "amount_not_a_number"),
     ("1E2", "amount_not_a_number"), ("1 000", "amount_not_a_number"),
     ("٥", "amount_not_a_number"), ("5。00", "amount_not_a_number"),
     ("0x10", "amount_not_a_number"), ("1" * 41, "amount_not_a_number")],
)
def test_parse_yuan_refuses_what_could_be_misread(text: str, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_yuan(text, field="amount")
    assert info.value.code == code and info.value.field == "amount"


@given(st.integers(min_value=1, max_value=MAX_DONATION_FEN))
def test_grouped_amounts_round_trip(fen: int) -> None:
    yuan, part = divmod(fen, 100)
    assert parse_yuan(f"{yuan:,}.{part:02d}") == fen
    if yuan:
        assert parse_yuan(f"¥{yuan:,}") == yuan * 100


@given(st.lists(st.text("0123456789", min_size=1, max_size=5), min_size=2, max_size=5))
def test_commas_outside_groups_of_three_are_refused(groups: list[str]) -> None:
    text = ",".join(groups)
    well_grouped = len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
    if well_grouped:
        assert read_yuan(text + ".01") == Decimal("".join(groups)) + Decimal("0.01")
    else:
        with pytest.raises(InvalidInput) as info:
            parse_yuan(text)
        assert info.value.code == "amount_bad_separator"


@given(st.text(max_size=30))
def test_anything_accepted_is_plain_digits_with_grouping(text: str) -> None:
    try:
        fen = parse_yuan(text)
    except InvalidInput:
        return
    plain = text.translate(str.maketrans("０１２３４５６７８９，．", "0123456789,.")).strip()
    plain = plain.strip("\u3000").lstrip("¥￥").strip().lstrip("+")
    assert set(plain) <= set("0123456789,.")
    assert Decimal(plain.replace(",", "")) * 100 == fen
