"""Money for people: parse yuan strings into integer fen and format fen for display.

Money is integer fen everywhere; floats never touch it. Parsing goes through ``Decimal``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel.numbers import format_decimal

from shanju.core.errors import InvalidInput

MAX_DONATION_FEN = 100_000_000_00  # ¥100,000,000: far above any single online gift


def parse_yuan(text: str, *, field: str = "amount") -> int:
    """Parse ``"12.34"`` (yuan) into 1234 fen; reject more than two decimals, ≤ 0 and junk."""
    cleaned = text.strip().replace(",", "").replace("¥", "").replace("￥", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise InvalidInput(
            "Enter the amount as a number of yuan, e.g. 20 or 9.90.",
            code="amount_not_a_number",
            field=field,
        ) from None
    if not value.is_finite():
        raise InvalidInput("Enter a finite amount.", code="amount_not_a_number", field=field)
    fen = value * 100
    if fen != fen.to_integral_value():
        raise InvalidInput(
            "An amount can have at most two decimal places (whole fen).",
            code="amount_not_whole_fen",
            field=field,
        )
    return check_amount_fen(int(fen), field=field)


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
