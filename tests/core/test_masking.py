"""Donor names are masked in public lists; anonymous gifts show no name at all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shanju.core.masking import mask_name


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三丰", "张**"), ("李四", "李*"), ("王", "王*"), ("alice", "a****"),
     ("欧阳娜娜娜娜娜", "欧****"), ("  赵敏 ", "赵*")],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize("name", [None, "", "   "])
def test_missing_names_are_shown_as_a_kind_person(name: str | None) -> None:
    assert mask_name(name) == "爱心人士"


def test_anonymous_gifts_hide_the_name() -> None:
    assert mask_name("张三丰", anonymous=True) == "爱心人士"


@given(st.text(min_size=2).filter(lambda s: len(s.strip()) >= 2))
def test_a_mask_reveals_only_the_first_character(name: str) -> None:
    masked = mask_name(name)
    assert masked[0] == name.strip()[0]
    assert set(masked[1:]) == {"*"}
    assert len(masked) <= 5
