"""The reviewers' reconciliation pages: open mismatches with their resolve form, and runs.

    GET  /review/reconciliation                        mismatches (open first) and recent runs
    GET  /review/reconciliation/runs/{run_id}          one run: counts, problems, findings
    POST /review/reconciliation/mismatches/{id}/resolve  a reviewer's note resolves one
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from shanju.core.db import DbId, PageNumber
from shanju.core.deps import CsrfChecked, DbSession, Reviewer
from shanju.core.errors import DomainError
from shanju.core.web import redirect, render, tr
from shanju.reconciliation import service
from shanju.reconciliation.models import MismatchStatus, ReconciliationMismatch

router = APIRouter()
PER_PAGE = 30
TABS = {"open": MismatchStatus.OPEN, "resolved": MismatchStatus.RESOLVED, "all": None}


def _side(side: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored side with its time as a datetime, for ``local_time``."""
    if side is None:
        return None
    shown = dict(side)
    if shown.get("happened_at"):
        shown["happened_at"] = dt.datetime.fromisoformat(shown["happened_at"])
    return shown


def _item(m: ReconciliationMismatch) -> dict[str, Any]:
    return {"m": m, "theirs": _side(m.theirs), "ours": _side(m.ours)}


def _labels() -> dict[str, Any]:
    return {"kind_labels": service.KIND_LABELS, "resolution_labels": service.RESOLUTION_LABELS,
            "run_status_labels": service.RUN_STATUS_LABELS,
            "provider_labels": service.PROVIDER_LABELS,
            "problem_labels": service.PROBLEM_LABELS}


def _page(request: Request, session: DbSession, *, status: str, page: int,
          error: DomainError | None = None, error_id: int | None = None,
          note: str = "") -> HTMLResponse:
    tab = status if status in TABS else "open"
    items, total = service.list_mismatches(session=session, status=TABS[tab], page=page,
                                           per_page=PER_PAGE)
    runs, _ = service.list_runs(session=session, per_page=10)
    return render(request, "review/reconciliation.html", {
        "items": [_item(m) for m in items], "total": total, "status": tab, "page": page,
        "pages": max(1, -(-total // PER_PAGE)),
        "open_total": service.open_count(session=session),
        "runs": runs, "run_open": service.open_by_run(session=session,
                                                      run_ids=[r.id for r in runs]),
        "error": error, "message": tr(request, error.message) if error else None,
        "error_id": error_id, "note": note, "resolved": request.query_params.get("resolved"),
        **_labels(),
    }, status_code=error.status_code if error else 200)


@router.get("/review/reconciliation", response_class=HTMLResponse)
def review_reconciliation(request: Request, session: DbSession, reviewer: Reviewer,
                          status: str = "open", page: PageNumber = 1) -> HTMLResponse:
    """What the daily reconciliation found: open mismatches first, and the latest runs."""
    service.check_reviewer(reviewer)
    return _page(request, session, status=status, page=page)


@router.get("/review/reconciliation/runs/{run_id}", response_class=HTMLResponse)
def review_run(request: Request, session: DbSession, reviewer: Reviewer, run_id: DbId
               ) -> HTMLResponse:
    """One run: the bill's counts, what matched, its problems and what it found."""
    service.check_reviewer(reviewer)
    run = service.get_run(session=session, run_id=run_id)
    found = service.mismatches_of_run(session=session, run=run)
    return render(request, "review/reconciliation_run.html", {
        "run": run, "items": [_item(m) for m in found], "note": "", "error_id": None,
        **_labels()})


@router.post("/review/reconciliation/mismatches/{mismatch_id}/resolve",
             dependencies=[CsrfChecked])
def review_resolve(request: Request, session: DbSession, reviewer: Reviewer,
                   mismatch_id: DbId, note: Annotated[str, Form()] = "") -> Response:
    """Resolve a mismatch with the reviewer's note; the form again with the error if not."""
    mismatch = service.get_mismatch(session=session, mismatch_id=mismatch_id)
    try:
        service.do_resolve(session=session, mismatch=mismatch, actor=reviewer, note=note)
    except DomainError as exc:
        return _page(request, session, status="open", page=1, error=exc,
                     error_id=mismatch_id, note=note)
    return redirect(f"/review/reconciliation?resolved={mismatch_id}")
