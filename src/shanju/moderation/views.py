"""Pages of donors' messages: a visitor's report form, the organization's review queue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.core import ratelimit
from shanju.core.deps import CsrfChecked, DbSession, Viewer
from shanju.core.errors import DomainError, NotAuthenticated, NotFound
from shanju.core.i18n import N_
from shanju.core.web import login_url, redirect, render, tr
from shanju.moderation import service
from shanju.moderation.models import ReportReason
from shanju.organizations import service as organizations
from shanju.projects.models import Project

router = APIRouter()

GiftId = Annotated[str, Path(max_length=40)]
# The reasons a visitor can choose, as msgids (shown translated).
REASONS: dict[str, str] = {
    ReportReason.ABUSE.value: N_("Insults, obscenity or hate"),
    ReportReason.ADVERTISING.value: N_("Advertising, a scam or contact details"),
    ReportReason.PRIVACY.value: N_("Someone's personal information"),
    ReportReason.OTHER.value: N_("Something else"),
}
ACTIONS = ("hide", "show", "keep")


def _report_page(request: Request, session: Session, gift_id: str, *,
                 error: DomainError | None = None, reason: str = "") -> Response:
    gift = service.reportable_gift(session, gift_id)
    project = session.get_one(Project, gift.project_id)
    return render(request, "moderation/report.html", {
        "gift": gift, "project": project, "reasons": REASONS, "chosen": reason,
        "message": service.message_view(session, gift_id=gift.public_id, text=gift.message).public,
        "error": error, "error_message": tr(request, error.message) if error else "",
    }, status_code=error.status_code if error else 200)


@router.get("/gift-messages/{gift_id}/report", response_class=HTMLResponse)
def report_form(gift_id: GiftId, request: Request, session: DbSession) -> Response:
    """Report a donor's message shown on a project's page (anyone may)."""
    return _report_page(request, session, gift_id)


@router.post("/gift-messages/{gift_id}/report", dependencies=[CsrfChecked])
def report(gift_id: GiftId, request: Request, session: DbSession, viewer: Viewer,
           reason: Annotated[str, Form(max_length=40)] = "") -> Response:
    """File the report (once per reporter) and thank the reporter."""
    ratelimit.enforce(request, "message_report", account=viewer.id if viewer else None)
    gift = service.reportable_gift(session, gift_id)
    try:
        chosen = service.check_report_reason(reason)
    except DomainError as exc:
        return _report_page(request, session, gift_id, error=exc, reason=reason)
    _report, created = service.do_report(
        session=session, gift=gift, reason=chosen, reporter_user=viewer,
        reporter=service.reporter_key(user=viewer, address=ratelimit.client_address(request),
                                      secret=request.app.state.settings.secret_key))
    return render(request, "moderation/reported.html", {
        "project_id": gift.project_id, "again": not created},
        status_code=201 if created else 200)


# --- the organization's review queue ----------------------------------------------------------


def _staff(viewer: User | None) -> User:
    if viewer is None:
        raise NotAuthenticated("Please sign in first.")
    organizations.staff_org_id(actor=viewer)
    return viewer


def _queue_page(request: Request, session: Session, user: User, *,
                error: DomainError | None = None, error_gift: str = "",
                done: str = "") -> Response:
    found = service.queue(session=session,
                          organization_id=organizations.staff_org_id(actor=user))
    ctx: dict[str, Any] = {
        "queue": found, "reasons": REASONS, "error": error, "error_gift": error_gift,
        "error_message": tr(request, error.message) if error else "",
        "done": done if done in ("hidden", "shown", "kept") else "",
    }
    return render(request, "moderation/console.html", ctx,
                  status_code=error.status_code if error else 200)


@router.get("/console/messages", response_class=HTMLResponse)
def console_messages(request: Request, session: DbSession, viewer: Viewer,
                     done: str = "") -> Response:
    """Donors' messages to the organization's projects: reported, held and hidden."""
    if viewer is None:
        return redirect(login_url("/console/messages"))
    return _queue_page(request, session, _staff(viewer), done=done)


@router.post("/console/messages/{gift_id}/{action}", dependencies=[CsrfChecked])
def console_decide(gift_id: GiftId, action: str, request: Request, session: DbSession,
                   viewer: Viewer, reason: Annotated[str, Form(max_length=1000)] = ""
                   ) -> Response:
    """Hide (with a reason), show, or keep a reported message; back to the queue."""
    user = _staff(viewer)
    if action not in ACTIONS:
        raise NotFound("This page does not exist.", code="not_found")
    gift = service.get_gift(session, gift_id)
    service.check_can_moderate(session=session, actor=user, gift=gift)
    try:
        if action == "hide":
            service.do_hide(session=session, actor=user, gift=gift,
                            reason=service.check_reason(reason, required=True))
        elif action == "show":
            service.do_show(session=session, actor=user, gift=gift,
                            reason=service.check_reason(reason, required=False))
        else:
            service.do_keep(session=session, actor=user, gift=gift)
    except DomainError as exc:
        return _queue_page(request, session, user, error=exc, error_gift=gift.public_id)
    done = {"hide": "hidden", "show": "shown", "keep": "kept"}[action]
    return redirect(f"/console/messages?done={done}")
