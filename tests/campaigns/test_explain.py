"""Every matching decision is explained to the donor and to reviewers, in Chinese and English."""

from __future__ import annotations

import datetime as dt

import pytest

from shanju.campaigns import explain, fraud
from shanju.campaigns.models import MatchStatus

# The reason codes of the engine contract (docs: notes/common.md, campaigns/engine.py).
RULE_CODES = ("campaign_not_live", "outside_hours", "not_enrolled", "matching_frozen",
              "below_minimum", "random_not_matched", "donor_daily_cap", "project_daily_cap",
              "org_cap", "daily_pot_exhausted", "pool_exhausted", "no_pool")
ALL_CODES = RULE_CODES + fraud.REASONS
PARAMS = {
    "outside_hours": {"windows": [["10:00", "12:00"], ["20:00", "22:00"]]},
    "matching_frozen": {"frozen_reason": "核查中"},
    "below_minimum": {"min_gift_fen": 1_00},
    "donor_daily_cap": {"cap_fen": 999_00},
    "project_daily_cap": {"cap_fen": 50_000_00},
    "org_cap": {"cap_fen": 200_000_00},
    "daily_pot_exhausted": {"cap_fen": 9_999_000_00},
    "too_fast": {"limit": 4},
    "split_gift": {"limit": 3, "gift_number": 4},
    "shared_payer": {"limit": 3, "allowed": 2},
    "shared_device": {"limit": 3, "allowed": 2},
}
# A number each explanation must show when its parameters are given.
SHOWN = {
    "outside_hours": "10:00", "matching_frozen": "核查中", "below_minimum": "¥1",
    "donor_daily_cap": "¥999", "project_daily_cap": "¥50,000", "org_cap": "¥200,000",
    "daily_pot_exhausted": "¥9,999,000", "too_fast": "4", "split_gift": "4",
}


def _explain(code: str, locale: str, *, status: str = MatchStatus.NONE,
             params: dict[str, object] | None = None, matched: int = 0,
             until: dt.datetime | None = None) -> explain.Explanation:
    return explain.explain(locale=locale, match_status=status, reason=code,
                           params=PARAMS.get(code, {}) if params is None else params,
                           amount_fen=100_00, matched_fen=matched, hold_until=until)


def test_every_reason_code_has_an_explanation() -> None:
    assert set(ALL_CODES) == set(explain.REASONS)


@pytest.mark.parametrize("code", ALL_CODES)
def test_each_reason_is_explained_in_both_languages_with_its_numbers(code: str) -> None:
    zh = _explain(code, "zh_CN")
    en = _explain(code, "en")
    for e in (zh, en):
        assert e.reason == code
        assert e.title and e.donor and e.reviewer
        assert "%(" not in e.donor + e.reviewer  # every placeholder filled in
        assert e.reviewer != e.donor  # reviewers get the mechanics
        if code in SHOWN:
            assert SHOWN[code] in e.donor or SHOWN[code] in e.reviewer
    assert zh.donor != en.donor and zh.title != en.title
    assert "¥100.00" in en.donor and "went to the project in full" in en.donor
    assert "已全额进入项目" in zh.donor


@pytest.mark.parametrize("code", ALL_CODES)
def test_missing_parameters_fall_back_to_words_without_numbers(code: str) -> None:
    for locale in ("zh_CN", "en"):
        e = _explain(code, locale, params={})
        assert e.donor and e.reviewer and "%(" not in e.donor + e.reviewer


def test_a_cap_is_shown_in_yuan() -> None:
    zh = _explain("donor_daily_cap", "zh_CN")
    assert "每位捐赠人每天最多可获得 ¥999 配捐" in zh.donor
    en = _explain("donor_daily_cap", "en")
    assert "at most ¥999 of matching a day" in en.donor


def test_hours_from_the_rules_windows_or_the_campaigns_opening() -> None:
    zh = _explain("outside_hours", "zh_CN")
    assert "每天 10:00–12:00、20:00–22:00（北京时间）开放配捐" in zh.donor
    en = _explain("outside_hours", "en", params={"opens_at": "10:00", "closes_at": "23:59"})
    assert "open 10:00–23:59 (China time)" in en.donor


def test_a_per_gift_maximum_is_said() -> None:
    e = _explain("", "en", status=MatchStatus.MATCHED, matched=50_00,
                 params={"max_match_per_gift_fen": 50_00})
    assert "matched with ¥50.00 by a sponsor. A single gift is matched with at most ¥50." == \
        e.donor.split("¥100.00 was ", 1)[1]


def test_the_engine_may_name_a_cap_by_its_rule_parameter() -> None:
    e = _explain("donor_daily_cap", "en", params={"per_donor_daily_cap_fen": 500_00})
    assert "¥500" in e.donor


def test_staff_explanation_for_the_donor() -> None:
    e = _explain("staff_own_org", "zh_CN")
    assert e.title == "机构工作人员向本机构捐赠"
    assert "不参与配捐" in e.donor


def test_split_gift_says_which_gift_it_was() -> None:
    e = _explain("split_gift", "en")
    assert "At most 3 gifts a day" in e.donor and "gift number 4" in e.donor


def test_matched_in_full_has_no_reason() -> None:
    e = _explain("", "en", status=MatchStatus.MATCHED, matched=100_00)
    assert e.donor == "Your gift of ¥100.00 was matched with ¥100.00 by a sponsor."
    assert e.title == "" and e.status_title == "Matched"
    assert _explain("", "zh_CN", status=MatchStatus.MATCHED, matched=100_00).status_title == \
        "已获配捐"


def test_partly_matched_says_the_cap() -> None:
    e = _explain("donor_daily_cap", "en", status=MatchStatus.MATCHED, matched=20_00)
    assert e.donor.startswith("Your gift of ¥100.00 was matched with ¥20.00, less than")
    assert "¥999" in e.donor


def test_held_says_until_when_in_china_time() -> None:
    until = dt.datetime(2026, 9, 14, 17, 0, tzinfo=dt.UTC)  # 15 September, 01:00 in China
    zh = _explain("shared_payer", "zh_CN", status=MatchStatus.HELD, matched=100_00,
                  until=until)
    assert "公示期至 2026-09-15" in zh.donor and zh.status_title == "配捐公示中"
    assert "支付账户" in zh.donor
    en = _explain("shared_device", "en", status=MatchStatus.HELD, matched=100_00, until=until)
    assert "held until 2026-09-15" in en.donor
    assert "at least 3 donor accounts have given from this device" in en.reviewer
    assert "not among the first 2" in en.reviewer


@pytest.mark.parametrize(("status", "zh_title", "en_words"), [
    (MatchStatus.RELEASED, "公示配捐已退回", "went back to the sponsor's pool after review"),
    (MatchStatus.REVERSED, "配捐已撤回", "Your gift was refunded"),
])
def test_released_and_reversed(status: str, zh_title: str, en_words: str) -> None:
    assert _explain("shared_payer", "zh_CN", status=status, matched=100_00).status_title == \
        zh_title
    assert en_words in _explain("shared_payer", "en", status=status, matched=100_00).donor


def test_an_unknown_code_is_shown_as_a_code() -> None:
    e = _explain("new_rule", "en")
    assert "new_rule" in e.donor and e.title == "new_rule"


def test_explain_gift_reads_a_gift_row() -> None:
    class Row:
        match_status = MatchStatus.NONE
        reason = "too_fast"
        reason_params = {"limit": 4}
        amount_fen = 5_00
        matched_fen = 0
        hold_until = None

    e = explain.explain_gift(Row(), "en")
    assert "no more than 4 gifts a minute" in e.donor and "¥5.00" in e.donor
