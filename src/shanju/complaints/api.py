"""JSON API routes of the complaints domain (under /api/v1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session

from shanju.complaints import service
from shanju.complaints.models import Complaint, ComplaintStatus
from shanju.complaints.schemas import (
    ComplaintAnswer,
    ComplaintCreate,
    ComplaintPage,
    ComplaintRead,
    ComplaintReceipt,
)
from shanju.core import ratelimit
from shanju.core.clock import today_cn
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, DbSession, Reviewer, Viewer

router = APIRouter(tags=["complaints"])


def to_read(session: Session, complaint: Complaint) -> ComplaintRead:
    """A complaint as reviewers see it."""
    return _read(complaint, service.organization_name(session=session, complaint=complaint))


def _read(complaint: Complaint, org_name: str) -> ComplaintRead:
    today = today_cn()
    return ComplaintRead(
        id=complaint.id,
        number=service.complaint_number(complaint),
        organization_id=complaint.organization_id,
        organization_name=org_name,
        project_id=complaint.project_id,
        category=complaint.category,
        content=complaint.content,
        reporter_id=complaint.reporter_id,
        reporter_contact=complaint.reporter_contact,
        status=complaint.status,
        due_on=complaint.due_on,
        overdue=service.is_overdue(complaint, today),
        days_remaining=service.days_remaining(complaint, today),
        answer=complaint.answer,
        answered_by_id=complaint.answered_by_id,
        answered_at=complaint.answered_at,
        created_at=complaint.created_at,
    )


@router.post(
    "/complaints",
    response_model=ComplaintReceipt,
    status_code=201,
    summary="Report an organization or project (anyone may file)",
    dependencies=[CsrfChecked],
)
def file_complaint(session: DbSession, viewer: Viewer, body: ComplaintCreate,
                   request: Request) -> ComplaintReceipt:
    """File a report; the platform answers it within 5 working days (``due_on``)."""
    ratelimit.enforce(request, "complaint", account=viewer.id if viewer else None)
    complaint = service.do_file(session=session, data=body, actor=viewer)
    return ComplaintReceipt(id=complaint.id, number=service.complaint_number(complaint),
                            status=complaint.status, due_on=complaint.due_on)


@router.get("/complaints", response_model=ComplaintPage,
            summary="List reports (reviewers): open first, soonest due first")
def list_complaints(
    session: DbSession,
    reviewer: Reviewer,
    status: ComplaintStatus | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ComplaintPage:
    """Reports for reviewers, with whether each is overdue."""
    del reviewer
    rows, total = service.list_for_review(session=session, status=status, page=page,
                                          per_page=per_page)
    return ComplaintPage(items=[_read(c, name) for c, name in rows], total=total, page=page,
                         per_page=per_page)


@router.post(
    "/complaints/{complaint_id}/answer",
    response_model=ComplaintRead,
    summary="Answer a report (reviewers)",
    dependencies=[CsrfChecked],
)
def answer_complaint(
    session: DbSession, reviewer: Reviewer, complaint_id: DbId, body: ComplaintAnswer
) -> ComplaintRead:
    """Record the answer; the report becomes answered and its reporter is notified."""
    complaint = service.get_complaint(session=session, complaint_id=complaint_id)
    service.do_answer(session=session, complaint=complaint, actor=reviewer, answer=body.answer)
    return to_read(session, complaint)
