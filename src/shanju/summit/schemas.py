"""Pydantic shapes of the summit's events API: summits, tracks, speakers, sessions, rooms,
the timetable and a person's agenda.

Update shapes (``*Update``) change only the fields a client sends; sending ``null`` clears an
optional field (e.g. a session's ``stream_url``). Times are ISO 8601; a time without an offset
is read as China time (UTC+8). Times in answers are UTC.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from shanju.core.db import DbId
from shanju.summit.models import SessionKind, SessionStatus, SummitStatus

# Generous bounds for the API's schema; the service checks the real limits with stable codes.
_TEXT = 20_000
_LINE = 1_000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SummitCreate(_In):
    """A new summit (a draft until it is published)."""

    slug: str = Field(max_length=_LINE, description="Lowercase letters, digits and '-', 2–60.")
    title: str = Field(max_length=_LINE)
    title_en: str | None = Field(None, max_length=_LINE)
    tagline: str = Field("", max_length=_LINE)
    description: str = Field("", max_length=_TEXT)
    starts_on: dt.date = Field(description="The first day (China date).")
    ends_on: dt.date = Field(description="The last day (China date), at most 14 days later.")
    host_organization_id: DbId | None = Field(
        None, description="The hosting organization (reviewers choose; org staff host their "
        "own organization's summits).")
    capacity: int | None = Field(None, ge=1, le=10_000_000)
    delegation_size: int = Field(5, ge=1, le=1000)
    registration_closes_at: dt.datetime | None = None


class SummitUpdate(_In):
    """Changes to a summit; only the fields sent change."""

    title: str | None = Field(None, max_length=_LINE)
    title_en: str | None = Field(None, max_length=_LINE)
    tagline: str | None = Field(None, max_length=_LINE)
    description: str | None = Field(None, max_length=_TEXT)
    starts_on: dt.date | None = None
    ends_on: dt.date | None = None
    capacity: int | None = Field(None, ge=1, le=10_000_000)
    delegation_size: int | None = Field(None, ge=1, le=1000)
    registration_closes_at: dt.datetime | None = None
    moderation_keywords: str | None = Field(None, max_length=_TEXT)


class TrackIn(_In):
    """A track (create: ``name`` is required)."""

    name: str | None = Field(None, max_length=_LINE)
    name_en: str | None = Field(None, max_length=_LINE)
    color: str | None = Field(None, max_length=_LINE, description="#rrggbb")
    position: int | None = Field(None, ge=0, le=100_000)


class SpeakerIn(_In):
    """A speaker (create: ``name`` is required)."""

    name: str | None = Field(None, max_length=_LINE)
    title: str | None = Field(None, max_length=_LINE)
    affiliation: str | None = Field(None, max_length=_LINE)
    bio: str | None = Field(None, max_length=_TEXT)
    photo_url: str | None = Field(
        None, max_length=_LINE, description="An http(s) URL or a path on this site (/…).")
    position: int | None = Field(None, ge=0, le=100_000)


class SessionIn(_In):
    """A session (create: ``kind``, ``title``, ``starts_at`` and ``ends_at`` are required)."""

    kind: SessionKind | None = None
    title: str | None = Field(None, max_length=_LINE)
    title_en: str | None = Field(None, max_length=_LINE)
    description: str | None = Field(None, max_length=_TEXT)
    track_id: DbId | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    capacity: int | None = Field(None, ge=1, le=10_000_000)
    stream_url: str | None = Field(
        None, max_length=_LINE, description="An HLS playlist (http(s)://….m3u8).")
    player_url: str | None = Field(
        None, max_length=_LINE, description="A provider's player page (https://…), embedded.")
    replay_url: str | None = Field(
        None, max_length=_LINE, description="The replay: an HLS playlist, an MP4 file or an "
        "https player page.")
    position: int | None = Field(None, ge=0, le=100_000)


class SessionSpeakerIn(_In):
    speaker_id: DbId
    role: str = Field("speaker", max_length=_LINE, description="speaker, host or panelist.")


class SessionSpeakersSet(_In):
    """The session's speakers, in order (replaces the list)."""

    speakers: list[SessionSpeakerIn] = Field(max_length=100)


class RoomIn(_In):
    """A roundtable's breakout room (create: ``name`` is required)."""

    name: str | None = Field(None, max_length=_LINE)
    topic: str | None = Field(None, max_length=_LINE)
    video_url: str | None = Field(
        None, max_length=_LINE, description="The room's video meeting (https://…).")
    capacity: int | None = Field(None, ge=2, le=1000)
    position: int | None = Field(None, ge=0, le=100_000)


class StatusChange(_In):
    status: SessionStatus = Field(description="scheduled → live → ended (forward only).")


# --- answers --------------------------------------------------------------------------------


class TrackRead(BaseModel):
    id: int
    name: str
    name_en: str | None
    color: str
    position: int


class SpeakerRead(BaseModel):
    id: int
    name: str
    title: str
    affiliation: str
    bio: str
    photo_url: str | None
    position: int


class SessionSpeakerRead(BaseModel):
    speaker_id: int
    name: str
    role: str
    photo_url: str | None


class RoomRead(BaseModel):
    id: int
    name: str
    topic: str
    video_url: str | None
    capacity: int
    position: int


class LiveTokenRead(BaseModel):
    token: str = Field(description="The live token: the join frame's token")
    role: str = Field(description="attendee or moderator")
    ttl: int = Field(description="Seconds the token is valid from now")


class SessionRead(BaseModel):
    id: int
    summit_slug: str
    kind: SessionKind
    title: str
    title_en: str | None
    description: str
    track_id: int | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    day: dt.date = Field(description="The China date the session starts on.")
    status: SessionStatus
    capacity: int | None
    stream_url: str | None
    player_url: str | None
    replay_url: str | None
    position: int
    url: str = Field(description="The session's page.")
    speakers: list[SessionSpeakerRead]
    rooms: list[RoomRead]


class SummitRead(BaseModel):
    id: int
    slug: str
    title: str
    title_en: str | None
    tagline: str
    description: str
    host_organization_id: int | None
    starts_on: dt.date
    ends_on: dt.date
    status: SummitStatus
    capacity: int | None
    delegation_size: int
    registration_closes_at: dt.datetime | None
    days: list[dt.date]
    tracks: list[TrackRead]
    url: str


class SummitList(BaseModel):
    items: list[SummitRead]


class TimetableDay(BaseModel):
    date: dt.date
    sessions: list[SessionRead]


class TimetableRead(BaseModel):
    summit: SummitRead
    tracks: list[TrackRead]
    days: list[TimetableDay]


class SpeakerWithSessions(BaseModel):
    speaker: SpeakerRead
    sessions: list[SessionRead]


class SpeakerList(BaseModel):
    items: list[SpeakerRead]


class NowOn(BaseModel):
    """What is on now: sessions live (or in their slot), and the next ones to start."""

    at: dt.datetime
    live: list[SessionRead]
    next: list[SessionRead]


class AgendaRead(BaseModel):
    summit_slug: str
    sessions: list[SessionRead]
    ics_url: str
