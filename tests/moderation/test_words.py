"""The sensitive-word filter: listed words are caught, however they are written; everyday
messages are not; the list shipped is the one recorded (version, licence, digests)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from shanju.demo import data
from shanju.moderation import words

FILTER = words.load()


@pytest.mark.parametrize(("text", "term"), [
    ("你个傻逼", "傻逼"),
    ("傻 逼", "傻逼"),  # spaces between the characters
    ("傻*逼!", "傻逼"),  # punctuation between them
    ("傻\u200b逼", "傻逼"),  # an invisible character between them
    ("操你妈的项目", "操你妈"),
    ("王八蛋", "王八蛋"),
    ("加我微信领红包", "加我微信"),  # Shanju's own additions: solicitation
    ("网上博彩稳赚", "博彩"),
    ("代开发票找我", "代开发票"),
    ("what the fuck", "fuck"),
    ("FUCK this", "fuck"),  # case-folded
    ("ｆｕｃｋ", "fuck"),  # full-width letters (NFKC)
    ("free porn here", "porn"),
])
def test_listed_words_are_caught_however_they_are_written(text: str, term: str) -> None:
    found = FILTER.screen(text)
    assert found.held and term in found.terms, found


@pytest.mark.parametrize(("text", "pattern"), [
    ("有需要请联系13812345678", "phone"),
    ("电话 138-1234-5678", "phone"),
    ("身份证号11010519491231002X", "id_number"),
    ("更多好礼 www.example.com", "link"),
    ("看这里 https://example.org/x", "link"),
    ("点 lucky-gift.top 领奖", "link"),
])
def test_personal_data_and_links_are_held(text: str, pattern: str) -> None:
    found = FILTER.screen(text)
    assert found.held and found.patterns == (pattern,), found
    assert found.labels  # shown to staff in words, not codes


# Messages donors write on a charity platform, with listed terms inside everyday words.
INNOCENT = (
    *data.MESSAGES,
    "祝你全家幸福安康", "你妈妈的病一定会好起来", "替其他妈妈们谢谢大家", "愿孩子成人成才",
    "乳腺癌患者加油", "关注女性健康", "给孩子买奶粉", "他奶奶生病了，大家帮帮忙", "小姑娘的学费",
    "我妈妈的心愿", "保护野生动物，包括交配季的候鸟", "月经贫困不应该存在", "肥西县的乡亲们加油",
    "捐13.5元，一点心意", "第二次捐款100.00元", "Essex 的朋友们一起加油", "Best wishes from Sussex",
    "Keep going, you are doing great!", "孩子们的书包和文具", "愿大家都能喝上干净的水",
)


@pytest.mark.parametrize("text", INNOCENT)
def test_everyday_messages_are_not_held(text: str) -> None:
    assert not FILTER.screen(text).held, FILTER.screen(text)


def test_empty_and_blank_messages_hold_nothing() -> None:
    assert FILTER.screen("") == FILTER.screen("   ") == FILTER.screen(None) == words.Screening()


def test_an_installation_adds_its_own_terms(tmp_path: Path) -> None:
    extra = tmp_path / "words.txt"
    extra.write_text("# the platform's own list\n违规词甲\n\nBADTERM\n", encoding="utf-8")
    assert not FILTER.screen("这里有违规词甲").held
    own = words.load(extra)
    assert own.screen("这里有违规 词甲").terms == ("违规词甲",)
    assert own.screen("a badterm here").terms == ("badterm",)
    assert own.size == FILTER.size + 2


def test_the_list_leaves_out_one_character_and_excluded_terms_and_keeps_the_rest() -> None:
    listed = words.ldnoobw_terms()
    assert {"性", "乳", "奶", "妈妈的", "成人"} <= set(listed)  # listed, and everyday Chinese
    for text in ("性", "乳", "妈妈的", "成人"):
        assert not FILTER.screen(text).held, text
    excluded = set(words.read_terms(words.WORDLISTS / "shanju-exclude.txt"))
    kept = [t for t in listed
            if len(words.squeeze(words.normalize(t))) > 1 and words.normalize(t) not in excluded]
    missed = [t for t in kept if not FILTER.screen(t).held]
    assert missed == []
    assert FILTER.size >= 600


def test_the_shipped_list_is_the_recorded_version_and_licence() -> None:
    readme = (words.WORDLISTS / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| naughty-words \| (\S+) \| `\S+` \| `(\S+)` \| `([0-9a-f]{64})` \| "
                      r"CC BY 4\.0", readme, flags=re.MULTILINE)
    assert {name for _v, name, _d in rows} == set(words.LDNOOBW_FILES)
    for version, name, digest in rows:
        assert version == "1.2.0"
        content = (words.WORDLISTS / name).read_bytes()
        assert hashlib.sha256(content).hexdigest() == digest, name
        assert all(isinstance(t, str) for t in json.loads(content))
    licence = (words.WORDLISTS / "LICENSE-ldnoobw").read_text(encoding="utf-8")
    assert licence.startswith("Attribution 4.0 International")


def test_an_unreadable_words_file_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    from shanju.app import create_app
    from shanju.core.config import Settings

    missing = tmp_path / "no-such-words.txt"
    with pytest.raises(words.WordsFileError, match="SHANJU_MODERATION_WORDS_FILE"):
        create_app(Settings(environment="test", database_url="sqlite://",
                            moderation_words_file=missing))
    binary = tmp_path / "words.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(words.WordsFileError, match="UTF-8"):
        words.load(binary)
