"""Money for people: parse yuan strings into integer fen and format fen for display.

Money is integer fen everywhere; floats never touch it. Parsing goes through ``Decimal``.
"""

from __future__ import annotations

import re
from decimal import Decimal

from babel.numbers import format_decimal

from shanju.core.errors import InvalidInput

MAX_DONATION_FEN = 100_000_000_00  # ¥100,000,000: far above any single online gift


# Full-width forms a Chinese input method types (digits, comma, full stop) read as their ASCII
# twins; nothing else is rewritten.
_FULL_WIDTH = str.maketrans("０１２３４５６７８９，．", "0123456789,.")
# An amount as people write it: optional sign, whole yuan with commas only between groups of
# three digits (1,000 / 12,345) or none, and optional decimals. No underscores, exponents,
# other scripts' digits or spaces inside.
_AMOUNT = re.compile(r"(?P<sign>[+-]?)(?P<whole>[0-9]*(?:,[0-9]*)*)(?:\.(?P<part>[0-9]*))?")
MAX_AMOUNT_CHARS = 40
_GROUPED = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+")


def read_yuan(text: str, *, field: str = "amount") -> Decimal | None:
    """Read an amount of yuan exactly as a person means it (``None`` when blank).

    Accepts ``20``, ``9.90``, ``¥1,234.5``, ``１，０００`` (full-width); commas only as thousands
    separators in groups of three. Refuses "5,00" (a decimal comma would be read as ¥500),
    "1_000", "1e3" and anything else with a message saying how to write it.
    """
    cleaned = text.translate(_FULL_WIDTH).strip().strip("\u3000")
    if cleaned[:1] in ("¥", "￥"):
        cleaned = cleaned[1:].lstrip()
    if not cleaned:
        return None
    match = _AMOUNT.fullmatch(cleaned) if len(cleaned) <= MAX_AMOUNT_CHARS else None
    if match is None or not (match["whole"].replace(",", "") or match["part"]):
        raise InvalidInput(
            "Enter the amount as a number of yuan, e.g. 20 or 9.90.",
            code="amount_not_a_number",
            field=field,
        )
    whole = match["whole"]
    if "," in whole and not _GROUPED.fullmatch(whole):
        raise InvalidInput(
            "Use commas only between groups of three digits, e.g. 1,000 or 12,345.67; write "
            "decimals with a point, e.g. 5.00.",
            code="amount_bad_separator",
            field=field,
        )
    return Decimal(f"{match['sign']}{whole.replace(',', '') or '0'}.{match['part'] or '0'}")


def parse_yuan(text: str, *, field: str = "amount") -> int:
    """Parse ``"12.34"`` (yuan) into 1234 fen; reject more than two decimals, ≤ 0 and junk."""
    value = read_yuan(text, field=field)
    if value is None:
        raise InvalidInput(
            "Enter the amount as a number of yuan, e.g. 20 or 9.90.",
            code="amount_not_a_number",
            field=field,
        )
    return check_amount_fen(yuan_to_fen(value, field=field), field=field)


def yuan_to_fen(value: Decimal, *, field: str = "amount") -> int:
    """Return ``value`` yuan in fen; refuse fractions of a fen."""
    fen = value * 100
    if fen != fen.to_integral_value():
        raise InvalidInput(
            "An amount can have at most two decimal places (whole fen).",
            code="amount_not_whole_fen",
            field=field,
        )
    return int(fen)


def check_amount_fen(amount_fen: object, *, field: str = "amount_fen") -> int:
    """Return ``amount_fen`` if it is a positive integer number of fen within limits."""
    if type(amount_fen) is not int:
        raise InvalidInput(
            "The amount must be a whole number of fen.", code="amount_not_whole_fen", field=field
        )
    if amount_fen <= 0:
        raise InvalidInput(
            "The amount must be greater than zero.", code="amount_not_positive", field=field
        )
    if amount_fen > MAX_DONATION_FEN:
        raise InvalidInput(
            "The amount is larger than a single gift can be.", code="amount_too_large", field=field
        )
    return amount_fen


def format_fen(amount_fen: int, locale: str = "zh_CN", *, cents: bool = True) -> str:
    """Format fen as money for people, e.g. ``¥1,234.56`` (``cents=False``: ``¥1,234`` when
    the amount is whole yuan). The yuan sign reads the same in Chinese and English pages."""
    value = abs(Decimal(amount_fen)) / 100
    pattern = "#,##0" if not cents and amount_fen % 100 == 0 else "#,##0.00"
    sign = "-" if amount_fen < 0 else ""
    return f"{sign}¥{format_decimal(value, format=pattern, locale=locale)}"


def fen_to_yuan_str(amount_fen: int) -> str:
    """Plain ``"1234.56"`` for forms and CSV (no grouping, no symbol)."""
    sign = "-" if amount_fen < 0 else ""
    whole, part = divmod(abs(amount_fen), 100)
    return f"{sign}{whole}.{part:02d}"
