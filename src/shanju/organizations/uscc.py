"""Unified Social Credit Code (统一社会信用代码) validation per GB 32100-2015.

An 18-character code: registration authority (1), organization type (1), administrative
division (6 digits), organization code per GB 11714 (8 + its own mod-11 check character) and
a final mod-31 check character. The character set is the digits and the capital letters
without I, O, S, V and Z.

A malformed code or a wrong final check character is refused. Codes issued in the early
pilots sometimes embed an organization code whose mod-11 check does not hold; those are
accepted with a warning that reviewers see, because the code is genuine and the organization
cannot change it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shanju.core.errors import InvalidInput
from shanju.core.i18n import N_

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(CHARSET)}
_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, 16, ...
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
# Registration authority 5 is civil affairs (民政); its type codes: 1 social group,
# 2 social service organization (民办非企业单位), 3 foundation, 9 other.
CIVIL_AFFAIRS_TYPES = {"1": "social_group", "2": "social_service", "3": "foundation"}


@dataclass(frozen=True)
class UsccResult:
    """A validated code, normalized to upper case, with an optional reviewer warning."""

    code: str
    warning: str | None = None

    @property
    def registered_with_civil_affairs(self) -> bool:
        """Whether the code was issued by civil affairs (all charities are)."""
        return self.code[0] == "5"

    @property
    def org_type_hint(self) -> str | None:
        """The organization type the code's second character names, if civil affairs."""
        return CIVIL_AFFAIRS_TYPES.get(self.code[1]) if self.registered_with_civil_affairs else None


def check_digit(first17: str) -> str:
    """Return the mod-31 check character for the first 17 characters."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return CHARSET[(31 - total % 31) % 31]


def org_code_check(body8: str) -> str:
    """Return the GB 11714 mod-11 check character of an 8-character organization code."""

    def value(c: str) -> int:
        return int(c) if c.isdigit() else ord(c) - ord("A") + 10

    total = sum(value(c) * w for c, w in zip(body8, _ORG_WEIGHTS, strict=True))
    remainder = 11 - total % 11
    return {10: "X", 11: "0"}.get(remainder, str(remainder))


def make(first16_without_org_check: str) -> str:
    """Build a valid code from 16 characters (authority, type, division, org code body).

    Used by the demo seeder and tests to produce realistic, valid codes.
    """
    head = first16_without_org_check
    body = head[8:16]
    first17 = head + org_code_check(body)
    return first17 + check_digit(first17)


# What a person may type around or inside a code and is read as meant: spaces (also the
# ideographic one) and hyphens are dropped, full-width forms (FF01–FF5E, e.g. "５３Ａ") are
# their ASCII twins, lower-case ASCII letters are upper case. Nothing else is rewritten (no
# NFKC, no str.upper() on other scripts): "ﬀ" (a ligature) or "Ⅻ" would otherwise become
# other, valid characters and silently name a different organization.
_DROPPED = frozenset(" \u3000-")
_TRIMMED = " \t\r\n\u3000"


def normalize(raw: str) -> str:
    """Return the code as typed, with only the rewrites above."""
    out = []
    for ch in raw:
        if "\uff01" <= ch <= "\uff5e":
            ch = chr(ord(ch) - 0xFEE0)
        if ch in _DROPPED:
            continue
        out.append(ch.upper() if "a" <= ch <= "z" else ch)
    return "".join(out)


def validate(raw: str, *, field: str = "uscc") -> UsccResult:
    """Validate a code; raise :class:`InvalidInput` with a specific message if it is wrong."""
    # Only the whitespace normalize() knows is trimmed (str.strip() would also drop a
    # no-break space or U+2028 at either end, silently, and then report a wrong length
    # instead of the character to fix).
    code = normalize(raw.strip(_TRIMMED))
    foreign = sorted({c for c in code if not c.isascii() or not c.isprintable()})
    if foreign:
        # Checked before the length: a ligature or another script's letter is what to fix.
        raise InvalidInput(
            "A Unified Social Credit Code uses digits and capital letters except I, O, S, V "
            "and Z; found: %(chars)s.",
            code="uscc_bad_character",
            field=field,
            params={"chars": " ".join(f"{c} (U+{ord(c):04X})" for c in foreign)},
        )
    if len(code) != 18:
        raise InvalidInput(
            "A Unified Social Credit Code has 18 characters; this one has %(count)s.",
            code="uscc_wrong_length",
            field=field,
            params={"count": len(code)},
        )
    bad = sorted({c for c in code if c not in _VALUE})
    if bad:
        raise InvalidInput(
            "A Unified Social Credit Code uses digits and capital letters except I, O, S, V "
            "and Z; found: %(chars)s.",
            code="uscc_bad_character",
            field=field,
            params={"chars": " ".join(bad)},
        )
    if not code[2:8].isdigit():
        raise InvalidInput(
            "Characters 3–8 of a Unified Social Credit Code are the administrative division "
            "code and must be digits.",
            code="uscc_bad_division",
            field=field,
        )
    expected = check_digit(code[:17])
    if code[17] != expected:
        raise InvalidInput(
            "The last character (check digit) of this Unified Social Credit Code is wrong: "
            "please check the code on the registration certificate.",
            code="uscc_bad_check_digit",
            field=field,
        )
    warning = None
    org_body, org_check = code[8:16], code[16]
    if not org_body.isalnum() or org_code_check(org_body) != org_check:
        warning = N_(
            "The organization code inside this credit code (characters 9–17) fails its "
            "GB 11714 check. Early pilot codes can do this; verify the registration "
            "certificate before approving."
        )
    return UsccResult(code=code, warning=warning)
