"""Summit events: summits, tracks, speakers, sessions, breakout rooms, the timetable, what's on
now and each person's agenda.

Organizers (``access.is_organizer``) create and edit; every change of theirs is audited in the
same transaction. A draft summit is seen only by its organizers (others get a 404). Days are
China dates; times are stored in UTC. A session lies within the summit's days (in China time)
and ends after it starts; its status only moves forward (scheduled → live → ended).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.core import audit
from shanju.core.clock import CHINA_TZ, utcnow
from shanju.core.db import flush_unless_duplicate
from shanju.core.errors import Conflict, InvalidInput, NotAuthenticated, NotFound, PermissionDenied
from shanju.core.i18n import N_
from shanju.organizations.models import Organization, OrgStatus
from shanju.summit.access import is_organizer
from shanju.summit.models import (
    SessionKind,
    SessionStatus,
    Summit,
    SummitAgendaItem,
    SummitRoom,
    SummitSession,
    SummitSessionSpeaker,
    SummitSpeaker,
    SummitStatus,
    SummitTrack,
)
from shanju.summit.schemas import (
    RoomIn,
    SessionIn,
    SessionSpeakerIn,
    SpeakerIn,
    SummitCreate,
    SummitUpdate,
    TrackIn,
)

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$")
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_DAYS = 14
MAX_SESSION_HOURS = 24
SPEAKER_ROLES = ("speaker", "host", "panelist")
STATUS_ORDER = {SessionStatus.SCHEDULED: 0, SessionStatus.LIVE: 1, SessionStatus.ENDED: 2}
KIND_LABELS: dict[SessionKind, str] = {
    SessionKind.KEYNOTE: N_("Keynote"),
    SessionKind.FORUM: N_("Forum"),
    SessionKind.ROUNDTABLE: N_("Roundtable"),
}
STATUS_LABELS: dict[SessionStatus, str] = {
    SessionStatus.SCHEDULED: N_("Not started yet"),
    SessionStatus.LIVE: N_("Live now"),
    SessionStatus.ENDED: N_("Ended"),
}
ROLE_LABELS: dict[str, str] = {
    "speaker": N_("Speaker"),
    "host": N_("Host"),
    "panelist": N_("Panelist"),
}


# --- validation -----------------------------------------------------------------------------


def _text(value: str | None, *, field: str, max_len: int, required: bool = False) -> str:
    cleaned = (value or "").strip()
    if required and not cleaned:
        raise InvalidInput("This field is required.", code="required", field=field)
    if len(cleaned) > max_len:
        raise InvalidInput("Use at most %(n)s characters.", code="too_long", field=field,
                           params={"n": max_len})
    return cleaned


def _optional_text(value: str | None, *, field: str, max_len: int) -> str | None:
    cleaned = _text(value, field=field, max_len=max_len)
    return cleaned or None


def check_url(value: str | None, *, field: str, max_len: int = 500,
              https_only: bool = False, allow_path: bool = False) -> str | None:
    """Return a cleaned http(s) URL (or None for blank); InvalidInput with code ``invalid_url``
    for anything else (``javascript:``, ``data:``, no host, spaces...)."""
    cleaned = (value or "").strip()
    if not cleaned:
        return None
    if len(cleaned) > max_len:
        raise InvalidInput("Use at most %(n)s characters.", code="too_long", field=field,
                           params={"n": max_len})
    if allow_path and cleaned.startswith("/") and not cleaned.startswith("//"):
        if any(c.isspace() for c in cleaned) or "\\" in cleaned:
            raise InvalidInput("Enter a valid web address.", code="invalid_url", field=field)
        return cleaned
    try:
        parts = urlsplit(cleaned)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not host
            or any(c.isspace() or ord(c) < 32 for c in cleaned) or "\\" in cleaned):
        raise InvalidInput("Enter a web address starting with http:// or https://.",
                           code="invalid_url", field=field)
    if https_only and parts.scheme.lower() != "https":
        raise InvalidInput("Use an https:// address.", code="https_required", field=field)
    return cleaned


def is_hls(url: str | None) -> bool:
    """Tell whether ``url`` is an HLS playlist (its path ends with ``.m3u8``)."""
    if not url:
        return False
    try:
        return urlsplit(url).path.lower().endswith(".m3u8")
    except ValueError:
        return False


def is_mp4(url: str | None) -> bool:
    """Tell whether ``url`` is an MP4 file (played by the browser's own video element)."""
    if not url:
        return False
    try:
        return urlsplit(url).path.lower().endswith(".mp4")
    except ValueError:
        return False


def check_stream_url(value: str | None) -> str | None:
    """An HLS playlist: an http(s) URL whose path ends with ``.m3u8``."""
    url = check_url(value, field="stream_url")
    if url is not None and not is_hls(url):
        raise InvalidInput("The live stream must be an HLS playlist (an address ending in "
                           ".m3u8).", code="stream_not_hls", field="stream_url")
    return url


def check_replay_url(value: str | None) -> str | None:
    """A replay: an HLS playlist or MP4 file (http(s)), or an https player page."""
    url = check_url(value, field="replay_url")
    if url is not None and not (is_hls(url) or is_mp4(url)) and not url.lower().startswith(
            "https://"):
        raise InvalidInput("A replay player page must use an https:// address.",
                           code="https_required", field="replay_url")
    return url


def _as_utc(value: dt.datetime, *, field: str) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA_TZ)
    try:
        return value.astimezone(dt.UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput("This time is not valid.", code="invalid_time", field=field) from exc


def china_date(value: dt.datetime) -> dt.date:
    """Return the China date of an instant (naive values from SQLite are UTC)."""
    return aware(value).astimezone(CHINA_TZ).date()


def aware(value: dt.datetime) -> dt.datetime:
    """Return ``value`` as an aware UTC datetime (SQLite gives back naive UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def summit_days(summit: Summit) -> list[dt.date]:
    """Return the summit's days, first to last."""
    count = (summit.ends_on - summit.starts_on).days + 1
    return [summit.starts_on + dt.timedelta(days=i) for i in range(max(count, 0))]


def _check_days(starts_on: dt.date, ends_on: dt.date) -> None:
    for name, day in (("starts_on", starts_on), ("ends_on", ends_on)):
        if not 2000 <= day.year <= 2999:
            raise InvalidInput("This date is not valid.", code="invalid_date", field=name)
    if ends_on < starts_on:
        raise InvalidInput("The last day cannot be before the first day.",
                           code="ends_before_starts", field="ends_on")
    if (ends_on - starts_on).days >= MAX_DAYS:
        raise InvalidInput("A summit lasts at most %(n)s days.", code="too_many_days",
                           field="ends_on", params={"n": MAX_DAYS})


def check_session_times(summit: Summit, starts_at: dt.datetime, ends_at: dt.datetime) -> None:
    """A session ends after it starts, within a day, and within the summit's days."""
    if ends_at <= starts_at:
        raise InvalidInput("A session must end after it starts.", code="ends_before_starts",
                           field="ends_at")
    if ends_at - starts_at > dt.timedelta(hours=MAX_SESSION_HOURS):
        raise InvalidInput("A session lasts at most %(n)s hours.", code="session_too_long",
                           field="ends_at", params={"n": MAX_SESSION_HOURS})
    first = dt.datetime.combine(summit.starts_on, dt.time(), CHINA_TZ)
    after_last = dt.datetime.combine(summit.ends_on + dt.timedelta(days=1), dt.time(), CHINA_TZ)
    if starts_at < first or ends_at > after_last:
        raise InvalidInput(
            "A session must take place within the summit's days (%(first)s to %(last)s, "
            "China time).", code="outside_summit_days", field="starts_at",
            params={"first": summit.starts_on.isoformat(), "last": summit.ends_on.isoformat()})


# --- reading ----------------------------------------------------------------------------------


def get_summit(*, session: Session, slug: str, viewer: User | None) -> Summit:
    """Return the summit with ``slug`` if the viewer may see it (drafts: organizers only)."""
    summit = None
    if 0 < len(slug) <= 60:
        summit = session.scalars(select(Summit).where(Summit.slug == slug)).first()
    if summit is None or (summit.status != SummitStatus.PUBLISHED
                          and not is_organizer(viewer, summit)):
        raise NotFound(N_("This summit does not exist."), code="summit_not_found")
    return summit


def list_summits(*, session: Session, viewer: User | None) -> list[Summit]:
    """Published summits, and the drafts the viewer organizes; latest first."""
    rows = session.scalars(select(Summit).order_by(Summit.starts_on.desc(), Summit.id.desc()))
    return [s for s in rows if s.status == SummitStatus.PUBLISHED or is_organizer(viewer, s)]


def current_summits(*, session: Session, today: dt.date, limit: int = 2) -> list[Summit]:
    """Published summits on now or still to come (for the home page), soonest first."""
    return list(session.scalars(
        select(Summit)
        .where(Summit.status == SummitStatus.PUBLISHED, Summit.ends_on >= today)
        .order_by(Summit.starts_on, Summit.id)
        .limit(limit)
    ))


def tracks(*, session: Session, summit: Summit) -> list[SummitTrack]:
    """The summit's tracks in order."""
    return list(session.scalars(
        select(SummitTrack).where(SummitTrack.summit_id == summit.id)
        .order_by(SummitTrack.position, SummitTrack.id)))


def speakers(*, session: Session, summit: Summit) -> list[SummitSpeaker]:
    """The summit's speakers in order."""
    return list(session.scalars(
        select(SummitSpeaker).where(SummitSpeaker.summit_id == summit.id)
        .order_by(SummitSpeaker.position, SummitSpeaker.id)))


def sessions_of(*, session: Session, summit: Summit) -> list[SummitSession]:
    """The summit's sessions by start time (then position)."""
    return list(session.scalars(
        select(SummitSession).where(SummitSession.summit_id == summit.id)
        .order_by(SummitSession.starts_at, SummitSession.position, SummitSession.id)))


def get_session(*, session: Session, summit: Summit, session_id: int) -> SummitSession:
    """Return the summit's session ``session_id`` (NotFound otherwise)."""
    row = session.get(SummitSession, session_id) if 0 < session_id < 2**63 else None
    if row is None or row.summit_id != summit.id:
        raise NotFound(N_("This session does not exist."), code="session_not_found")
    return row


def get_speaker(*, session: Session, summit: Summit, speaker_id: int) -> SummitSpeaker:
    """Return the summit's speaker ``speaker_id`` (NotFound otherwise)."""
    row = session.get(SummitSpeaker, speaker_id) if 0 < speaker_id < 2**63 else None
    if row is None or row.summit_id != summit.id:
        raise NotFound(N_("This speaker does not exist."), code="speaker_not_found")
    return row


def get_track(*, session: Session, summit: Summit, track_id: int) -> SummitTrack:
    """Return the summit's track ``track_id`` (NotFound otherwise)."""
    row = session.get(SummitTrack, track_id) if 0 < track_id < 2**63 else None
    if row is None or row.summit_id != summit.id:
        raise NotFound(N_("This track does not exist."), code="track_not_found")
    return row


def get_room(*, session: Session, summit_session: SummitSession, room_id: int) -> SummitRoom:
    """Return the session's breakout room ``room_id`` (NotFound otherwise)."""
    row = session.get(SummitRoom, room_id) if 0 < room_id < 2**63 else None
    if row is None or row.session_id != summit_session.id:
        raise NotFound(N_("This room does not exist."), code="room_not_found")
    return row


def rooms_of(*, session: Session, summit_session: SummitSession) -> list[SummitRoom]:
    """A roundtable's breakout rooms in order."""
    return list(session.scalars(
        select(SummitRoom).where(SummitRoom.session_id == summit_session.id)
        .order_by(SummitRoom.position, SummitRoom.id)))


@dataclass(frozen=True)
class BilledSpeaker:
    """A speaker as billed on one session."""

    speaker: SummitSpeaker
    role: str


def session_speakers(
    *, session: Session, session_ids: Iterable[int]
) -> dict[int, list[BilledSpeaker]]:
    """The speakers of each session (by session id), in order."""
    ids = list(set(session_ids))
    result: dict[int, list[BilledSpeaker]] = {i: [] for i in ids}
    if not ids:
        return result
    rows = session.execute(
        select(SummitSessionSpeaker, SummitSpeaker)
        .join(SummitSpeaker, SummitSpeaker.id == SummitSessionSpeaker.speaker_id)
        .where(SummitSessionSpeaker.session_id.in_(ids))
        .order_by(SummitSessionSpeaker.session_id, SummitSessionSpeaker.position,
                  SummitSpeaker.position, SummitSpeaker.id))
    for link, speaker in rows:
        result[link.session_id].append(BilledSpeaker(speaker=speaker, role=link.role))
    return result


def session_rooms(*, session: Session, session_ids: Iterable[int]) -> dict[int, list[SummitRoom]]:
    """The breakout rooms of each session (by session id), in order."""
    ids = list(set(session_ids))
    result: dict[int, list[SummitRoom]] = {i: [] for i in ids}
    if not ids:
        return result
    for room in session.scalars(select(SummitRoom).where(SummitRoom.session_id.in_(ids))
                                .order_by(SummitRoom.position, SummitRoom.id)):
        result[room.session_id].append(room)
    return result


@dataclass
class Day:
    """One day of the timetable."""

    date: dt.date
    sessions: list[SummitSession] = field(default_factory=list)


@dataclass
class Timetable:
    """The summit's days (China dates), tracks, and sessions in order, with their speakers."""

    summit: Summit
    tracks: list[SummitTrack]
    days: list[Day]
    speakers: dict[int, list[BilledSpeaker]]
    rooms: dict[int, list[SummitRoom]]

    @property
    def track_by_id(self) -> dict[int, SummitTrack]:
        """The tracks by id."""
        return {t.id: t for t in self.tracks}

    def day(self, date: dt.date) -> Day | None:
        """The timetable's ``date``, if it is one of the summit's days."""
        return next((d for d in self.days if d.date == date), None)


def timetable(*, session: Session, summit: Summit) -> Timetable:
    """Return the summit's timetable: each day's sessions ordered by start, then position."""
    days = [Day(date=d) for d in summit_days(summit)]
    by_date = {d.date: d for d in days}
    rows = sessions_of(session=session, summit=summit)
    for row in rows:
        day = by_date.get(china_date(row.starts_at))
        if day is None:  # the summit's days were shortened after the session was planned
            day = by_date[china_date(row.starts_at)] = Day(date=china_date(row.starts_at))
            days.append(day)
        day.sessions.append(row)
    days.sort(key=lambda d: d.date)
    ids = [r.id for r in rows]
    return Timetable(summit=summit, tracks=tracks(session=session, summit=summit), days=days,
                     speakers=session_speakers(session=session, session_ids=ids),
                     rooms=session_rooms(session=session, session_ids=ids))


def speaker_sessions(*, session: Session, speaker: SummitSpeaker) -> list[SummitSession]:
    """The sessions a speaker appears in, by start time."""
    return list(session.scalars(
        select(SummitSession)
        .join(SummitSessionSpeaker, SummitSessionSpeaker.session_id == SummitSession.id)
        .where(SummitSessionSpeaker.speaker_id == speaker.id)
        .order_by(SummitSession.starts_at, SummitSession.position, SummitSession.id)))


@dataclass(frozen=True)
class NowOn:
    """What is on at ``at``: live sessions (or in their slot) and the next to start."""

    at: dt.datetime
    live: list[SummitSession]
    next: list[SummitSession]


def is_on_now(row: SummitSession, now: dt.datetime) -> bool:
    """Live, or scheduled and within its slot (an organizer may not have pressed "live")."""
    if row.status == SessionStatus.LIVE:
        return True
    return (row.status == SessionStatus.SCHEDULED
            and aware(row.starts_at) <= now < aware(row.ends_at))


def whats_on(*, session: Session, summit: Summit, now: dt.datetime | None = None,
             upcoming: int = 3) -> NowOn:
    """Return what is on now and the next sessions to start."""
    at = now or utcnow()
    live = list(session.scalars(
        select(SummitSession).where(
            SummitSession.summit_id == summit.id,
            or_(SummitSession.status == SessionStatus.LIVE,
                and_(SummitSession.status == SessionStatus.SCHEDULED,
                     SummitSession.starts_at <= at, SummitSession.ends_at > at)))
        .order_by(SummitSession.starts_at, SummitSession.position, SummitSession.id)))
    following = list(session.scalars(
        select(SummitSession).where(
            SummitSession.summit_id == summit.id,
            SummitSession.status == SessionStatus.SCHEDULED,
            SummitSession.starts_at > at)
        .order_by(SummitSession.starts_at, SummitSession.position, SummitSession.id)
        .limit(upcoming)))
    return NowOn(at=at, live=live, next=following)


def session_phase(row: SummitSession, now: dt.datetime | None = None) -> str:
    """Where a session stands for its page: ``before``, ``live`` or ``after``."""
    at = now or utcnow()
    if row.status == SessionStatus.LIVE:
        return "live"
    if row.status == SessionStatus.ENDED:
        return "after"
    if at < aware(row.starts_at):
        return "before"
    return "live" if at < aware(row.ends_at) else "after"


# --- organizers' changes ----------------------------------------------------------------------


def _require_organizer(actor: User | None, summit: Summit) -> User:
    if actor is None:
        raise NotAuthenticated("Please sign in first.")
    if not is_organizer(actor, summit):
        raise PermissionDenied("Only the summit's organizers may do this.",
                               code="organizer_only")
    return actor


def check_organizer(*, actor: User | None, summit: Summit) -> User:
    """Return ``actor`` if they organize ``summit``; 401/403 otherwise."""
    return _require_organizer(actor, summit)


def _set(session: Session, obj: Any, *, actor: User, action: str, object_type: str,
         values: dict[str, Any], created: bool = False) -> None:
    diff = audit.changes(obj, **values)
    if created:
        session.add(obj)
        session.flush()
        audit.record(session, actor_id=actor.id, action=action, object_type=object_type,
                     object_id=obj.id, data={"new": diff["new"]})
    elif diff["new"]:
        session.flush()
        audit.record(session, actor_id=actor.id, action=action, object_type=object_type,
                     object_id=obj.id, data=diff)


def do_create_summit(*, session: Session, actor: User | None, data: SummitCreate) -> Summit:
    """Create a draft summit. Reviewers may host it for any organization (or none); an
    organization's staff create summits hosted by their own approved organization."""
    if actor is None:
        raise NotAuthenticated("Please sign in first.")
    host_id = data.host_organization_id
    if actor.role in (Role.REVIEWER, Role.ADMIN) and actor.is_active:
        if host_id is not None and session.get(Organization, host_id) is None:
            raise InvalidInput("This organization does not exist.",
                               code="organization_not_found", field="host_organization_id")
    elif actor.role == Role.ORG_STAFF and actor.organization_id is not None and actor.is_active:
        if host_id not in (None, actor.organization_id):
            raise PermissionDenied("You can only host summits for your own organization.",
                                   code="organizer_only")
        host_id = actor.organization_id
        org = session.get(Organization, host_id)
        if org is None or org.status != OrgStatus.APPROVED:
            raise PermissionDenied("Only approved organizations may host a summit.",
                                   code="organization_not_approved")
    else:
        raise PermissionDenied("Only platform reviewers and organizations' staff may create "
                               "a summit.", code="organizer_only")
    slug = data.slug.strip().lower()
    if not SLUG_RE.match(slug):
        raise InvalidInput("Use 2 to 60 lowercase letters, digits and hyphens.",
                           code="invalid_slug", field="slug")
    if len(slug) < 2:
        raise InvalidInput("Use 2 to 60 lowercase letters, digits and hyphens.",
                           code="invalid_slug", field="slug")
    if session.scalars(select(Summit.id).where(Summit.slug == slug)).first() is not None:
        raise Conflict("This address is taken by another summit.", code="slug_taken",
                       field="slug")
    _check_days(data.starts_on, data.ends_on)
    summit = Summit(created_by_id=actor.id)
    _set(session, summit, actor=actor, action="summit.summit.created", object_type="summit",
         created=True, values={
             "slug": slug,
             "title": _text(data.title, field="title", max_len=120, required=True),
             "title_en": _optional_text(data.title_en, field="title_en", max_len=120),
             "tagline": _text(data.tagline, field="tagline", max_len=200),
             "description": _text(data.description, field="description", max_len=10_000),
             "host_organization_id": host_id,
             "starts_on": data.starts_on,
             "ends_on": data.ends_on,
             "status": SummitStatus.DRAFT,
             "capacity": data.capacity,
             "delegation_size": data.delegation_size,
             "registration_closes_at": (
                 _as_utc(data.registration_closes_at, field="registration_closes_at")
                 if data.registration_closes_at else None),
         })
    return summit


def do_update_summit(*, session: Session, actor: User | None, summit: Summit,
                     data: SummitUpdate) -> Summit:
    """Change a summit's details (its days may not leave a session outside them)."""
    user = _require_organizer(actor, summit)
    sent = data.model_fields_set
    values: dict[str, Any] = {}
    if "title" in sent and data.title is not None:
        values["title"] = _text(data.title, field="title", max_len=120, required=True)
    if "title_en" in sent:
        values["title_en"] = _optional_text(data.title_en, field="title_en", max_len=120)
    if "tagline" in sent:
        values["tagline"] = _text(data.tagline, field="tagline", max_len=200)
    if "description" in sent:
        values["description"] = _text(data.description, field="description", max_len=10_000)
    if "capacity" in sent:
        values["capacity"] = data.capacity
    if "delegation_size" in sent and data.delegation_size is not None:
        values["delegation_size"] = data.delegation_size
    if "registration_closes_at" in sent:
        values["registration_closes_at"] = (
            _as_utc(data.registration_closes_at, field="registration_closes_at")
            if data.registration_closes_at else None)
    if "moderation_keywords" in sent:
        values["moderation_keywords"] = _text(data.moderation_keywords,
                                              field="moderation_keywords", max_len=10_000)
    starts_on = data.starts_on if data.starts_on is not None else summit.starts_on
    ends_on = data.ends_on if data.ends_on is not None else summit.ends_on
    if (starts_on, ends_on) != (summit.starts_on, summit.ends_on):
        _check_days(starts_on, ends_on)
        probe = Summit(starts_on=starts_on, ends_on=ends_on)
        for row in sessions_of(session=session, summit=summit):
            try:
                check_session_times(probe, aware(row.starts_at), aware(row.ends_at))
            except InvalidInput as exc:
                raise Conflict("A session (%(title)s) would fall outside the summit's days.",
                               code="sessions_outside_days", field="starts_on",
                               params={"title": row.title}) from exc
        values["starts_on"], values["ends_on"] = starts_on, ends_on
    _set(session, summit, actor=user, action="summit.summit.updated", object_type="summit",
         values=values)
    return summit


def do_publish_summit(*, session: Session, actor: User | None, summit: Summit) -> Summit:
    """Publish a draft summit (it needs at least one session); publishing twice is a no-op."""
    user = _require_organizer(actor, summit)
    if summit.status == SummitStatus.PUBLISHED:
        return summit
    count = session.scalar(select(func.count()).select_from(SummitSession)
                           .where(SummitSession.summit_id == summit.id))
    if not count:
        raise Conflict("Add at least one session before publishing.", code="summit_empty")
    _set(session, summit, actor=user, action="summit.summit.published", object_type="summit",
         values={"status": SummitStatus.PUBLISHED})
    return summit


def _track_values(data: TrackIn, *, creating: bool) -> dict[str, Any]:
    sent = data.model_fields_set
    values: dict[str, Any] = {}
    if creating or ("name" in sent and data.name is not None):
        values["name"] = _text(data.name, field="name", max_len=60, required=True)
    if "name_en" in sent:
        values["name_en"] = _optional_text(data.name_en, field="name_en", max_len=60)
    if "color" in sent and data.color is not None:
        color = data.color.strip()
        if not COLOR_RE.match(color):
            raise InvalidInput("Use a colour like #c0392b.", code="invalid_color",
                               field="color")
        values["color"] = color.lower()
    if "position" in sent and data.position is not None:
        values["position"] = data.position
    return values


def do_create_track(*, session: Session, actor: User | None, summit: Summit,
                    data: TrackIn) -> SummitTrack:
    """Add a track."""
    user = _require_organizer(actor, summit)
    track = SummitTrack(summit_id=summit.id)
    _set(session, track, actor=user, action="summit.track.created", object_type="summit_track",
         created=True, values=_track_values(data, creating=True))
    return track


def do_update_track(*, session: Session, actor: User | None, summit: Summit,
                    track: SummitTrack, data: TrackIn) -> SummitTrack:
    """Change a track."""
    user = _require_organizer(actor, summit)
    _set(session, track, actor=user, action="summit.track.updated", object_type="summit_track",
         values=_track_values(data, creating=False))
    return track


def _speaker_values(data: SpeakerIn, *, creating: bool) -> dict[str, Any]:
    sent = data.model_fields_set
    values: dict[str, Any] = {}
    if creating or ("name" in sent and data.name is not None):
        values["name"] = _text(data.name, field="name", max_len=60, required=True)
    for name, limit in (("title", 120), ("affiliation", 120), ("bio", 10_000)):
        if name in sent:
            values[name] = _text(getattr(data, name), field=name, max_len=limit)
    if "photo_url" in sent:
        values["photo_url"] = check_url(data.photo_url, field="photo_url", max_len=300,
                                        allow_path=True)
    if "position" in sent and data.position is not None:
        values["position"] = data.position
    return values


def do_create_speaker(*, session: Session, actor: User | None, summit: Summit,
                      data: SpeakerIn) -> SummitSpeaker:
    """Add a speaker."""
    user = _require_organizer(actor, summit)
    speaker = SummitSpeaker(summit_id=summit.id)
    _set(session, speaker, actor=user, action="summit.speaker.created",
         object_type="summit_speaker", created=True,
         values=_speaker_values(data, creating=True))
    return speaker


def do_update_speaker(*, session: Session, actor: User | None, summit: Summit,
                      speaker: SummitSpeaker, data: SpeakerIn) -> SummitSpeaker:
    """Change a speaker."""
    user = _require_organizer(actor, summit)
    _set(session, speaker, actor=user, action="summit.speaker.updated",
         object_type="summit_speaker", values=_speaker_values(data, creating=False))
    return speaker


def _session_values(session: Session, summit: Summit, data: SessionIn, *,
                    current: SummitSession | None) -> dict[str, Any]:
    sent = data.model_fields_set
    values: dict[str, Any] = {}
    creating = current is None
    for name in ("kind", "title", "starts_at", "ends_at"):
        if creating and getattr(data, name) is None:
            raise InvalidInput("This field is required.", code="required", field=name)
    if data.kind is not None:
        values["kind"] = data.kind
    if creating or ("title" in sent and data.title is not None):
        values["title"] = _text(data.title, field="title", max_len=160, required=True)
    if "title_en" in sent:
        values["title_en"] = _optional_text(data.title_en, field="title_en", max_len=160)
    if "description" in sent:
        values["description"] = _text(data.description, field="description", max_len=10_000)
    if "track_id" in sent:
        if data.track_id is not None:
            get_track(session=session, summit=summit, track_id=data.track_id)
        values["track_id"] = data.track_id
    if "capacity" in sent:
        values["capacity"] = data.capacity
    if "position" in sent and data.position is not None:
        values["position"] = data.position
    if "stream_url" in sent:
        values["stream_url"] = check_stream_url(data.stream_url)
    if "player_url" in sent:
        values["player_url"] = check_url(data.player_url, field="player_url", https_only=True)
    if "replay_url" in sent:
        values["replay_url"] = check_replay_url(data.replay_url)
    starts_at = (_as_utc(data.starts_at, field="starts_at") if data.starts_at is not None
                 else aware(current.starts_at) if current else None)
    ends_at = (_as_utc(data.ends_at, field="ends_at") if data.ends_at is not None
               else aware(current.ends_at) if current else None)
    assert starts_at is not None and ends_at is not None  # noqa: S101 - checked above
    if creating or data.starts_at is not None or data.ends_at is not None:
        check_session_times(summit, starts_at, ends_at)
        values["starts_at"], values["ends_at"] = starts_at, ends_at
    kind = values.get("kind", current.kind if current else None)
    if current is not None and kind != SessionKind.ROUNDTABLE and rooms_of(
            session=session, summit_session=current):
        raise Conflict("Remove the breakout rooms before making this session other than a "
                       "roundtable.", code="session_has_rooms", field="kind")
    return values


def do_create_session(*, session: Session, actor: User | None, summit: Summit,
                      data: SessionIn) -> SummitSession:
    """Add a session to the timetable."""
    user = _require_organizer(actor, summit)
    row = SummitSession(summit_id=summit.id, status=SessionStatus.SCHEDULED)
    _set(session, row, actor=user, action="summit.session.created",
         object_type="summit_session", created=True,
         values=_session_values(session, summit, data, current=None))
    return row


def do_update_session(*, session: Session, actor: User | None, summit: Summit,
                      summit_session: SummitSession, data: SessionIn) -> SummitSession:
    """Change a session (its times, stage URLs, track...)."""
    user = _require_organizer(actor, summit)
    values = _session_values(session, summit, data, current=summit_session)
    if "starts_at" in values and aware(summit_session.starts_at) == values["starts_at"]:
        values["starts_at"] = summit_session.starts_at  # no spurious change (SQLite: naive)
    if "ends_at" in values and aware(summit_session.ends_at) == values["ends_at"]:
        values["ends_at"] = summit_session.ends_at
    _set(session, summit_session, actor=user, action="summit.session.updated",
         object_type="summit_session", values=values)
    return summit_session


def do_set_status(*, session: Session, actor: User | None, summit: Summit,
                  summit_session: SummitSession, status: SessionStatus) -> SummitSession:
    """Move a session forward: scheduled → live → ended (the same status again is a no-op)."""
    user = _require_organizer(actor, summit)
    if status == summit_session.status:
        return summit_session
    if STATUS_ORDER[status] < STATUS_ORDER[summit_session.status]:
        raise Conflict("A session's status only moves forward (scheduled, live, ended).",
                       code="invalid_status_change", field="status")
    _set(session, summit_session, actor=user, action="summit.session.status_changed",
         object_type="summit_session", values={"status": status})
    return summit_session


def do_set_session_speakers(*, session: Session, actor: User | None, summit: Summit,
                            summit_session: SummitSession,
                            entries: Sequence[SessionSpeakerIn]) -> list[BilledSpeaker]:
    """Replace the session's speakers with ``entries`` (in order)."""
    user = _require_organizer(actor, summit)
    seen: set[int] = set()
    for entry in entries:
        if entry.role not in SPEAKER_ROLES:
            raise InvalidInput("A role is speaker, host or panelist.", code="invalid_role",
                               field="role")
        if entry.speaker_id in seen:
            raise InvalidInput("A speaker is listed twice.", code="duplicate_speaker",
                               field="speakers")
        seen.add(entry.speaker_id)
        get_speaker(session=session, summit=summit, speaker_id=entry.speaker_id)
    before = [(b.speaker.id, b.role) for b in session_speakers(
        session=session, session_ids=[summit_session.id])[summit_session.id]]
    after = [(e.speaker_id, e.role) for e in entries]
    if before != after:
        session.execute(delete(SummitSessionSpeaker)
                        .where(SummitSessionSpeaker.session_id == summit_session.id))
        for position, entry in enumerate(entries):
            session.add(SummitSessionSpeaker(session_id=summit_session.id,
                                             speaker_id=entry.speaker_id, role=entry.role,
                                             position=position))
        session.flush()
        audit.record(session, actor_id=user.id, action="summit.session.speakers_set",
                     object_type="summit_session", object_id=summit_session.id,
                     data={"old": {"speakers": [list(b) for b in before]},
                           "new": {"speakers": [list(a) for a in after]}})
    return session_speakers(session=session,
                            session_ids=[summit_session.id])[summit_session.id]


def _room_values(data: RoomIn, *, creating: bool) -> dict[str, Any]:
    sent = data.model_fields_set
    values: dict[str, Any] = {}
    if creating or ("name" in sent and data.name is not None):
        values["name"] = _text(data.name, field="name", max_len=60, required=True)
    if "topic" in sent:
        values["topic"] = _text(data.topic, field="topic", max_len=200)
    if "video_url" in sent:
        values["video_url"] = check_url(data.video_url, field="video_url", https_only=True)
    if "capacity" in sent and data.capacity is not None:
        values["capacity"] = data.capacity
    if "position" in sent and data.position is not None:
        values["position"] = data.position
    return values


def do_create_room(*, session: Session, actor: User | None, summit: Summit,
                   summit_session: SummitSession, data: RoomIn) -> SummitRoom:
    """Add a breakout room to a roundtable."""
    user = _require_organizer(actor, summit)
    if summit_session.kind != SessionKind.ROUNDTABLE:
        raise Conflict("Only roundtables have breakout rooms.", code="not_a_roundtable")
    room = SummitRoom(session_id=summit_session.id)
    _set(session, room, actor=user, action="summit.room.created", object_type="summit_room",
         created=True, values=_room_values(data, creating=True))
    return room


def do_update_room(*, session: Session, actor: User | None, summit: Summit,
                   room: SummitRoom, data: RoomIn) -> SummitRoom:
    """Change a breakout room."""
    user = _require_organizer(actor, summit)
    _set(session, room, actor=user, action="summit.room.updated", object_type="summit_room",
         values=_room_values(data, creating=False))
    return room


def do_delete_room(*, session: Session, actor: User | None, summit: Summit,
                   room: SummitRoom) -> None:
    """Remove a breakout room (its chat history stays with the session)."""
    user = _require_organizer(actor, summit)
    audit.record(session, actor_id=user.id, action="summit.room.deleted",
                 object_type="summit_room", object_id=room.id,
                 data={"old": {"name": room.name, "session_id": room.session_id}})
    session.delete(room)
    session.flush()


# --- my agenda --------------------------------------------------------------------------------


def _agenda_user(actor: User | None, summit: Summit) -> User:
    if actor is None:
        raise NotAuthenticated("Please sign in to keep your own agenda.")
    if summit.status != SummitStatus.PUBLISHED:
        raise Conflict("This summit is not published yet.", code="summit_not_published")
    return actor


def agenda(*, session: Session, summit: Summit, user: User) -> list[SummitSession]:
    """The sessions on ``user``'s agenda at ``summit``, by start time."""
    return list(session.scalars(
        select(SummitSession)
        .join(SummitAgendaItem, SummitAgendaItem.session_id == SummitSession.id)
        .where(SummitAgendaItem.user_id == user.id, SummitSession.summit_id == summit.id)
        .order_by(SummitSession.starts_at, SummitSession.position, SummitSession.id)))


def agenda_ids(*, session: Session, summit: Summit, user: User | None) -> set[int]:
    """The ids of the sessions on ``user``'s agenda (empty when signed out)."""
    if user is None:
        return set()
    return set(session.scalars(
        select(SummitAgendaItem.session_id)
        .join(SummitSession, SummitSession.id == SummitAgendaItem.session_id)
        .where(SummitAgendaItem.user_id == user.id, SummitSession.summit_id == summit.id)))


def do_add_to_agenda(*, session: Session, actor: User | None, summit: Summit,
                     summit_session: SummitSession) -> bool:
    """Put a session on the actor's agenda; True if it was added (False: already there)."""
    user = _agenda_user(actor, summit)
    if summit_session.summit_id != summit.id:
        raise NotFound(N_("This session does not exist."), code="session_not_found")
    if session.get(SummitAgendaItem, (user.id, summit_session.id)) is not None:
        return False
    # Two quick taps (or two tabs) may race: the primary key decides, either way it is there.
    return flush_unless_duplicate(
        session, SummitAgendaItem(user_id=user.id, session_id=summit_session.id))


def do_remove_from_agenda(*, session: Session, actor: User | None, summit: Summit,
                          summit_session: SummitSession) -> bool:
    """Take a session off the actor's agenda; True if it was there."""
    user = _agenda_user(actor, summit)
    item = session.get(SummitAgendaItem, (user.id, summit_session.id))
    if item is None:
        return False
    session.delete(item)
    session.flush()
    return True
