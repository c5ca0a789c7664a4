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
from shanju.core.config import get_settings
from shanju.core.db import DbId
from shanju.core.deps import DbSession, Viewer
from shanju.core.errors import NotFound, PermissionDenied
from shanju.core.masking import mask_name
from shanju.core.web import login_url, redirect, render
from shanju.organizations.models import Organization
from shanju.summit import access, tokens
from shanju.summit.models import (
    RegistrationKind,
    SessionKind,
    Summit,
    SummitRoom,
    SummitSession,
    SummitStatus,
)

router = APIRouter()

WS_PATH = "/summit/live"
# Names in a room are seen by everyone in it whatever their language; the summit's is Chinese.
MODERATOR_PREFIX = "主持人"


def _settings_secret(request: Request) -> str:
    settings = getattr(request.app.state, "settings", None) or get_settings()
    return str(settings.secret_key)


def _live_identity(
    db: Session, *, summit: Summit, user: User | None
) -> tuple[tokens.Role, str, int | None] | None:
    """(role, shown name, organization id) of a person who may join the summit's live rooms,
    or None: organizers moderate; people with an approved registration attend."""
    if user is None or not user.is_active:
        return None
    masked = mask_name(user.display_name)
    if access.is_organizer(user, summit):
        return "moderator", f"{MODERATOR_PREFIX} {masked}", None
    registration = access.approved_registration(db, summit_id=summit.id, user_id=user.id)
    if registration is None:
        return None
    org_id = registration.organization_id
    if registration.kind == RegistrationKind.DELEGATE and org_id is not None:
        org = db.get(Organization, org_id)
        if org is not None:
            masked = f"{masked} · {org.short_name or org.name}"
    return "attendee", masked, org_id


def _room_context(
    request: Request, db: Session, *, summit: Summit, room: str, user: User | None,
    console: bool = False,
) -> dict[str, Any]:
    identity = _live_identity(db, summit=summit, user=user)
    if identity is None or user is None:
        return {
            "join": False,
            "room": room,
            "register_url": f"/summits/{summit.slug}/register",
            "login_url": None if user is not None else login_url(request.url.path),
        }
    role, name, org_id = identity
    token = tokens.issue(
        _settings_secret(request), user_id=user.id, summit_id=summit.id, role=role, name=name,
        organization_id=org_id,
    )
    return {
        "join": True,
        "room": room,
        "token": token,
        "ws_path": WS_PATH,
        "role": role,
        "name": name,
        "user_id": user.id,
        "console": console and role == "moderator",
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
