"""JSON API of the daily reconciliation, for platform reviewers (under /api/v1).

    GET  /reconciliation/runs                        runs, newest day first
    GET  /reconciliation/runs/{run_id}               a run and what it found
    GET  /reconciliation/mismatches?status=open      mismatches (open, resolved or all)
    GET  /reconciliation/mismatches/{id}             one mismatch, both sides
    POST /reconciliation/mismatches/{id}/resolve     resolve it with a note (audited)
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from shanju.core.db import DbId, PageNumber
from shanju.core.deps import CsrfChecked, DbSession, Reviewer
from shanju.reconciliation import service
from shanju.reconciliation.models import MismatchStatus, ReconciliationRun
from shanju.reconciliation.schemas import (
    MismatchPage,
    MismatchRead,
    Resolve,
    RunDetail,
    RunPage,
    RunRead,
)

router = APIRouter(tags=["reconciliation"])
PerPage = Annotated[int, Query(ge=1, le=100)]
STATUSES = {"open": MismatchStatus.OPEN, "resolved": MismatchStatus.RESOLVED, "all": None}


def _run_read(run: ReconciliationRun, open_count: int) -> dict[str, object]:
    return {**{c.key: getattr(run, c.key) for c in ReconciliationRun.__table__.columns},
            "status": run.status.value, "trigger": run.trigger.value, "open": open_count}


@router.get("/reconciliation/runs", response_model=RunPage,
            summary="Reconciliation runs (reviewers)")
def list_runs(session: DbSession, reviewer: Reviewer, page: PageNumber = 1,
              per_page: PerPage = 20) -> RunPage:
    """Runs of every provider, newest day first, with how many of their mismatches are open."""
    service.check_reviewer(reviewer)
    runs, total = service.list_runs(session=session, page=page, per_page=per_page)
    still_open = service.open_by_run(session=session, run_ids=[r.id for r in runs])
    return RunPage(items=[RunRead.model_validate(_run_read(r, still_open.get(r.id, 0)))
                          for r in runs], total=total, page=page, per_page=per_page)


@router.get("/reconciliation/runs/{run_id}", response_model=RunDetail,
            summary="A reconciliation run and what it found (reviewers)")
def get_run(session: DbSession, reviewer: Reviewer, run_id: DbId) -> RunDetail:
    """A run: the bill's counts, what matched, its problems and the mismatches it found."""
    service.check_reviewer(reviewer)
    run = service.get_run(session=session, run_id=run_id)
    found = service.mismatches_of_run(session=session, run=run)
    still_open = sum(m.status is MismatchStatus.OPEN for m in found)
    return RunDetail.model_validate({
        **_run_read(run, still_open),
        "found": [MismatchRead.model_validate(m) for m in found]})


@router.get("/reconciliation/mismatches", response_model=MismatchPage,
            summary="Reconciliation mismatches (reviewers)")
def list_mismatches(session: DbSession, reviewer: Reviewer,
                    status: Literal["open", "resolved", "all"] = "open",
                    page: PageNumber = 1, per_page: PerPage = 50) -> MismatchPage:
    """Mismatches: open ones oldest day first (what is left to look at), others newest first."""
    service.check_reviewer(reviewer)
    items, total = service.list_mismatches(session=session, status=STATUSES[status],
                                           page=page, per_page=per_page)
    return MismatchPage(items=[MismatchRead.model_validate(m) for m in items], total=total,
                        page=page, per_page=per_page)


@router.get("/reconciliation/mismatches/{mismatch_id}", response_model=MismatchRead,
            summary="One reconciliation mismatch (reviewers)")
def get_mismatch(session: DbSession, reviewer: Reviewer, mismatch_id: DbId) -> MismatchRead:
    """One mismatch with the bill's line and our record as the last run saw them."""
    service.check_reviewer(reviewer)
    return MismatchRead.model_validate(
        service.get_mismatch(session=session, mismatch_id=mismatch_id))


@router.post("/reconciliation/mismatches/{mismatch_id}/resolve", response_model=MismatchRead,
             summary="Resolve a mismatch with a note (reviewers)",
             dependencies=[CsrfChecked],
             responses={409: {"description": "Already resolved (`mismatch_resolved`)"},
                        422: {"description": "No note, or too long (`note_required`, "
                                             "`text_too_long`)"}})
def resolve_mismatch(session: DbSession, reviewer: Reviewer, mismatch_id: DbId,
                     body: Resolve) -> MismatchRead:
    """Mark an open mismatch resolved: say what you found and did (kept with it, audited)."""
    mismatch = service.get_mismatch(session=session, mismatch_id=mismatch_id)
    return MismatchRead.model_validate(service.do_resolve(
        session=session, mismatch=mismatch, actor=reviewer, note=body.note))
