"""China's 34 provincial-level divisions (GB/T 2260 codes), for selects and statistics.

The stored value everywhere (organizations, projects, donations, users) is the short Chinese
name, e.g. ``"北京"`` or ``"内蒙古"``: :data:`PROVINCES` lists them. :data:`DIVISIONS` adds the
code, full and English names; :func:`normalize_province` also accepts the full name
(``"北京市"``, ``"内蒙古自治区"``), the two-digit code and the English name.
"""

from __future__ import annotations

from dataclasses import dataclass

from shanju.core.errors import InvalidInput


@dataclass(frozen=True)
class Province:
    """One provincial-level division."""

    code: str  # the first two digits of GB/T 2260 division codes (and of USCC chars 3–4)
    name: str  # short Chinese name: the stored value
    full_name: str
    en: str


DIVISIONS: tuple[Province, ...] = (
    Province("11", "北京", "北京市", "Beijing"),
    Province("12", "天津", "天津市", "Tianjin"),
    Province("13", "河北", "河北省", "Hebei"),
    Province("14", "山西", "山西省", "Shanxi"),
    Province("15", "内蒙古", "内蒙古自治区", "Inner Mongolia"),
    Province("21", "辽宁", "辽宁省", "Liaoning"),
    Province("22", "吉林", "吉林省", "Jilin"),
    Province("23", "黑龙江", "黑龙江省", "Heilongjiang"),
    Province("31", "上海", "上海市", "Shanghai"),
    Province("32", "江苏", "江苏省", "Jiangsu"),
    Province("33", "浙江", "浙江省", "Zhejiang"),
    Province("34", "安徽", "安徽省", "Anhui"),
    Province("35", "福建", "福建省", "Fujian"),
    Province("36", "江西", "江西省", "Jiangxi"),
    Province("37", "山东", "山东省", "Shandong"),
    Province("41", "河南", "河南省", "Henan"),
    Province("42", "湖北", "湖北省", "Hubei"),
    Province("43", "湖南", "湖南省", "Hunan"),
    Province("44", "广东", "广东省", "Guangdong"),
    Province("45", "广西", "广西壮族自治区", "Guangxi"),
    Province("46", "海南", "海南省", "Hainan"),
    Province("50", "重庆", "重庆市", "Chongqing"),
    Province("51", "四川", "四川省", "Sichuan"),
    Province("52", "贵州", "贵州省", "Guizhou"),
    Province("53", "云南", "云南省", "Yunnan"),
    Province("54", "西藏", "西藏自治区", "Tibet"),
    Province("61", "陕西", "陕西省", "Shaanxi"),
    Province("62", "甘肃", "甘肃省", "Gansu"),
    Province("63", "青海", "青海省", "Qinghai"),
    Province("64", "宁夏", "宁夏回族自治区", "Ningxia"),
    Province("65", "新疆", "新疆维吾尔自治区", "Xinjiang"),
    Province("71", "台湾", "台湾省", "Taiwan"),
    Province("81", "香港", "香港特别行政区", "Hong Kong"),
    Province("82", "澳门", "澳门特别行政区", "Macao"),
)

PROVINCES: tuple[str, ...] = tuple(p.name for p in DIVISIONS)
_BY_KEY: dict[str, Province] = {}
for _p in DIVISIONS:
    for _key in (_p.code, _p.name, _p.full_name, _p.en.lower()):
        _BY_KEY[_key] = _p


def normalize_province(text: str) -> str | None:
    """Return the stored (short) name for a short/full name, code or English name, else None."""
    cleaned = text.strip()
    found = _BY_KEY.get(cleaned) or _BY_KEY.get(cleaned.lower())
    return found.name if found else None


def check_province(value: str | None, *, field: str = "province") -> str | None:
    """Return a province from :data:`PROVINCES` (a stored short name), or None when none is
    chosen; InvalidInput ``invalid_province`` for anything else."""
    clean = (value or "").strip()
    if not clean:
        return None
    if clean not in PROVINCES:
        raise InvalidInput("Choose a province from the list.", code="invalid_province",
                           field=field)
    return clean


def is_province(name: str) -> bool:
    """Tell whether ``name`` is a stored province value (a short Chinese name)."""
    return name in PROVINCES


def province_by_code(code: str) -> Province | None:
    """Return the province whose GB/T 2260 code starts ``code`` (a USCC division code)."""
    return _BY_KEY.get(code[:2]) if len(code) >= 2 and code[:2].isdigit() else None


def display_name(name: str, locale: str) -> str:
    """Return the province's name for people: Chinese as stored, or English for ``en``."""
    if locale.startswith("en"):
        found = _BY_KEY.get(name)
        return found.en if found else name
    return name
