"""Time in one place, so tests and the demo seeder can reason about it."""

from __future__ import annotations

import datetime as dt

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def utcnow() -> dt.datetime:
    """Return the current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


def today_cn() -> dt.date:
    """Return today's date in China (UTC+8), the date that filings and deadlines use."""
    return utcnow().astimezone(CHINA_TZ).date()
