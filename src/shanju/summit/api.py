"""JSON API of summits: events, timetable, speakers, agenda (under /api/v1/summits).

Reading is open for published summits (drafts: organizers only, others get a 404). Organizers
(``summit.access.is_organizer``) create and change summits, tracks, speakers, sessions and
breakout rooms and set a session's status. Errors are ``{"error": {"code", "message"}}``
with stable codes (``summit_not_found``, ``organizer_only``, ``ends_before_starts``,
``outside_summit_days``, ``stream_not_hls``, ``invalid_url``, ``https_required``...).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core.clock import utcnow
from shanju.core.config import Settings
from shanju.core.db import DbId
from shanju.core.deps import SESSION_COOKIE, CsrfChecked, CurrentUser, DbSession, Viewer
from shanju.core.errors import NotAuthenticated, NotFound, PermissionDenied
from shanju.core.i18n import N_
from shanju.summit import access, service
from shanju.summit.models import (
    Summit,
    SummitRoom,
    SummitSession,
    SummitSpeaker,
    SummitStatus,
    SummitTrack,
)
from shanju.summit.schemas import (
    AgendaRead,
    LiveTokenRead,
    NowOn,
    RoomIn,
    RoomRead,
    SessionIn,
    SessionRead,
    SessionSpeakerRead,
    SessionSpeakersSet,
    SpeakerIn,
    SpeakerList,
    SpeakerRead,
    SpeakerWithSessions,
    StatusChange,
    SummitCreate,
    SummitList,
    SummitRead,
    SummitUpdate,
    TimetableDay,
    TimetableRead,
    TrackIn,
    TrackRead,
)

router = APIRouter(prefix="/summits", tags=["summit"])
Slug = Annotated[str, Path(max_length=60)]


# --- shapes -----------------------------------------------------------------------------------


def track_read(track: SummitTrack) -> TrackRead:
    """A track as the API shows it."""
    return TrackRead(id=track.id, name=track.name, name_en=track.name_en, color=track.color,
                     position=track.position)


def speaker_read(speaker: SummitSpeaker) -> SpeakerRead:
    """A speaker as the API shows it."""
    return SpeakerRead(id=speaker.id, name=speaker.name, title=speaker.title,
                       affiliation=speaker.affiliation, bio=speaker.bio,
                       photo_url=speaker.photo_url, position=speaker.position)


def room_read(room: SummitRoom) -> RoomRead:
    """A breakout room as the API shows it."""
    return RoomRead(id=room.id, name=room.name, topic=room.topic, video_url=room.video_url,
                    capacity=room.capacity, position=room.position)


def summit_read(session: Session, summit: Summit) -> SummitRead:
    """A summit as the API shows it, with its days and tracks."""
    return SummitRead(
        id=summit.id, slug=summit.slug, title=summit.title, title_en=summit.title_en,
        tagline=summit.tagline, description=summit.description,
        host_organization_id=summit.host_organization_id, starts_on=summit.starts_on,
        ends_on=summit.ends_on, status=summit.status, capacity=summit.capacity,
        delegation_size=summit.delegation_size,
        registration_closes_at=summit.registration_closes_at,
        days=service.summit_days(summit),
        tracks=[track_read(t) for t in service.tracks(session=session, summit=summit)],
        url=f"/summits/{summit.slug}",
    )


def sessions_read(session: Session, summit: Summit,
                  rows: list[SummitSession]) -> list[SessionRead]:
    """Sessions as the API shows them, with speakers and rooms."""
    ids = [r.id for r in rows]
    billed = service.session_speakers(session=session, session_ids=ids)
    rooms = service.session_rooms(session=session, session_ids=ids)
    return [_session_read(summit, r, billed[r.id], rooms[r.id]) for r in rows]


def _session_read(summit: Summit, row: SummitSession, billed: list[service.BilledSpeaker],
                  rooms: list[SummitRoom]) -> SessionRead:
    return SessionRead(
        id=row.id, summit_slug=summit.slug, kind=row.kind, title=row.title,
        title_en=row.title_en, description=row.description, track_id=row.track_id,
        starts_at=row.starts_at, ends_at=row.ends_at, day=service.china_date(row.starts_at),
        status=row.status, capacity=row.capacity, stream_url=row.stream_url,
        player_url=row.player_url, replay_url=row.replay_url, position=row.position,
        url=f"/summits/{summit.slug}/sessions/{row.id}",
        speakers=[SessionSpeakerRead(speaker_id=b.speaker.id, name=b.speaker.name, role=b.role,
                                     photo_url=b.speaker.photo_url) for b in billed],
        rooms=[room_read(r) for r in rooms],
    )


def _one(session: Session, summit: Summit, row: SummitSession) -> SessionRead:
    return sessions_read(session, summit, [row])[0]


# --- summits ----------------------------------------------------------------------------------


@router.get("", response_model=SummitList, summary="List summits")
def list_summits(session: DbSession, viewer: Viewer) -> SummitList:
    """Published summits (and the drafts you organize), latest first."""
    return SummitList(items=[summit_read(session, s)
                             for s in service.list_summits(session=session, viewer=viewer)])


@router.post("", response_model=SummitRead, status_code=201, summary="Create a summit",
             dependencies=[CsrfChecked])
def create_summit(session: DbSession, user: CurrentUser, body: SummitCreate) -> SummitRead:
    """Create a draft summit (platform reviewers, or an approved organization's staff)."""
    summit = service.do_create_summit(session=session, actor=user, data=body)
    return summit_read(session, summit)


@router.get("/{slug}", response_model=SummitRead, summary="A summit")
def get_summit(session: DbSession, viewer: Viewer, slug: Slug) -> SummitRead:
    """A summit with its days and tracks."""
    return summit_read(session, service.get_summit(session=session, slug=slug, viewer=viewer))


@router.get("/{slug}/live-token", response_model=LiveTokenRead,
            summary="A fresh live token (signed-in browsers)")
def live_token(request: Request, response: Response, session: DbSession, user: CurrentUser,
               slug: Slug) -> LiveTokenRead:
    """A new live token for the summit's live rooms (docs/summit/live-protocol.md), for the
    browser session of the cookie: the live panel fetches one when it reconnects with an
    expired token or its role changed. ``401`` when not signed in with a browser session,
    ``403 not_registered`` for someone who may not join."""
    response.headers["Cache-Control"] = "no-store"
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    if summit.status != SummitStatus.PUBLISHED:
        raise NotFound(N_("This summit does not exist."), code="summit_not_found")
    settings: Settings = request.app.state.settings
    signed_in_here = getattr(request.state, "auth", None) == "session"
    web_session = (access.browser_session_id(session, request.cookies.get(SESSION_COOKIE))
                   if signed_in_here else None)
    if web_session is None:
        raise NotAuthenticated(N_("Sign in with your browser to join the live rooms."))
    grant = access.grant_live_token(
        session, summit=summit, user=user, web_session_id=web_session,
        secret=settings.secret_key, ttl=settings.summit_live_token_seconds)
    if grant is None:
        raise PermissionDenied(N_("Only registered participants can join the discussion."),
                               code="not_registered")
    return LiveTokenRead(token=grant.token, role=grant.role, ttl=grant.ttl)


@router.patch("/{slug}", response_model=SummitRead, summary="Change a summit (organizers)",
              dependencies=[CsrfChecked])
def update_summit(session: DbSession, user: CurrentUser, slug: Slug,
                  body: SummitUpdate) -> SummitRead:
    """Change a summit's details; its days may not leave any session outside them."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    service.do_update_summit(session=session, actor=user, summit=summit, data=body)
    return summit_read(session, summit)


@router.post("/{slug}/publish", response_model=SummitRead,
             summary="Publish a summit (organizers)", dependencies=[CsrfChecked])
def publish_summit(session: DbSession, user: CurrentUser, slug: Slug) -> SummitRead:
    """Make a draft summit public (it needs at least one session)."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    service.do_publish_summit(session=session, actor=user, summit=summit)
    return summit_read(session, summit)


@router.get("/{slug}/timetable", response_model=TimetableRead, summary="The timetable")
def get_timetable(session: DbSession, viewer: Viewer, slug: Slug) -> TimetableRead:
    """The summit's days (China dates) with their sessions in order, and its tracks."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    table = service.timetable(session=session, summit=summit)
    return TimetableRead(
        summit=summit_read(session, summit),
        tracks=[track_read(t) for t in table.tracks],
        days=[TimetableDay(date=d.date, sessions=[
            _session_read(summit, r, table.speakers[r.id], table.rooms[r.id])
            for r in d.sessions]) for d in table.days],
    )


@router.get("/{slug}/now", response_model=NowOn, summary="What's on now")
def whats_on(session: DbSession, viewer: Viewer, slug: Slug) -> NowOn:
    """Sessions live now (or in their timetable slot) and the next ones to start."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    now = service.whats_on(session=session, summit=summit, now=utcnow())
    return NowOn(at=now.at, live=sessions_read(session, summit, now.live),
                 next=sessions_read(session, summit, now.next))


# --- tracks -----------------------------------------------------------------------------------


@router.post("/{slug}/tracks", response_model=TrackRead, status_code=201,
             summary="Add a track (organizers)", dependencies=[CsrfChecked])
def create_track(session: DbSession, user: CurrentUser, slug: Slug, body: TrackIn) -> TrackRead:
    """Add a track (a name and a #rrggbb colour)."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    return track_read(service.do_create_track(session=session, actor=user, summit=summit,
                                              data=body))


@router.patch("/{slug}/tracks/{track_id}", response_model=TrackRead,
              summary="Change a track (organizers)", dependencies=[CsrfChecked])
def update_track(session: DbSession, user: CurrentUser, slug: Slug, track_id: DbId,
                 body: TrackIn) -> TrackRead:
    """Change a track."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    track = service.get_track(session=session, summit=summit, track_id=track_id)
    return track_read(service.do_update_track(session=session, actor=user, summit=summit,
                                              track=track, data=body))


# --- speakers ---------------------------------------------------------------------------------


@router.get("/{slug}/speakers", response_model=SpeakerList, summary="The speakers")
def list_speakers(session: DbSession, viewer: Viewer, slug: Slug) -> SpeakerList:
    """The summit's speakers in order."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    return SpeakerList(items=[speaker_read(s)
                              for s in service.speakers(session=session, summit=summit)])


@router.get("/{slug}/speakers/{speaker_id}", response_model=SpeakerWithSessions,
            summary="A speaker and their sessions")
def get_speaker(session: DbSession, viewer: Viewer, slug: Slug,
                speaker_id: DbId) -> SpeakerWithSessions:
    """A speaker with the sessions they appear in."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    speaker = service.get_speaker(session=session, summit=summit, speaker_id=speaker_id)
    rows = service.speaker_sessions(session=session, speaker=speaker)
    return SpeakerWithSessions(speaker=speaker_read(speaker),
                               sessions=sessions_read(session, summit, rows))


@router.post("/{slug}/speakers", response_model=SpeakerRead, status_code=201,
             summary="Add a speaker (organizers)", dependencies=[CsrfChecked])
def create_speaker(session: DbSession, user: CurrentUser, slug: Slug,
                   body: SpeakerIn) -> SpeakerRead:
    """Add a speaker (name, job title, affiliation, bio, photo)."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    return speaker_read(service.do_create_speaker(session=session, actor=user, summit=summit,
                                                  data=body))


@router.patch("/{slug}/speakers/{speaker_id}", response_model=SpeakerRead,
              summary="Change a speaker (organizers)", dependencies=[CsrfChecked])
def update_speaker(session: DbSession, user: CurrentUser, slug: Slug, speaker_id: DbId,
                   body: SpeakerIn) -> SpeakerRead:
    """Change a speaker."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    speaker = service.get_speaker(session=session, summit=summit, speaker_id=speaker_id)
    return speaker_read(service.do_update_speaker(session=session, actor=user, summit=summit,
                                                  speaker=speaker, data=body))


# --- sessions ---------------------------------------------------------------------------------


@router.get("/{slug}/sessions/{session_id}", response_model=SessionRead, summary="A session")
def get_session(session: DbSession, viewer: Viewer, slug: Slug,
                session_id: DbId) -> SessionRead:
    """A session with its speakers, stage URLs and breakout rooms."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    return _one(session, summit, row)


@router.post("/{slug}/sessions", response_model=SessionRead, status_code=201,
             summary="Add a session (organizers)", dependencies=[CsrfChecked])
def create_session(session: DbSession, user: CurrentUser, slug: Slug,
                   body: SessionIn) -> SessionRead:
    """Add a keynote, forum or roundtable within the summit's days; ``stream_url`` must be an
    HLS playlist (.m3u8), ``player_url`` an https page."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    row = service.do_create_session(session=session, actor=user, summit=summit, data=body)
    return _one(session, summit, row)


@router.patch("/{slug}/sessions/{session_id}", response_model=SessionRead,
              summary="Change a session (organizers)", dependencies=[CsrfChecked])
def update_session(session: DbSession, user: CurrentUser, slug: Slug, session_id: DbId,
                   body: SessionIn) -> SessionRead:
    """Change a session; send ``null`` to clear a URL."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    service.do_update_session(session=session, actor=user, summit=summit, summit_session=row,
                              data=body)
    return _one(session, summit, row)


@router.post("/{slug}/sessions/{session_id}/status", response_model=SessionRead,
             summary="Set a session's status (organizers)", dependencies=[CsrfChecked])
def set_status(session: DbSession, user: CurrentUser, slug: Slug, session_id: DbId,
               body: StatusChange) -> SessionRead:
    """Move a session forward: scheduled → live → ended."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    service.do_set_status(session=session, actor=user, summit=summit, summit_session=row,
                          status=body.status)
    return _one(session, summit, row)


@router.put("/{slug}/sessions/{session_id}/speakers", response_model=SessionRead,
            summary="Set a session's speakers (organizers)", dependencies=[CsrfChecked])
def set_speakers(session: DbSession, user: CurrentUser, slug: Slug, session_id: DbId,
                 body: SessionSpeakersSet) -> SessionRead:
    """Replace the session's speakers (in order, each a speaker, host or panelist)."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    service.do_set_session_speakers(session=session, actor=user, summit=summit,
                                    summit_session=row, entries=body.speakers)
    return _one(session, summit, row)


@router.post("/{slug}/sessions/{session_id}/rooms", response_model=RoomRead, status_code=201,
             summary="Add a breakout room to a roundtable (organizers)",
             dependencies=[CsrfChecked])
def create_room(session: DbSession, user: CurrentUser, slug: Slug, session_id: DbId,
                body: RoomIn) -> RoomRead:
    """Add a breakout room (a small chat and a link to its video room) to a roundtable."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    return room_read(service.do_create_room(session=session, actor=user, summit=summit,
                                            summit_session=row, data=body))


@router.patch("/{slug}/sessions/{session_id}/rooms/{room_id}", response_model=RoomRead,
              summary="Change a breakout room (organizers)", dependencies=[CsrfChecked])
def update_room(session: DbSession, user: CurrentUser, slug: Slug, session_id: DbId,
                room_id: DbId, body: RoomIn) -> RoomRead:
    """Change a breakout room."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    room = service.get_room(session=session, summit_session=row, room_id=room_id)
    return room_read(service.do_update_room(session=session, actor=user, summit=summit,
                                            room=room, data=body))


@router.delete("/{slug}/sessions/{session_id}/rooms/{room_id}", status_code=204,
               summary="Remove a breakout room (organizers)", dependencies=[CsrfChecked])
def delete_room(session: DbSession, user: CurrentUser, slug: Slug, session_id: DbId,
                room_id: DbId) -> Response:
    """Remove a breakout room from a roundtable."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    room = service.get_room(session=session, summit_session=row, room_id=room_id)
    service.do_delete_room(session=session, actor=user, summit=summit, room=room)
    return Response(status_code=204)


# --- my agenda --------------------------------------------------------------------------------


def _agenda(session: Session, summit: Summit, user: User) -> AgendaRead:
    rows = service.agenda(session=session, summit=summit, user=user)
    return AgendaRead(summit_slug=summit.slug, sessions=sessions_read(session, summit, rows),
                      ics_url=f"/summits/{summit.slug}/agenda.ics")


@router.get("/{slug}/agenda", response_model=AgendaRead, summary="My agenda")
def get_agenda(session: DbSession, user: CurrentUser, slug: Slug) -> AgendaRead:
    """The sessions on your agenda at this summit, by start time."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    return _agenda(session, summit, user)


@router.put("/{slug}/agenda/{session_id}", response_model=AgendaRead,
            summary="Add a session to my agenda", dependencies=[CsrfChecked])
def add_to_agenda(session: DbSession, user: CurrentUser, slug: Slug,
                  session_id: DbId) -> AgendaRead:
    """Put a session on your agenda (adding it twice is fine)."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    service.do_add_to_agenda(session=session, actor=user, summit=summit, summit_session=row)
    return _agenda(session, summit, user)


@router.delete("/{slug}/agenda/{session_id}", status_code=204,
               summary="Remove a session from my agenda", dependencies=[CsrfChecked])
def remove_from_agenda(session: DbSession, user: CurrentUser, slug: Slug,
                       session_id: DbId) -> Response:
    """Take a session off your agenda (removing one that is not there is fine)."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    service.do_remove_from_agenda(session=session, actor=user, summit=summit,
                                  summit_session=row)
    return Response(status_code=204)
