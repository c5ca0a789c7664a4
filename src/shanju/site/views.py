"""Pages that belong to no single domain: the home page and health check."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from shanju.core.deps import DbSession, Viewer
from shanju.core.web import render
from shanju.site import service

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: DbSession, viewer: Viewer) -> HTMLResponse:
    """The home page: featured projects and platform totals."""
    del viewer  # the dependency loads the viewer for the layout
    totals, projects = service.home_page(session=session)
    return render(request, "site/home.html", {"totals": totals, "projects": projects})


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    """Liveness probe."""
    return "ok"
