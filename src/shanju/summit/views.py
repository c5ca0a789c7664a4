"""Summit pages: the summit, timetable, speakers, sessions' stage, my agenda (helper: events),
and a small organizers' console to run the sessions (status, stream and replay addresses).

Everything works without JavaScript: "add to my agenda" is a POST form (with the CSRF token)
that redirects back. The stage page's player is wired by ``static/js/summit-stage.js``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core import headers
from shanju.core.clock import today_cn, utcnow
from shanju.core.config import get_settings
from shanju.core.db import DbId, parse_id
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession, Viewer
from shanju.core.errors import DomainError, InvalidInput
from shanju.core.web import login_url, redirect, render, request_locale, tr
from shanju.summit import ical, service
from shanju.summit.access import is_organizer
from shanju.summit.live_views import live_context
from shanju.summit.models import SessionStatus, Summit, SummitSession, SummitStatus
from shanju.summit.schemas import SessionIn

router = APIRouter()
Slug = Annotated[str, Path(max_length=60)]
FEATURED_SPEAKERS = 8


def _localized(request: Request) -> Any:
    """``loc(obj, "title")``: the English field (``title_en``) on English pages when set."""
    english = request_locale(request) == "en"

    def loc(obj: Any, name: str) -> str:
        if english:
            value = getattr(obj, f"{name}_en", None)
            if value:
                return str(value)
        return str(getattr(obj, name))

    return loc


def _common(request: Request, summit: Summit, viewer: User | None) -> dict[str, Any]:
    return {
        "summit": summit,
        "loc": _localized(request),
        "kind_labels": service.KIND_LABELS,
        "status_labels": service.STATUS_LABELS,
        "role_labels": service.ROLE_LABELS,
        "is_organizer": is_organizer(viewer, summit),
    }


def _day_label(day: dt.date) -> str:
    return f"{day.month}/{day.day}"


def _stage(row: SummitSession, phase: str) -> dict[str, str] | None:
    """What the stage shows: an HLS player, a video file, or a provider's page in an iframe."""
    if phase == "live":
        if row.stream_url:
            return {"kind": "hls", "url": row.stream_url}
        if row.player_url:
            return {"kind": "iframe", "url": row.player_url}
    if phase == "after" and row.replay_url:
        if service.is_hls(row.replay_url):
            return {"kind": "hls", "url": row.replay_url}
        if service.is_mp4(row.replay_url):
            return {"kind": "video", "url": row.replay_url}
        return {"kind": "iframe", "url": row.replay_url}
    return None


def _allow_stage(request: Request, stage: dict[str, str] | None) -> None:
    """Let this page's Content-Security-Policy load the stage from its provider's host."""
    if stage is None:
        return
    if stage["kind"] == "iframe":
        headers.allow_source(request, "frame-src", stage["url"])
    else:  # hls.js fetches the playlist and segments; <video> plays the file or the stream
        headers.allow_source(request, "media-src", stage["url"])
        headers.allow_source(request, "connect-src", stage["url"])


def _safe_next(summit: Summit, value: str) -> str:
    prefix = f"/summits/{summit.slug}"
    if (value.startswith(prefix + "/") or value == prefix) and "//" not in value \
            and "\\" not in value and len(value) < 300:
        return value
    return f"{prefix}/timetable"


# --- public pages -----------------------------------------------------------------------------


@router.get("/summits", response_class=HTMLResponse)
def summit_list(request: Request, session: DbSession, viewer: Viewer) -> Response:
    """The summits: published ones, and the drafts the viewer organizes."""
    return render(request, "summit/list.html", {
        "summits": service.list_summits(session=session, viewer=viewer),
        "loc": _localized(request),
    })


@router.get("/summits/{slug}", response_class=HTMLResponse)
def summit_home(request: Request, session: DbSession, viewer: Viewer, slug: Slug) -> Response:
    """A summit's home: tagline, days, what's on now, tracks, featured speakers, register."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    now = service.whats_on(session=session, summit=summit)
    ids = [r.id for r in now.live + now.next]
    return render(request, "summit/home.html", {
        **_common(request, summit, viewer),
        "days": service.summit_days(summit),
        "now": now,
        "tracks": service.tracks(session=session, summit=summit),
        "track_by_id": {t.id: t for t in service.tracks(session=session, summit=summit)},
        "featured": service.speakers(session=session, summit=summit)[:FEATURED_SPEAKERS],
        "billed": service.session_speakers(session=session, session_ids=ids),
        "day_label": _day_label,
    })


@router.get("/summits/{slug}/timetable", response_class=HTMLResponse)
def timetable(request: Request, session: DbSession, viewer: Viewer, slug: Slug,
              day: str = "", track: str = "") -> Response:
    """The timetable of one day (tabs for the others), with "add to my agenda" forms."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    table = service.timetable(session=session, summit=summit)
    chosen = None
    try:
        chosen = table.day(dt.date.fromisoformat(day)) if day else None
    except ValueError:
        chosen = None
    if chosen is None:
        chosen = table.day(today_cn()) or (table.days[0] if table.days else None)
    track_id = parse_id(track)
    rows = chosen.sessions if chosen else []
    if track_id is not None:
        rows = [r for r in rows if r.track_id == track_id]
    return render(request, "summit/timetable.html", {
        **_common(request, summit, viewer),
        "table": table, "chosen": chosen, "rows": rows, "track_id": track_id,
        "track_by_id": table.track_by_id, "billed": table.speakers,
        "on_agenda": service.agenda_ids(session=session, summit=summit, user=viewer),
        "day_label": _day_label, "now": utcnow(), "is_on_now": service.is_on_now,
        "next_url": str(request.url.path) + (f"?{request.url.query}" if request.url.query
                                             else ""),
    })


@router.post("/summits/{slug}/agenda", dependencies=[CsrfChecked])
def agenda_form(
    session: DbSession,
    viewer: Viewer,
    slug: Slug,
    session_id: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "add",
    next: Annotated[str, Form()] = "",  # noqa: A002 - the form field's name
) -> Response:
    """Add a session to (or remove it from) my agenda, then go back to the page."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    back = _safe_next(summit, next)
    if viewer is None:
        return redirect(login_url(back))
    chosen = parse_id(session_id)
    if chosen is None:
        raise InvalidInput("This link is not valid.", code="invalid_id", field="session_id")
    row = service.get_session(session=session, summit=summit, session_id=chosen)
    if action == "remove":
        service.do_remove_from_agenda(session=session, actor=viewer, summit=summit,
                                      summit_session=row)
    else:
        service.do_add_to_agenda(session=session, actor=viewer, summit=summit,
                                 summit_session=row)
    return redirect(f"{back}#session-{row.id}" if "#" not in back else back)


@router.get("/summits/{slug}/agenda", response_class=HTMLResponse)
def agenda_page(request: Request, session: DbSession, viewer: Viewer, slug: Slug) -> Response:
    """My agenda at this summit, with its iCal link."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    if viewer is None:
        return redirect(login_url(f"/summits/{summit.slug}/agenda"))
    rows = service.agenda(session=session, summit=summit, user=viewer)
    return render(request, "summit/agenda.html", {
        **_common(request, summit, viewer),
        "rows": rows,
        "billed": service.session_speakers(session=session, session_ids=[r.id for r in rows]),
        "track_by_id": {t.id: t for t in service.tracks(session=session, summit=summit)},
        "on_agenda": {r.id for r in rows}, "now": utcnow(), "is_on_now": service.is_on_now,
        "next_url": f"/summits/{summit.slug}/agenda",
    })


def _ics(body: bytes, filename: str) -> Response:
    return Response(body, media_type="text/calendar; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "private, no-store",
    })


@router.get("/summits/{slug}/agenda.ics")
def agenda_ics(request: Request, session: DbSession, user: CurrentUser, slug: Slug) -> Response:
    """My agenda as an iCalendar file (signed in)."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    rows = service.agenda(session=session, summit=summit, user=user)
    body = ical.calendar(
        summit=summit, sessions=rows,
        speakers=service.session_speakers(session=session, session_ids=[r.id for r in rows]),
        base_url=get_settings().base_url, now=utcnow(),
        name=tr(request, "My agenda: %(title)s", title=_localized(request)(summit, "title")))
    return _ics(body, f"{summit.slug}-agenda.ics")


@router.get("/summits/{slug}/timetable.ics")
def timetable_ics(request: Request, session: DbSession, viewer: Viewer,
                  slug: Slug) -> Response:
    """The whole timetable as an iCalendar file."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    table = service.timetable(session=session, summit=summit)
    rows = [r for d in table.days for r in d.sessions]
    body = ical.calendar(summit=summit, sessions=rows, speakers=table.speakers,
                         base_url=get_settings().base_url, now=utcnow(),
                         name=_localized(request)(summit, "title"))
    return _ics(body, f"{summit.slug}-timetable.ics")


@router.get("/summits/{slug}/speakers", response_class=HTMLResponse)
def speakers_page(request: Request, session: DbSession, viewer: Viewer,
                  slug: Slug) -> Response:
    """The summit's speakers."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    return render(request, "summit/speakers.html", {
        **_common(request, summit, viewer),
        "speakers": service.speakers(session=session, summit=summit),
    })


@router.get("/summits/{slug}/speakers/{speaker_id}", response_class=HTMLResponse)
def speaker_page(request: Request, session: DbSession, viewer: Viewer, slug: Slug,
                 speaker_id: DbId) -> Response:
    """A speaker: photo, bio and sessions."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    speaker = service.get_speaker(session=session, summit=summit, speaker_id=speaker_id)
    rows = service.speaker_sessions(session=session, speaker=speaker)
    return render(request, "summit/speaker.html", {
        **_common(request, summit, viewer),
        "speaker": speaker, "rows": rows,
        "billed": service.session_speakers(session=session, session_ids=[r.id for r in rows]),
        "track_by_id": {t.id: t for t in service.tracks(session=session, summit=summit)},
        "on_agenda": service.agenda_ids(session=session, summit=summit, user=viewer),
        "now": utcnow(), "is_on_now": service.is_on_now,
        "next_url": f"/summits/{summit.slug}/speakers/{speaker.id}",
    })


@router.get("/summits/{slug}/sessions/{session_id}", response_class=HTMLResponse)
def session_page(request: Request, session: DbSession, viewer: Viewer, slug: Slug,
                 session_id: DbId) -> Response:
    """The stage: the live player (or replay, or a countdown), speakers, breakout rooms and
    the live panel (chat, Q&A, polls)."""
    summit = service.get_summit(session=session, slug=slug, viewer=viewer)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    now = utcnow()
    phase = service.session_phase(row, now)
    track = (service.get_track(session=session, summit=summit, track_id=row.track_id)
             if row.track_id else None)
    stage = _stage(row, phase)
    _allow_stage(request, stage)
    return render(request, "summit/session.html", {
        **_common(request, summit, viewer),
        "row": row, "track": track, "phase": phase, "stage": stage,
        "speakers": service.session_speakers(session=session, session_ids=[row.id])[row.id],
        "rooms": service.rooms_of(session=session, summit_session=row),
        "on_agenda": row.id in service.agenda_ids(session=session, summit=summit,
                                                  user=viewer),
        "live": live_context(request, session, summit=summit, session=row, user=viewer),
        "starts_at_iso": service.aware(row.starts_at).isoformat(),
        "next_url": f"/summits/{summit.slug}/sessions/{row.id}",
    })


# --- organizers' console ----------------------------------------------------------------------


@router.get("/summits/{slug}/console", response_class=HTMLResponse)
def console(request: Request, session: DbSession, user: CurrentUser, slug: Slug) -> Response:
    """The organizers' console: every session with its status, and publishing."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    service.check_organizer(actor=user, summit=summit)
    return _console_page(request, session, summit, user)


def _console_page(request: Request, session: Session, summit: Summit, user: User,
                  error: DomainError | None = None) -> HTMLResponse:
    return render(request, "summit/console.html", {
        **_common(request, summit, user),
        "table": service.timetable(session=session, summit=summit),
        "error": error, "message": tr(request, error.message) if error else None,
        "published": summit.status == SummitStatus.PUBLISHED,
        "done": request.query_params.get("done") == "1",
    }, status_code=error.status_code if error else 200)


@router.post("/summits/{slug}/console/publish", dependencies=[CsrfChecked])
def console_publish(request: Request, session: DbSession, user: CurrentUser,
                    slug: Slug) -> Response:
    """Publish the summit from the console."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    try:
        service.do_publish_summit(session=session, actor=user, summit=summit)
    except DomainError as exc:
        if exc.status_code in (401, 403):
            raise
        return _console_page(request, session, summit, user, exc)
    return redirect(f"/summits/{summit.slug}/console?done=1")


def _session_form(request: Request, summit: Summit, row: SummitSession, user: User,
                  form: dict[str, str] | None = None,
                  error: DomainError | None = None) -> HTMLResponse:
    statuses = [s for s in SessionStatus
                if service.STATUS_ORDER[s] >= service.STATUS_ORDER[row.status]]
    return render(request, "summit/console_session.html", {
        **_common(request, summit, user),
        "row": row, "statuses": statuses,
        "form": form or {"status": row.status.value, "stream_url": row.stream_url or "",
                         "player_url": row.player_url or "",
                         "replay_url": row.replay_url or ""},
        "error": error, "message": tr(request, error.message) if error else None,
        "done": request.query_params.get("done") == "1",
    }, status_code=error.status_code if error else 200)


@router.get("/summits/{slug}/console/sessions/{session_id}", response_class=HTMLResponse)
def console_session(request: Request, session: DbSession, user: CurrentUser, slug: Slug,
                    session_id: DbId) -> Response:
    """Run one session: its status and its stream, player and replay addresses."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    service.check_organizer(actor=user, summit=summit)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    return _session_form(request, summit, row, user)


@router.post("/summits/{slug}/console/sessions/{session_id}", dependencies=[CsrfChecked])
def console_session_save(
    request: Request,
    session: DbSession,
    user: CurrentUser,
    slug: Slug,
    session_id: DbId,
    status: Annotated[str, Form()] = "",
    stream_url: Annotated[str, Form(max_length=1000)] = "",
    player_url: Annotated[str, Form(max_length=1000)] = "",
    replay_url: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Save the session's stage addresses and status."""
    summit = service.get_summit(session=session, slug=slug, viewer=user)
    service.check_organizer(actor=user, summit=summit)
    row = service.get_session(session=session, summit=summit, session_id=session_id)
    form = {"status": status, "stream_url": stream_url, "player_url": player_url,
            "replay_url": replay_url}
    try:
        if status not in {s.value for s in SessionStatus}:
            raise InvalidInput("Choose a status.", code="invalid_status", field="status")
        # One savepoint: a refused status leaves the URLs unchanged too.
        with session.begin_nested():
            service.do_update_session(
                session=session, actor=user, summit=summit, summit_session=row,
                data=SessionIn(stream_url=stream_url, player_url=player_url,
                               replay_url=replay_url))
            service.do_set_status(session=session, actor=user, summit=summit,
                                  summit_session=row, status=SessionStatus(status))
    except DomainError as exc:
        session.refresh(row)
        return _session_form(request, summit, row, user, form, exc)
    return redirect(f"/summits/{summit.slug}/console/sessions/{row.id}?done=1")

