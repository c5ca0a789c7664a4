"""Amounts typed in the giving-day configuration forms are read exactly as meant (issue 11,
item 11): commas only between groups of three, no underscores or exponents."""

from __future__ import annotations

import pytest

from shanju.campaigns.service import parse_yuan_field
from shanju.core.errors import InvalidInput


@pytest.mark.parametrize(("text", "fen"), [("1,000", 100_000), ("１，０００．５", 100_050),
                                           ("", None), ("0", 0)])
def test_pool_amounts_read_grouped_and_full_width(text: str, fen: int | None) -> None:
    assert parse_yuan_field(text, field="budget", allow_zero=True) == fen


@pytest.mark.parametrize(("text", "code"), [("5,00", "amount_bad_separator"),
                                            ("1_000", "amount_not_a_number"),
                                            ("2e5", "amount_not_a_number")])
def test_pool_amounts_refuse_what_could_be_misread(text: str, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_yuan_field(text, field="budget")
    assert info.value.code == code and info.value.field == "budget"
