"""Working days and the 5-working-day complaint deadline."""

from __future__ import annotations

import datetime as dt

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from shanju.complaints import workdays
from shanju.complaints.service import deadline_for, due_date

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


FIRST, LAST = workdays.known_years()


@given(st.dates(min_value=D(FIRST, 1, 1), max_value=D(LAST, 11, 30)),
       st.integers(min_value=0, max_value=20))
def test_add_working_days_lands_on_the_nth_working_day(start: dt.date, n: int) -> None:
    end = workdays.add_working_days(start, n)
    between = [start + dt.timedelta(days=i) for i in range(1, (end - start).days + 1)]
    assert sum(workdays.is_working_day(d) for d in between) == n
    if n:
        assert workdays.is_working_day(end)


def test_the_calendar_knows_2026_and_every_year_it_claims() -> None:
    assert FIRST <= 2026 <= LAST
    for year in range(FIRST, LAST + 1):
        workdays.is_working_day(D(year, 6, 1))


def test_a_year_the_calendar_does_not_know_fails_loudly() -> None:
    # Before: the hand-written 2026 table treated every later holiday as a working day.
    with pytest.raises(workdays.HolidaysUnknown, match=str(LAST + 1)):
        workdays.is_working_day(D(LAST + 1, 1, 1))  # New Year's Day, a holiday every year
    with pytest.raises(workdays.HolidaysUnknown):
        due_date(D(LAST, 12, 30))  # the count runs into the next year


def test_a_complaint_past_the_calendar_still_gets_a_deadline_and_an_error_is_logged() -> None:
    filed = D(LAST + 1, 3, 5)
    with structlog.testing.capture_logs() as logs:
        due = deadline_for(filed)
    # Monday–Friday only: never later than the legal deadline (holidays only push it back).
    assert due == workdays.add_weekdays(filed, 5)
    assert all(workdays.is_weekday(d) for d in (due,))
    errors = [e for e in logs if e["event"] == "complaints.holiday_calendar_unknown"]
    assert errors and errors[0]["log_level"] == "error" and errors[0]["year"] == LAST + 1


def test_a_complaint_in_a_known_year_is_not_flagged() -> None:
    with structlog.testing.capture_logs() as logs:
        assert deadline_for(D(2026, 9, 25)) == D(2026, 10, 9)
    assert not logs


def test_start_up_warns_when_the_next_weeks_need_an_unknown_year() -> None:
    from shanju.complaints.service import warn_if_calendar_runs_out

    with structlog.testing.capture_logs() as logs:
        assert warn_if_calendar_runs_out(D(LAST, 12, 10)) == LAST + 1
        assert warn_if_calendar_runs_out(D(LAST, 6, 1)) is None
    assert [e["event"] for e in logs] == ["complaints.holiday_calendar_runs_out"]
