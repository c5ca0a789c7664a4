"""Working days in mainland China, for the 5-working-day complaint deadline.

A day is a working day when it is a Monday–Friday that is not a public holiday, or a
Saturday/Sunday that the State Council declared a make-up working day (调休上班). The
arrangement changes every year (the State Council publishes the next year's in November), so it
comes from the maintained ``chinesecalendar`` package (ADR 0020), updated yearly: upgrade it
when a new year's arrangement is published (``uv lock --upgrade-package chinesecalendar``).

For a year the installed package does not know, :func:`is_working_day` raises
:class:`HolidaysUnknown` — never a silent guess. Callers that must still answer (a complaint is
never refused for it) decide what to do and say so loudly: see
:func:`shanju.complaints.service.deadline_for`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import chinese_calendar


class HolidaysUnknown(LookupError):
    """The installed holiday calendar does not cover a year."""

    def __init__(self, year: int) -> None:
        first, last = known_years()
        super().__init__(
            f"the holiday calendar (chinesecalendar) knows {first}–{last}, not {year}: "
            "upgrade the chinesecalendar package"
        )
        self.year = year


def known_years() -> tuple[int, int]:
    """Return the first and last year the installed calendar covers."""
    years = [day.year for day in chinese_calendar.holidays]
    return min(years), max(years)


def is_working_day(day: dt.date) -> bool:
    """Tell whether ``day`` is a working day in mainland China; raise for an unknown year."""
    first, last = known_years()
    if not first <= day.year <= last:
        raise HolidaysUnknown(day.year)
    return bool(chinese_calendar.is_workday(day))


def is_weekday(day: dt.date) -> bool:
    """Monday to Friday: the fallback a caller may choose for a year the calendar lacks."""
    return day.weekday() < 5


def add_working_days(start: dt.date, count: int) -> dt.date:
    """Return the ``count``-th working day after ``start`` (not counting ``start``).

    Raises :class:`HolidaysUnknown` when a day to count falls in a year the calendar lacks.
    """
    return _add(start, count, is_working_day)


def add_weekdays(start: dt.date, count: int) -> dt.date:
    """Return the ``count``-th Monday–Friday after ``start``, holidays not considered."""
    return _add(start, count, is_weekday)


def _add(start: dt.date, count: int, counts: Callable[[dt.date], bool]) -> dt.date:
    if count < 0:
        raise ValueError("count must not be negative")
    day = start
    remaining = count
    while remaining:
        day += dt.timedelta(days=1)
        if counts(day):
            remaining -= 1
    return day
