"""The live panel of a session page, a session's full-screen live page, a roundtable's breakout
room and the moderators' console (helper: live UI).

The browser side speaks ``docs/summit/live-protocol.md`` (``static/js/summit-live.js``); these
pages only decide who may join which room and hand the script a live token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core.config import Settings, get_settings
from shanju.core.db import DbId
from shanju.core.deps import SESSION_COOKIE, DbSession, Viewer
from shanju.core.errors import NotFound, PermissionDenied
from shanju.core.web import login_url, redirect, render
from shanju.summit import access
from shanju.summit.models import (
    SessionKind,
    Summit,
    SummitRoom,
    SummitSession,
    SummitStatus,
)

router = APIRouter()

WS_PATH = "/summit/live"


def _settings(request: Request) -> Settings:
    settings: Settings | None = getattr(request.app.state, "settings", None)
    return settings or get_settings()


def _room_context(
    request: Request, db: Session, *, summit: Summit, room: str, user: User | None,
    console: bool = False,
) -> dict[str, Any]:
    settings = _settings(request)
    # A live token names the browser session it was issued to (the live rooms check every few
    # seconds that it still signs in); a page seen with an API token gets none.
    signed_in_here = user is not None and getattr(request.state, "auth", None) == "session"
    grant = access.grant_live_token(
        db, summit=summit, user=user, secret=settings.secret_key,
        ttl=settings.summit_live_token_seconds,
        web_session_id=(access.browser_session_id(db, request.cookies.get(SESSION_COOKIE))
                        if signed_in_here else None),
    )
    if grant is None:
        return {
            "join": False,
            "room": room,
            "register_url": f"/summits/{summit.slug}/register",
            "login_url": None if user is not None else login_url(request.url.path),
        }
    return {
        "join": True,
        "room": room,
        "token": grant.token,
        "token_ttl": grant.ttl,
        "token_url": f"/api/v1/summits/{summit.slug}/live-token",
        "signin_url": login_url(request.url.path),
        "ws_path": WS_PATH,
        "role": grant.role,
        "name": grant.name,
        "user_id": grant.user_id,
        "console": console and grant.role == "moderator",
        "rooms_base": f"/summits/{summit.slug}/rooms/",
    }


def live_context(
    request: Request,
    db: Session,
    *,
    summit: Summit,
    session: SummitSession,
    user: User | None,
) -> dict[str, Any] | None:
    """What the session page's template needs to render ``summit/_live_panel.html`` (None:
    no live panel). The events helper's session view calls this and passes it as ``live``.

    Anonymous and unregistered people get a prompt to register (``join`` false); people with
    an approved registration a live token as attendees; organizers one as moderators (with a
    link to the console).
    """
    if summit.status != SummitStatus.PUBLISHED or session.summit_id != summit.id:
        return None
    live = _room_context(request, db, summit=summit, room=f"s{session.id}", user=user)
    live["roundtable"] = session.kind == SessionKind.ROUNDTABLE
    if live.get("role") == "moderator":
        live["moderate_url"] = f"/summits/{summit.slug}/sessions/{session.id}/moderate"
    return live


# --- pages ---------------------------------------------------------------------------------


def _summit(db: Session, slug: str, viewer: User | None) -> Summit:
    summit = db.scalars(select(Summit).where(Summit.slug == slug)).first()
    if summit is None or (
        summit.status != SummitStatus.PUBLISHED and not access.is_organizer(viewer, summit)
    ):
        raise NotFound("This summit does not exist.")
    return summit


def _session(db: Session, summit: Summit, session_id: int) -> SummitSession:
    found = db.get(SummitSession, session_id)
    if found is None or found.summit_id != summit.id:
        raise NotFound("This session does not exist.")
    return found


@router.get("/summits/{slug}/sessions/{session_id}/live")
def session_live_page(
    request: Request, slug: str, session_id: DbId, db: DbSession, viewer: Viewer
) -> Response:
    """A session's live room on its own page (chat, questions, polls): the session page's
    panel, full screen, e.g. beside a stream watched elsewhere."""
    summit = _summit(db, slug, viewer)
    session = _session(db, summit, session_id)
    live = live_context(request, db, summit=summit, session=session, user=viewer)
    if live is None:  # a draft summit, seen by an organizer: nothing live yet
        raise NotFound("This summit does not exist.")
    return render(request, "summit/live_room.html",
                  {"summit": summit, "session": session, "room": None, "live": live})


@router.get("/summits/{slug}/sessions/{session_id}/moderate")
def moderate_page(
    request: Request, slug: str, session_id: DbId, db: DbSession, viewer: Viewer
) -> Response:
    """The moderators' console of a session's main stage (organizers only)."""
    if viewer is None:
        return redirect(login_url(request.url.path))
    summit = _summit(db, slug, viewer)
    if not access.is_organizer(viewer, summit):
        raise PermissionDenied("Only the summit's organizers may moderate its live rooms.")
    session = _session(db, summit, session_id)
    live = _room_context(
        request, db, summit=summit, room=f"s{session.id}", user=viewer, console=True
    )
    live["roundtable"] = session.kind == SessionKind.ROUNDTABLE
    rooms = db.scalars(
        select(SummitRoom).where(SummitRoom.session_id == session.id)
        .order_by(SummitRoom.position, SummitRoom.id)
    ).all()
    return render(request, "summit/moderate.html",
                  {"summit": summit, "session": session, "live": live, "rooms": rooms})


@router.get("/summits/{slug}/rooms/{room_id}")
def breakout_room_page(
    request: Request, slug: str, room_id: DbId, db: DbSession, viewer: Viewer
) -> Response:
    """A roundtable's breakout room: a small chat and the link to its video room (the link
    only for people who may join)."""
    summit = _summit(db, slug, viewer)
    room = db.get(SummitRoom, room_id)
    session = None if room is None else db.get(SummitSession, room.session_id)
    if room is None or session is None or session.summit_id != summit.id:
        raise NotFound("This room does not exist.")
    live = _room_context(request, db, summit=summit, room=f"r{room.id}", user=viewer)
    live["roundtable"] = False
    live["breakout"] = True
    if live.get("role") == "moderator":
        live["console"] = True  # a moderator moderates a breakout room where they are
    return render(request, "summit/live_room.html",
                  {"summit": summit, "session": session, "room": room, "live": live})
