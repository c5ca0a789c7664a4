"""iCalendar (RFC 5545) export of a summit's timetable and of a person's agenda.

Written with the ``icalendar`` package (ADR 0016), which folds long lines and escapes text.
Each session is one VEVENT whose UID is stable (``summit-session-<id>@<host>``), so a
calendar that imports the file again updates the event instead of adding a copy. Times are
UTC; LOCATION and URL are the session's page (the summit is online).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from urllib.parse import urlsplit

from icalendar import Calendar, Event

from shanju.summit.models import Summit, SummitSession
from shanju.summit.service import BilledSpeaker, aware

PRODID = "-//Shanju//Summit//ZH"


def session_url(base_url: str, summit: Summit, row: SummitSession) -> str:
    """The absolute address of a session's page."""
    return f"{base_url.rstrip('/')}/summits/{summit.slug}/sessions/{row.id}"


def session_uid(base_url: str, row: SummitSession) -> str:
    """The session's stable iCalendar UID."""
    host = urlsplit(base_url).hostname or "shanju"
    return f"summit-session-{row.id}@{host}"


def calendar(
    *,
    summit: Summit,
    sessions: Sequence[SummitSession],
    speakers: dict[int, list[BilledSpeaker]],
    base_url: str,
    name: str,
    now: dt.datetime,
) -> bytes:
    """Return the sessions as an iCalendar file (``text/calendar``)."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", "Asia/Shanghai")
    for row in sessions:
        url = session_url(base_url, summit, row)
        event = Event()
        event.add("uid", session_uid(base_url, row))
        event.add("dtstamp", now.astimezone(dt.UTC))
        event.add("dtstart", aware(row.starts_at).astimezone(dt.UTC))
        event.add("dtend", aware(row.ends_at).astimezone(dt.UTC))
        event.add("summary", row.title)
        lines = []
        names = [b.speaker.name for b in speakers.get(row.id, [])]
        if names:
            lines.append("、".join(names))
        if row.description:
            lines.append(row.description)
        lines.append(url)
        event.add("description", "\n\n".join(lines))
        event.add("location", url)
        event.add("url", url)
        event.add("categories", [row.kind.value])
        event.add("status", "CONFIRMED")
        cal.add_component(event)
    body: bytes = cal.to_ical()
    return body
