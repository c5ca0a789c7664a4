"""Registration pages: register, my ticket, my certificate; organizers' applications queue,
check-in and attendance."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from markupsafe import Markup

from shanju.accounts.models import Role, User
from shanju.core.clock import today_cn
from shanju.core.db import DbId, is_digits
from shanju.core.deps import CsrfChecked, DbSession, Viewer
from shanju.core.errors import DomainError, InvalidInput, NotFound
from shanju.core.web import login_url, redirect, render, request_locale, tr
from shanju.organizations.models import Organization, OrgStatus
from shanju.summit import attendance, certificates, exports
from shanju.summit import registration as reg
from shanju.summit.access import is_organizer
from shanju.summit.models import RegistrationStatus, Summit

router = APIRouter()


def _summit_or_login(request: Request, session: DbSession, viewer: User | None,
                     slug: str) -> tuple[Summit, User] | Response:
    summit = reg.get_summit(session=session, slug=slug, viewer=viewer)
    if viewer is None:
        return redirect(login_url(str(request.url.path)))
    return summit, viewer


def _register_context(session: DbSession, summit: Summit, viewer: User | None
                      ) -> dict[str, Any]:
    mine = delegation = org = None
    seats_taken = 0
    if viewer is not None:
        mine = reg.registration_of(session=session, summit_id=summit.id, user_id=viewer.id)
        if viewer.role == Role.ORG_STAFF and viewer.organization_id is not None:
            org = session.get(Organization, viewer.organization_id)
            delegation = reg.delegation_of(session=session, summit_id=summit.id,
                                           organization_id=viewer.organization_id)
            if delegation is not None:
                seats_taken = reg.seats_taken(session, delegation.id)
    return {
        "summit": summit, "mine": mine, "delegation": delegation, "org": org,
        "org_verified": org is not None and org.status == OrgStatus.APPROVED,
        "seats_taken": seats_taken, "open": reg.is_open(summit),
        "places_left": reg.places_left(session, summit),
        "organizer": is_organizer(viewer, summit),
        "seat_choices": list(range(1, summit.delegation_size + 1)),
    }


def _register_page(request: Request, session: DbSession, summit: Summit, viewer: User | None,
                   *, error: DomainError | None = None, form: dict[str, Any] | None = None
                   ) -> Response:
    ctx = _register_context(session, summit, viewer)
    ctx.update({
        "error": error, "message": tr(request, error.message) if error else None,
        "form": form or {"choice": "", "seats": str(summit.delegation_size), "note": ""},
        "done": request.query_params.get("done", ""),
    })
    return render(request, "summit/register.html", ctx,
                  status_code=error.status_code if error else 200)


@router.get("/summits/{slug}/register", response_class=HTMLResponse)
def register_page(request: Request, slug: str, session: DbSession, viewer: Viewer) -> Response:
    """Choose how to come: my organization's delegation, a seat in it, or public audience."""
    summit = reg.get_summit(session=session, slug=slug, viewer=viewer)
    return _register_page(request, session, summit, viewer)


@router.post("/summits/{slug}/register", dependencies=[CsrfChecked])
def register(
    request: Request, slug: str, session: DbSession, viewer: Viewer,
    choice: Annotated[str, Form()] = "", seats: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """Register as chosen; an approved registration goes to the ticket."""
    found = _summit_or_login(request, session, viewer, slug)
    if isinstance(found, Response):
        return found
    summit, user = found
    form = {"choice": choice, "seats": seats, "note": note}
    try:
        if choice == "delegation":
            if not is_digits(seats.strip()) or len(seats.strip()) > 4:
                raise InvalidInput("A delegation has from 1 to %(n)s seats.",
                                   code="invalid_seats", field="seats",
                                   params={"n": summit.delegation_size})
            result = reg.do_register_delegation(session=session, summit=summit, actor=user,
                                                seats=int(seats), note=note)
            registration = result.registration
            if result.delegation.status == RegistrationStatus.PENDING:
                return redirect(f"/summits/{slug}/register?done=applied")
            if registration is None:  # the summit is full, or a colleague registered it
                return redirect(f"/summits/{slug}/register?done=delegation")
        elif choice == "seat":
            registration = reg.do_take_seat(session=session, summit=summit, actor=user)
        elif choice == "audience":
            registration = reg.do_register_audience(session=session, summit=summit, actor=user)
        else:
            raise InvalidInput("Choose how you will attend.", code="choice_required",
                               field="choice")
    except DomainError as exc:
        return _register_page(request, session, summit, user, error=exc, form=form)
    if registration is not None and registration.status == RegistrationStatus.APPROVED:
        return redirect(f"/summits/{slug}/ticket")
    return redirect(f"/summits/{slug}/register?done=registered")


@router.post("/summits/{slug}/register/cancel", dependencies=[CsrfChecked])
def cancel(request: Request, slug: str, session: DbSession, viewer: Viewer) -> Response:
    """Cancel my registration."""
    found = _summit_or_login(request, session, viewer, slug)
    if isinstance(found, Response):
        return found
    summit, user = found
    try:
        reg.do_cancel(session=session, summit=summit, actor=user)
    except DomainError as exc:
        return _register_page(request, session, summit, user, error=exc)
    return redirect(f"/summits/{slug}/register?done=cancelled")


def _ticket_qr(token: str) -> Markup:
    """The ticket's QR code as inline SVG: the token only, scaled by CSS (a viewBox)."""
    svg = segno.make(token, error="m").svg_inline(
        scale=1, omitsize=True, dark="#1f2937", light="#ffffff", svgclass="ticket-qr-svg")
    return Markup(svg)  # noqa: S704 - segno writes the SVG from data it encodes itself


@router.get("/summits/{slug}/ticket", response_class=HTMLResponse)
def ticket(request: Request, slug: str, session: DbSession, viewer: Viewer) -> Response:
    """My e-ticket: a QR code carrying only the token, my masked name and the summit."""
    found = _summit_or_login(request, session, viewer, slug)
    if isinstance(found, Response):
        return found
    summit, user = found
    mine = reg.registration_of(session=session, summit_id=summit.id, user_id=user.id)
    approved = mine is not None and mine.status == RegistrationStatus.APPROVED
    org = (session.get(Organization, mine.organization_id)
           if mine is not None and mine.organization_id else None)
    attended = bool(attendance.person_sessions(session, summit_id=summit.id, user_id=user.id))
    token = reg.ticket_token(mine) if approved and mine is not None else None
    return render(request, "summit/ticket.html", {
        "summit": summit, "mine": mine, "approved": approved, "org": org,
        "token": token,
        "qr": _ticket_qr(token) if token else None,
        "holder": user.display_name, "attended": attended,
    })


@router.get("/summits/{slug}/certificate.pdf")
def certificate(request: Request, slug: str, session: DbSession, viewer: Viewer) -> Response:
    """My attendance certificate (PDF), once I attended at least one session."""
    found = _summit_or_login(request, session, viewer, slug)
    if isinstance(found, Response):
        return found
    summit, user = found
    sessions = attendance.person_sessions(session, summit_id=summit.id, user_id=user.id)
    if not sessions:
        raise NotFound("You have not attended any session of this summit yet.",
                       code="no_attendance")
    mine = reg.registration_of(session=session, summit_id=summit.id, user_id=user.id)
    org = (session.get(Organization, mine.organization_id)
           if mine is not None and mine.organization_id else None)
    cert = certificates.Certificate(
        number=f"{summit.slug}-{user.id:06d}", summit_title=summit.title,
        summit_title_en=summit.title_en, starts_on=summit.starts_on, ends_on=summit.ends_on,
        person=user.display_name, organization=org.name if org else None,
        sessions=tuple(certificates.SessionLine(s.title, s.starts_at, s.seconds)
                       for s in sessions),
        issued_on=today_cn(),
    )
    locale = request_locale(request)

    def body() -> Iterator[bytes]:
        # Rendered after the request's transaction has ended (embedding the font takes
        # seconds; no database connection is held meanwhile).
        yield certificates.render(cert, locale=locale)

    return StreamingResponse(body(), media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="certificate-{summit.slug}.pdf"',
        "Cache-Control": "private, no-store",
    })


# --- organizers ------------------------------------------------------------------------------


def _organizer_summit(request: Request, session: DbSession, viewer: User | None,
                      slug: str) -> tuple[Summit, User] | Response:
    found = _summit_or_login(request, session, viewer, slug)
    if isinstance(found, Response):
        return found
    reg.require_organizer(found[1], found[0])
    return found


def _queue_page(request: Request, session: DbSession, summit: Summit, status: str,
                error: DomainError | None = None) -> Response:
    chosen = (RegistrationStatus(status) if status in {s.value for s in RegistrationStatus}
              else None)
    return render(request, "summit/registrations.html", {
        "summit": summit, "counts": reg.counts(session=session, summit=summit),
        "rows": reg.applications(session=session, summit=summit, status=chosen),
        "status": chosen.value if chosen else "all", "error": error,
        "message": tr(request, error.message) if error else None,
        "done": request.query_params.get("done", ""),
    }, status_code=error.status_code if error else 200)


@router.get("/summits/{slug}/registrations", response_class=HTMLResponse)
def registrations(request: Request, slug: str, session: DbSession, viewer: Viewer,
                  status: str = "pending") -> Response:
    """Organizers: the numbers and the delegations' applications with approve/reject."""
    found = _organizer_summit(request, session, viewer, slug)
    if isinstance(found, Response):
        return found
    return _queue_page(request, session, found[0], status)


@router.post("/summits/{slug}/registrations/{delegation_id}/decide",
             dependencies=[CsrfChecked])
def decide(request: Request, slug: str, delegation_id: DbId, session: DbSession,
           viewer: Viewer, decision: Annotated[str, Form()] = "",
           note: Annotated[str, Form()] = "") -> Response:
    """Approve or reject one application (a rejection needs a note)."""
    found = _organizer_summit(request, session, viewer, slug)
    if isinstance(found, Response):
        return found
    summit, user = found
    try:
        if decision not in ("approve", "reject"):
            raise InvalidInput("Choose approve or reject.", code="decision_required",
                               field="decision")
        delegation = reg.get_delegation(session=session, summit=summit,
                                        delegation_id=delegation_id)
        reg.do_decide_delegation(session=session, summit=summit, delegation=delegation,
                                 actor=user, approve=decision == "approve", note=note)
    except DomainError as exc:
        return _queue_page(request, session, summit, "pending", exc)
    return redirect(f"/summits/{slug}/registrations?done={decision}")


@router.get("/summits/{slug}/checkin", response_class=HTMLResponse)
def checkin_page(request: Request, slug: str, session: DbSession, viewer: Viewer) -> Response:
    """Organizers: type or scan a ticket's code."""
    found = _organizer_summit(request, session, viewer, slug)
    if isinstance(found, Response):
        return found
    return render(request, "summit/checkin.html", {
        "summit": found[0], "result": None, "error": None, "message": None,
        "counts": reg.counts(session=session, summit=found[0])})


@router.post("/summits/{slug}/checkin", dependencies=[CsrfChecked])
def checkin(request: Request, slug: str, session: DbSession, viewer: Viewer,
            token: Annotated[str, Form()] = "") -> Response:
    """Check the ticket in and show whose it is."""
    found = _organizer_summit(request, session, viewer, slug)
    if isinstance(found, Response):
        return found
    summit, user = found
    result = error = None
    try:
        result = reg.do_check_in(session=session, summit=summit, actor=user, token=token)
    except DomainError as exc:
        error = exc
    return render(request, "summit/checkin.html", {
        "summit": summit, "result": result, "error": error,
        "message": tr(request, error.message) if error else None,
        "counts": reg.counts(session=session, summit=summit),
    }, status_code=error.status_code if error else 200)


@router.get("/summits/{slug}/attendance", response_class=HTMLResponse)
def attendance_page(request: Request, slug: str, session: DbSession, viewer: Viewer
                    ) -> Response:
    """Attendance per organization (with bars) and per session, with the downloads.
    Organizers see every organization; an organization's staff their own."""
    found = _summit_or_login(request, session, viewer, slug)
    if isinstance(found, Response):
        return found
    summit, user = found
    scope = exports.attendance_scope(user, summit, None)
    orgs = attendance.organization_totals(session, summit_id=summit.id, organization_id=scope)
    top = max((o.seconds for o in orgs), default=0)
    return render(request, "summit/attendance.html", {
        "summit": summit, "organizer": is_organizer(user, summit), "scope": scope,
        "orgs": [{"o": o, "minutes": attendance.minutes(o.seconds),
                  "pct": round(100 * o.seconds / top) if top else 0,
                  "links": exports.links(summit.slug, o.organization_id)
                  if o.organization_id is not None else None} for o in orgs],
        "sessions": [{"s": s, "minutes": attendance.minutes(s.seconds)}
                     for s in attendance.session_totals(session, summit_id=summit.id,
                                                        organization_id=scope)],
        "all_links": exports.links(summit.slug, scope),
    })
