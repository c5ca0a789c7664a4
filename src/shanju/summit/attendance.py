"""Attendance: per-session time from the live rooms' heartbeats; exports and certificates
build on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core.clock import CHINA_TZ
from shanju.core.masking import mask_name
from shanju.organizations.models import Organization
from shanju.summit.models import SummitAttendance, SummitSession


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


# --- aggregates and exports (helper: registration) -------------------------------------------


def minutes(seconds: int) -> int:
    """Whole minutes, rounded half up (a 30-second visit counts as one minute)."""
    return (seconds + 30) // 60


@dataclass(frozen=True, slots=True)
class SessionTotal:
    session_id: int
    title: str
    starts_at: dt.datetime
    people: int
    seconds: int


def session_totals(session: Session, *, summit_id: int,
                   organization_id: int | None = None) -> list[SessionTotal]:
    """Per session of the summit (timetable order): people seen and their time in total."""
    on = SummitAttendance.session_id == SummitSession.id
    if organization_id is not None:
        on = and_(on, SummitAttendance.organization_id == organization_id)
    query = (
        select(SummitSession.id, SummitSession.title, SummitSession.starts_at,
               func.count(SummitAttendance.user_id),
               func.coalesce(func.sum(SummitAttendance.seconds), 0))
        .join(SummitAttendance, on, isouter=True)
        .where(SummitSession.summit_id == summit_id)
        .group_by(SummitSession.id, SummitSession.title, SummitSession.starts_at)
        .order_by(SummitSession.starts_at, SummitSession.id)
    )
    return [SessionTotal(sid, title, starts, int(n), int(secs))
            for sid, title, starts, n, secs in session.execute(query)]


@dataclass(frozen=True, slots=True)
class OrganizationTotal:
    organization_id: int | None  # None: the public audience
    name: str
    uscc: str
    people: int
    seconds: int


def organization_totals(session: Session, *, summit_id: int,
                        organization_id: int | None = None) -> list[OrganizationTotal]:
    """Per organization (most time first; the public audience as ``organization_id`` None)."""
    query = (
        select(SummitAttendance.organization_id, Organization.name, Organization.uscc,
               func.count(func.distinct(SummitAttendance.user_id)),
               func.sum(SummitAttendance.seconds))
        .join(SummitSession, SummitSession.id == SummitAttendance.session_id)
        .join(Organization, Organization.id == SummitAttendance.organization_id, isouter=True)
        .where(SummitSession.summit_id == summit_id)
        .group_by(SummitAttendance.organization_id, Organization.name, Organization.uscc)
    )
    if organization_id is not None:
        query = query.where(SummitAttendance.organization_id == organization_id)
    rows = [OrganizationTotal(oid, name or "", code or "", int(n), int(secs or 0))
            for oid, name, code, n, secs in session.execute(query)]
    return sorted(rows, key=lambda r: (-r.seconds, r.organization_id is None, r.name))


EXPORT_COLUMNS = ("organization", "uscc", "person", "session", "minutes", "seconds",
                  "first_seen", "last_seen")


@dataclass(frozen=True, slots=True)
class AttendanceRow:
    organization: str
    uscc: str
    person: str
    session: str
    seconds: int
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime

    def values(self) -> list[str | int]:
        """The row in :data:`EXPORT_COLUMNS` order (times ISO 8601 in China time)."""
        return [self.organization, self.uscc, self.person, self.session,
                minutes(self.seconds), self.seconds,
                self.first_seen_at.astimezone(CHINA_TZ).isoformat(timespec="seconds"),
                self.last_seen_at.astimezone(CHINA_TZ).isoformat(timespec="seconds")]


def attendance_rows(session: Session, *, summit_id: int, organization_id: int | None = None,
                    full_names: bool = False) -> Iterator[AttendanceRow]:
    """Every person's time per session, by organization, person and timetable order.

    Names are masked (``张**``) unless ``full_names`` (the summit's organizers' exports).
    """
    query = (
        select(SummitAttendance, SummitSession.title, User.display_name, Organization.name,
               Organization.uscc)
        .join(SummitSession, SummitSession.id == SummitAttendance.session_id)
        .join(User, User.id == SummitAttendance.user_id)
        .join(Organization, Organization.id == SummitAttendance.organization_id, isouter=True)
        .where(SummitSession.summit_id == summit_id)
        .order_by(Organization.name, SummitAttendance.user_id, SummitSession.starts_at,
                  SummitSession.id)
    )
    if organization_id is not None:
        query = query.where(SummitAttendance.organization_id == organization_id)
    for att, title, name, org_name, code in session.execute(query):
        yield AttendanceRow(
            organization=org_name or "", uscc=code or "",
            person=name if full_names else mask_name(name), session=title,
            seconds=att.seconds, first_seen_at=att.first_seen_at, last_seen_at=att.last_seen_at,
        )


@dataclass(frozen=True, slots=True)
class PersonSession:
    session_id: int
    title: str
    starts_at: dt.datetime
    seconds: int


def person_sessions(session: Session, *, summit_id: int, user_id: int) -> list[PersonSession]:
    """The sessions one person attended (timetable order): what a certificate lists."""
    rows = session.execute(
        select(SummitSession.id, SummitSession.title, SummitSession.starts_at,
               SummitAttendance.seconds)
        .join(SummitAttendance, SummitAttendance.session_id == SummitSession.id)
        .where(SummitSession.summit_id == summit_id, SummitAttendance.user_id == user_id,
               SummitAttendance.seconds > 0)
        .order_by(SummitSession.starts_at, SummitSession.id)
    )
    return [PersonSession(sid, title, starts, secs) for sid, title, starts, secs in rows]
