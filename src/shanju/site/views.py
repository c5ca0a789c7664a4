"""Pages that belong to no single domain: the home page, the reviewer console's index and
the health check."""

from __future__ import annotations

from types import SimpleNamespace

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from shanju.campaigns import live as campaigns_live
from shanju.complaints import service as complaints
from shanju.core import mail
from shanju.core.clock import today_cn
from shanju.core.deps import DbSession, Reviewer, Viewer
from shanju.core.errors import NotFound
from shanju.core.web import PACKAGE_DIR, render
from shanju.organizations import payment_routes
from shanju.organizations import service as organizations
from shanju.projects import service as projects
from shanju.reconciliation import service as reconciliation
from shanju.site import service
from shanju.summit import service as summit_service

router = APIRouter()
FAVICON = PACKAGE_DIR / "static" / "favicon.ico"


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The site's icon where browsers and crawlers look for it first (pages link the SVG)."""
    return FileResponse(FAVICON, media_type="image/x-icon",
                        headers={"Cache-Control": "public, max-age=604800"})


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: DbSession, viewer: Viewer) -> HTMLResponse:
    """The home page: featured projects and platform totals."""
    del viewer  # the dependency loads the viewer for the layout
    totals, projects = service.home_page(session=session)
    return render(request, "site/home.html", {
        "totals": totals, "projects": projects,
        "giving_days": campaigns_live.live_campaigns(session=session),
        "summits": summit_service.current_summits(session=session, today=today_cn()),
    })


@router.get("/review", response_class=HTMLResponse)
def review_index(request: Request, session: DbSession, reviewer: Reviewer) -> HTMLResponse:
    """The reviewer console: what waits for a decision."""
    del reviewer
    complaint_counts = complaints.counts(session=session, today=today_cn())
    return render(request, "review/index.html", {
        "pending_orgs": organizations.count_pending(session=session),
        "pending_routes": payment_routes.count_pending(session=session),
        "pending_projects": projects.count_submitted(session=session),
        "open_complaints": complaint_counts.open,
        "overdue_complaints": complaint_counts.overdue,
        "open_mismatches": reconciliation.open_count(session=session),
    })


@router.get("/dev/mailbox", response_class=HTMLResponse)
def dev_mailbox(request: Request, session: DbSession) -> HTMLResponse:
    """Development only: the emails the platform sent, newest first — as the demo's local SMTP
    sink received them (``shanju demo``), else from the outbox."""
    if request.app.state.settings.environment != "development":
        raise NotFound("This page does not exist.")
    sink = getattr(request.app.state, "mail_sink", None)
    if sink is not None:
        received = [SimpleNamespace(created_at=m.received_at, to_address=", ".join(m.to),
                                    subject=m.subject, body=m.body, kind=m.kind)
                    for m in sink.newest()]
        return render(request, "site/mailbox.html", {"messages": received, "via_smtp": True})
    return render(request, "site/mailbox.html", {"messages": mail.recent(session)})


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Liveness, and the state of what the process leans on: 200 whenever it answers.

    ``{"status": "ok"}``, or ``"degraded"`` while the summit's broker is away: donations and
    every page keep serving, the live rooms of this process keep working and catch up from
    the database when it is back (docs/summit/live.md). Runs on the event loop (no thread):
    it answers as long as the process does."""
    body: dict[str, object] = {"status": "ok"}
    hubs = getattr(request.app.state, "live", None)
    if hubs is not None:
        live = hubs.status()
        body["summit"] = live
        if live["broker"]["state"] != "up":
            body["status"] = "degraded"
    return JSONResponse(body)
