"""Time in one place, so tests and the demo seeder can reason about it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def utcnow() -> dt.datetime:
    """Return the current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


def today_cn() -> dt.date:
    """Return today's date in China (UTC+8), the date that filings and deadlines use."""
    return utcnow().astimezone(CHINA_TZ).date()


@dataclass(frozen=True)
class TimeLeft:
    """How long until ``ends_at`` from a given moment (a countdown, server-rendered)."""

    ends_at: dt.datetime
    seconds: int  # 0 once it is over

    @property
    def last_minute(self) -> dt.datetime:
        """The last minute before the end, for people ("until 23:59", not "until 00:00")."""
        return self.ends_at - dt.timedelta(minutes=1)

    @property
    def over(self) -> bool:
        """Whether the end has passed."""
        return self.seconds <= 0

    @property
    def days(self) -> int:
        """Whole days left."""
        return self.seconds // 86_400

    @property
    def hours(self) -> int:
        """Whole hours left after the days."""
        return self.seconds % 86_400 // 3_600

    @property
    def minutes(self) -> int:
        """Whole minutes left after the hours (at least 1 while not over)."""
        return max(1, self.seconds % 3_600 // 60) if self.seconds < 3_600 else (
            self.seconds % 3_600 // 60)


def time_left(ends_at: dt.datetime, now: dt.datetime) -> TimeLeft:
    """Return the time from ``now`` (the injected clock) until ``ends_at``, never negative."""
    return TimeLeft(ends_at=ends_at, seconds=max(0, int((ends_at - now).total_seconds())))
