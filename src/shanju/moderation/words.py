"""The sensitive-word filter for donors' messages (docs/moderation.md, ADR 0034).

The list is the maintained *List of Dirty, Naughty, Obscene, and Otherwise Bad Words*
(LDNOOBW; npm ``naughty-words`` 1.2.0, CC BY 4.0), its Chinese and English lists copied
unchanged into ``wordlists/``, with Shanju's own files beside them (Apache-2.0):

* ``shanju-add.txt`` — terms the list lacks and a charity platform must hold: advertising and
  solicitation, gambling, illegal trade;
* ``shanju-exclude.txt`` — terms of the list that are everyday, medical or place words in a
  donor's message (every one-character term is left out too: 性 is in 女性, 乳 in 乳腺癌);
* ``shanju-allow.txt`` — innocent phrases that contain a listed term (你妈妈), blanked out
  before matching;
* and, for an installation, ``SHANJU_MODERATION_WORDS_FILE``: a file of further terms, one a
  line (the lists a platform is told to apply; Shanju ships none of a political kind).

A message is *held* when it contains a term or looks like it carries a phone number, an ID
card number or a link (personal data and advertising do not belong in public). Matching is on
the text as people read it: Unicode NFKC (full-width letters and digits become ordinary ones),
case-folded; a Chinese term also matches with spaces, punctuation or invisible characters put
between its characters (傻 逼, 傻*逼); a term of Latin letters matches as a whole word only
(``sex`` in "sex", not in "Essex").
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shanju.core.i18n import N_

WORDLISTS = Path(__file__).parent / "wordlists"
LDNOOBW_FILES = ("ldnoobw-zh.json", "ldnoobw-en.json")

# What a message must not carry besides words: personal data and links (advertising).
# Digits are read with the spaces and dashes between them taken out, so 138-1234-5678 is a
# phone number too. Labels are msgids, shown translated to the organization's staff.
PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "phone": (re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])"), N_("a mobile number")),
    "id_number": (re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9x](?![0-9x])"),
                  N_("an ID card number")),
}
# Links are found in the text before it is squeezed (a dot is punctuation).
LINK = re.compile(r"https?://|www\.|(?<![0-9a-z])[0-9a-z-]+\.(?:com|cn|net|org|top|xyz|vip|cc|"
                  r"me|io|info|shop|site|link)(?![0-9a-z])")
LINK_LABEL = N_("a link")

# Removed before Chinese terms are matched: whitespace and separators (Z*), punctuation (P*),
# control and format characters (Cc, Cf: zero-width spaces and joiners), modifier and math
# symbols (Sk, Sm: ^ ` + < = > | ~). Letters, digits and other symbols (emoji) stay.
_SQUEEZED_CATEGORIES = ("Z", "P", "Cc", "Cf", "Sk", "Sm")
_LATIN = re.compile(r"^[\x20-\x7e]+$")
_DIGIT_GAPS = re.compile(r"(?<=[0-9])[\s\-.·_]+(?=[0-9x])")
BLANK = "\x00"  # what an allowed phrase becomes: it joins nothing on either side


def normalize(text: str) -> str:
    """The text as it is matched: NFKC, case-folded, without format characters."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")


def squeeze(text: str) -> str:
    """``text`` (normalized) without spaces, punctuation and invisible characters."""
    return "".join(ch for ch in text
                   if not unicodedata.category(ch).startswith(_SQUEEZED_CATEGORIES))


@dataclass(frozen=True)
class Screening:
    """What the filter found in one message: the listed terms, and which patterns (keys of
    :data:`PATTERNS`, or ``link``)."""

    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @property
    def held(self) -> bool:
        """Whether the message waits for the organization's review before it is shown."""
        return bool(self.terms or self.patterns)

    @property
    def labels(self) -> tuple[str, ...]:
        """The patterns found, as msgids for people."""
        return tuple(LINK_LABEL if key == "link" else PATTERNS[key][1] for key in self.patterns)


def _alternation(terms: Iterable[str]) -> str:
    # Longest first: the regex engine takes the first alternative that matches.
    return "|".join(re.escape(t) for t in sorted(set(terms), key=lambda t: (-len(t), t)))


class WordFilter:
    """A compiled word list: :meth:`screen` a message."""

    def __init__(self, terms: Iterable[str], *, allow: Iterable[str] = ()) -> None:
        cjk: set[str] = set()
        latin: set[str] = set()
        for raw in terms:
            term = normalize(raw).strip()
            if _LATIN.match(term):
                latin.add(term)
            elif squeeze(term):
                cjk.add(squeeze(term))
        self.size = len(cjk) + len(latin)
        self._cjk = re.compile(_alternation(cjk)) if cjk else None
        self._latin = (re.compile(rf"(?<![0-9a-z])(?:{_alternation(latin)})(?![0-9a-z])")
                       if latin else None)
        phrases = {squeeze(normalize(p)) for p in allow}
        self._allow = re.compile(_alternation(p for p in phrases if p)) if phrases else None

    def screen(self, text: str | None) -> Screening:
        """What ``text`` holds that the list (or a pattern) does not let through."""
        if not text or not text.strip():
            return Screening()
        normal = normalize(text)
        squeezed = squeeze(normal)
        found: set[str] = set()
        if self._latin is not None:
            found.update(m.group(0) for m in self._latin.finditer(normal))
        if self._cjk is not None:
            blanked = self._allow.sub(BLANK, squeezed) if self._allow is not None else squeezed
            found.update(m.group(0) for m in self._cjk.finditer(blanked))
        digits = _DIGIT_GAPS.sub("", normal)
        patterns = [key for key, (pattern, _label) in PATTERNS.items() if pattern.search(digits)]
        if LINK.search(normal):
            patterns.append("link")
        return Screening(terms=tuple(sorted(found)), patterns=tuple(patterns))


class WordsFileError(ValueError):
    """The installation's words file cannot be read."""


def read_terms(path: Path) -> list[str]:
    """The terms of a text file: one a line, ``#`` starts a comment line, blanks skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def ldnoobw_terms() -> list[str]:
    """The LDNOOBW Chinese and English lists, as shipped."""
    terms: list[str] = []
    for name in LDNOOBW_FILES:
        terms += json.loads((WORDLISTS / name).read_text(encoding="utf-8"))
    return terms


def load(extra: Path | None = None) -> WordFilter:
    """The platform's filter: LDNOOBW less Shanju's exclusions and one-character terms, plus
    Shanju's additions and the installation's own file (``extra``)."""
    excluded = {normalize(t) for t in read_terms(WORDLISTS / "shanju-exclude.txt")}
    terms = [t for t in ldnoobw_terms()
             if len(squeeze(normalize(t))) > 1 and normalize(t) not in excluded]
    terms += read_terms(WORDLISTS / "shanju-add.txt")
    if extra is not None:
        try:
            terms += read_terms(extra)
        except (OSError, UnicodeDecodeError) as exc:
            raise WordsFileError(
                f"SHANJU_MODERATION_WORDS_FILE: cannot read {extra} as UTF-8 text: {exc}"
            ) from exc
    return WordFilter(terms, allow=read_terms(WORDLISTS / "shanju-allow.txt"))


@functools.cache
def _cached(extra: Path | None) -> WordFilter:
    return load(extra)


def prepare(extra: Path | None) -> WordFilter:
    """Compile the filter with the installation's ``extra`` file now (at start-up), so that
    an unreadable file stops the start (:class:`WordsFileError`) instead of a page."""
    return _cached(extra)


def default_filter() -> WordFilter:
    """The filter of this installation (its extra file from ``SHANJU_MODERATION_WORDS_FILE``),
    compiled once per process."""
    from shanju.core.config import get_settings

    return _cached(get_settings().moderation_words_file)


def screen(text: str | None) -> Screening:
    """Screen a donor's message with the installation's filter."""
    return default_filter().screen(text)
