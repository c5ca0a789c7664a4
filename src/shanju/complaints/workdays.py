"""Working days in mainland China, for the 5-working-day complaint deadline.

A day is a working day when it is a Monday–Friday that is not a public holiday, or a
Saturday/Sunday that the State Council declared a make-up working day (调休上班).

The table below holds the official 2026 arrangement, transcribed from 《国务院办公厅关于2026年
部分节假日安排的通知》 (4 November 2025). Years not in the table fall back to weekends only,
which can make a deadline *earlier* than the legal one — never later. Operators add a year by
appending its holidays to :data:`HOLIDAYS` and its make-up days to :data:`MAKEUP_WORKDAYS`
when the State Council publishes the arrangement (usually in November of the year before).
"""

from __future__ import annotations

import datetime as dt


def _span(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


_D = dt.date

HOLIDAYS: frozenset[dt.date] = frozenset(
    [
        *_span(_D(2026, 1, 1), _D(2026, 1, 3)),  # 元旦
        *_span(_D(2026, 2, 15), _D(2026, 2, 23)),  # 春节
        *_span(_D(2026, 4, 4), _D(2026, 4, 6)),  # 清明节
        *_span(_D(2026, 5, 1), _D(2026, 5, 5)),  # 劳动节
        *_span(_D(2026, 6, 19), _D(2026, 6, 21)),  # 端午节
        *_span(_D(2026, 9, 25), _D(2026, 9, 27)),  # 中秋节
        *_span(_D(2026, 10, 1), _D(2026, 10, 7)),  # 国庆节
    ]
)
"""Public holidays (days off, including the weekdays shifted into a holiday block)."""

MAKEUP_WORKDAYS: frozenset[dt.date] = frozenset(
    [
        _D(2026, 1, 4),
        _D(2026, 2, 14),
        _D(2026, 2, 28),
        _D(2026, 5, 9),
        _D(2026, 9, 20),
        _D(2026, 10, 10),
    ]
)
"""Weekend days that are working days (调休上班)."""


def is_working_day(day: dt.date) -> bool:
    """Tell whether ``day`` is a working day in mainland China."""
    if day in MAKEUP_WORKDAYS:
        return True
    if day in HOLIDAYS:
        return False
    return day.weekday() < 5


def add_working_days(start: dt.date, count: int) -> dt.date:
    """Return the ``count``-th working day after ``start`` (not counting ``start``)."""
    if count < 0:
        raise ValueError("count must not be negative")
    day = start
    remaining = count
    while remaining:
        day += dt.timedelta(days=1)
        if is_working_day(day):
            remaining -= 1
    return day
