"""HTML pages of the complaints domain: the report form, its receipt, and the reviewers'
complaint list and answer page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from shanju.complaints import service
from shanju.complaints.models import Complaint, ComplaintStatus
from shanju.complaints.schemas import ComplaintCreate
from shanju.core import ratelimit
from shanju.core.clock import today_cn
from shanju.core.db import DbId, PageNumber, parse_id
from shanju.core.deps import CsrfChecked, DbSession, Reviewer, Viewer
from shanju.core.errors import DomainError, InvalidInput
from shanju.core.web import redirect, render, tr

router = APIRouter()


def _optional_id(text: str, *, field: str) -> int | None:
    cleaned = text.strip()
    if not cleaned:
        return None
    ident = parse_id(cleaned)
    if ident is None:
        raise InvalidInput("This link is not valid.", code="invalid_id", field=field)
    return ident


def _form_page(request: Request, ctx: dict[str, Any], error: DomainError | None = None) -> Response:
    base = {
        "categories": service.CATEGORIES,
        "error": error,
        "message": tr(request, error.message) if error else None,
        "form": {"category": "", "content": "", "contact": ""},
        "target": None,
    }
    base.update(ctx)
    return render(request, "complaints/new.html", base,
                  status_code=error.status_code if error else 200)


@router.get("/complaints/new", response_class=HTMLResponse)
def new_complaint(
    request: Request,
    session: DbSession,
    viewer: Viewer,
    organization_id: str = "",
    project_id: str = "",
) -> Response:
    """The report form for an organization or one of its projects."""
    try:
        target = service.report_target(
            session=session,
            organization_id=_optional_id(organization_id, field="organization_id"),
            project_id=_optional_id(project_id, field="project_id"),
            viewer=viewer,
        )
    except DomainError as exc:
        return _form_page(request, {"blocked": True}, exc)
    return _form_page(request, {"target": target})


@router.post("/complaints", dependencies=[CsrfChecked])
def file_complaint(
    request: Request,
    session: DbSession,
    viewer: Viewer,
    organization_id: Annotated[str, Form()] = "",
    project_id: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
    content: Annotated[str, Form()] = "",
    contact: Annotated[str, Form()] = "",
) -> Response:
    """File the report and show its number and answer deadline."""
    ratelimit.enforce(request, "complaint", account=viewer.id if viewer else None)
    form = {"category": category, "content": content, "contact": contact}
    target = None
    try:
        org_id = _optional_id(organization_id, field="organization_id")
        proj_id = _optional_id(project_id, field="project_id")
        target = service.report_target(
            session=session, organization_id=org_id, project_id=proj_id, viewer=viewer
        )
        complaint = service.do_file(
            session=session,
            data=ComplaintCreate(organization_id=org_id, project_id=proj_id,
                                 category=category, content=content, contact=contact),
            actor=viewer,
        )
    except DomainError as exc:
        return _form_page(request, {"target": target, "form": form,
                                    "blocked": target is None}, exc)
    return redirect(service.receipt_path(complaint_id=complaint.id,
                                         secret=request.app.state.settings.secret_key))


@router.get("/complaints/{complaint_id:int}/thanks", response_class=HTMLResponse)
def thanks(request: Request, session: DbSession, viewer: Viewer, complaint_id: DbId,
           key: Annotated[str, Query(max_length=64)] = "") -> Response:
    """The receipt of a filed report: its number and the date it will be answered by (for
    whoever holds the receipt's key, or the reporter signed in)."""
    complaint = service.get_receipt(session=session, complaint_id=complaint_id, key=key,
                                    secret=request.app.state.settings.secret_key,
                                    viewer=viewer)
    return render(request, "complaints/thanks.html", {
        "number": service.complaint_number(complaint), "due_on": complaint.due_on,
        "reported_url": (f"/projects/{complaint.project_id}" if complaint.project_id
                 else f"/organizations/{complaint.organization_id}"),
    })


# --- reviewer pages ---------------------------------------------------------------------------


def _row(complaint: Complaint, org_name: str, today: Any) -> dict[str, Any]:
    return {
        "c": complaint,
        "number": service.complaint_number(complaint),
        "org_name": org_name,
        "overdue": service.is_overdue(complaint, today),
        "days_remaining": service.days_remaining(complaint, today),
    }


@router.get("/review/complaints", response_class=HTMLResponse)
def review_list(
    request: Request, session: DbSession, reviewer: Reviewer, status: str = "open",
    page: PageNumber = 1,
) -> HTMLResponse:
    """Complaints for reviewers: open first by due date; overdue ones highlighted."""
    del reviewer
    chosen = ComplaintStatus(status) if status in {s.value for s in ComplaintStatus} else None
    rows, total = service.list_for_review(session=session, status=chosen, page=page)
    today = today_cn()
    return render(request, "review/complaints.html", {
        "rows": [_row(c, name, today) for c, name in rows], "total": total,
        "status": chosen.value if chosen else "all", "categories": service.CATEGORIES,
        "today": today,
    })


def _detail(request: Request, session: DbSession, complaint: Complaint,
            error: DomainError | None = None, answer: str = "") -> HTMLResponse:
    today = today_cn()
    return render(request, "review/complaint.html", {
        **_row(complaint, service.organization_name(session=session, complaint=complaint),
               today),
        "categories": service.CATEGORIES, "error": error,
        "message": tr(request, error.message) if error else None, "answer": answer,
        "done": request.query_params.get("done") == "1",
    }, status_code=error.status_code if error else 200)


@router.get("/review/complaints/{complaint_id:int}", response_class=HTMLResponse)
def review_detail(
    request: Request, session: DbSession, reviewer: Reviewer, complaint_id: DbId
) -> HTMLResponse:
    """One complaint with its answer form."""
    del reviewer
    complaint = service.get_complaint(session=session, complaint_id=complaint_id)
    return _detail(request, session, complaint)


@router.post("/review/complaints/{complaint_id:int}/answer", dependencies=[CsrfChecked])
def answer(
    request: Request,
    session: DbSession,
    reviewer: Reviewer,
    complaint_id: DbId,
    answer: Annotated[str, Form()] = "",
) -> Response:
    """Record the answer; the complaint is then answered."""
    complaint = service.get_complaint(session=session, complaint_id=complaint_id)
    try:
        service.do_answer(session=session, complaint=complaint, actor=reviewer, answer=answer)
    except DomainError as exc:
        return _detail(request, session, complaint, exc, answer)
    return redirect(f"/review/complaints/{complaint.id}?done=1")
