"""Working days and the 5-working-day complaint deadline."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from shanju.complaints import workdays
from shanju.complaints.service import due_date

D = dt.date


def test_weekends_are_skipped() -> None:
    # Filed Friday 2026-11-27: Mon..Fri of the next week are the five working days.
    assert due_date(D(2026, 11, 27)) == D(2026, 12, 4)
    # Filed on a Saturday: the count starts on Monday.
    assert due_date(D(2026, 11, 28)) == D(2026, 12, 4)
    # Filed Monday: due the Monday after.
    assert due_date(D(2026, 11, 30)) == D(2026, 12, 7)


def test_national_day_holiday_and_makeup_days_count_right() -> None:
    # Filed Friday 2026-09-25 (Mid-Autumn holiday 25–27 Sep). Working days after it:
    # Mon 28, Tue 29, Wed 30 Sep; 1–7 Oct are National Day; Thu 8, Fri 9 Oct.
    assert due_date(D(2026, 9, 25)) == D(2026, 10, 9)
    # Filed Friday 2026-10-09: Sat 10 Oct is a make-up working day (调休上班).
    assert due_date(D(2026, 10, 9)) == D(2026, 10, 15)
    assert workdays.is_working_day(D(2026, 10, 10))
    assert not workdays.is_working_day(D(2026, 10, 5))


def test_spring_festival_2026() -> None:
    # Filed Friday 2026-02-13: Sat 14 Feb is worked, 15–23 Feb off, then 24, 25, 26, 27 Feb.
    assert due_date(D(2026, 2, 13)) == D(2026, 2, 27)


@given(st.dates(min_value=D(2025, 1, 1), max_value=D(2028, 12, 31)),
       st.integers(min_value=0, max_value=30))
def test_add_working_days_lands_on_the_nth_working_day(start: dt.date, n: int) -> None:
    end = workdays.add_working_days(start, n)
    between = [start + dt.timedelta(days=i) for i in range(1, (end - start).days + 1)]
    assert sum(workdays.is_working_day(d) for d in between) == n
    if n:
        assert workdays.is_working_day(end)
