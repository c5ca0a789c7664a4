"""Attendance: per-session time from the live rooms' heartbeats; exports and certificates
build on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from shanju.summit.models import SummitAttendance


@dataclass(frozen=True, slots=True)
class Beat:
    """``seconds`` more of ``user_id`` in session ``session_id``'s rooms, last seen ``at``."""

    session_id: int
    user_id: int
    organization_id: int | None
    at: dt.datetime
    seconds: int


def record_heartbeats(session: Session, beats: Sequence[Beat]) -> None:
    """Add the beats' seconds to each person's attendance (one row per session and person).

    The live hub calls this every ~30 s with what it gathered, in a write transaction of its
    own; beats for the same key are summed.
    """
    merged: dict[tuple[int, int], Beat] = {}
    for b in beats:
        key = (b.session_id, b.user_id)
        old = merged.get(key)
        merged[key] = b if old is None else Beat(
            b.session_id, b.user_id, b.organization_id or old.organization_id,
            max(old.at, b.at), old.seconds + b.seconds,
        )
    if not merged:
        return
    existing = {
        (row.session_id, row.user_id): row
        for row in session.scalars(
            select(SummitAttendance).where(
                tuple_(SummitAttendance.session_id, SummitAttendance.user_id).in_(list(merged))
            )
        )
    }
    for key, b in merged.items():
        row = existing.get(key)
        if row is None:
            session.add(SummitAttendance(
                session_id=b.session_id, user_id=b.user_id, organization_id=b.organization_id,
                first_seen_at=b.at - dt.timedelta(seconds=b.seconds), last_seen_at=b.at,
                seconds=b.seconds,
            ))
        else:
            row.seconds += b.seconds
            row.last_seen_at = max(row.last_seen_at, b.at)
            if row.organization_id is None:
                row.organization_id = b.organization_id
    session.flush()
