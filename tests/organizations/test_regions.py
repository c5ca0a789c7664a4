"""The provincial-level division list."""

from shanju.core import regions


def test_there_are_34_unique_provincial_level_divisions() -> None:
    assert len(regions.DIVISIONS) == 34
    assert len(set(regions.PROVINCES)) == 34
    assert len({p.code for p in regions.DIVISIONS}) == 34


def test_normalize_accepts_short_full_code_and_english_names() -> None:
    assert regions.normalize_province("北京") == "北京"
    assert regions.normalize_province("内蒙古自治区") == "内蒙古"
    assert regions.normalize_province("44") == "广东"
    assert regions.normalize_province("guangdong") == "广东"
    assert regions.normalize_province("火星") is None
    assert regions.province_by_code("530100") is not None
    assert regions.display_name("广东", "en") == "Guangdong"
