"""Disclosure API: projects' public ledgers, open-data exports, organizations' annual summaries.

Routes (under ``/api/v1``):

- ``GET /disclosure/totals`` — every project's received, matched, refunded, disbursed, balance;
- ``GET /disclosure/projects/{id}`` — one project's public ledger;
- ``GET /disclosure/projects/{id}/export?format=csv|json|xlsx`` — every movement, open data;
- ``GET /disclosure/organizations/{id}/annual/{year}`` and ``.../export?format=…``.

CSV and JSON stream from a read transaction of their own (the request's ends before the body
is sent); the workbook is written to a temporary file first (see ``export.py``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from shanju.core.db import Database, DbId, Year
from shanju.core.deps import DbSession, Viewer
from shanju.core.errors import InvalidInput
from shanju.core.money import fen_to_yuan_str
from shanju.core.web import tr
from shanju.disclosure import export
from shanju.disclosure import service as disclosure
from shanju.disclosure.links import annual_exports, project_exports, receipt_url
from shanju.disclosure.schemas import (
    AnnualProjectRead,
    AnnualRead,
    AttachmentRead,
    DisbursementRead,
    FlowsRead,
    MonthRead,
    MovementRead,
    ProjectLedgerRead,
    ProjectRef,
    PurposeRead,
    TotalsRead,
    TotalsRow,
)
from shanju.organizations import service as organizations

router = APIRouter(tags=["disclosure"])


# --- shapes shared with the pages ------------------------------------------------------------


def _month(row: disclosure.MonthRow) -> MonthRead:
    f = row.flows
    return MonthRead(month=row.month, received_fen=f.received_fen, matched_fen=f.matched_fen,
                     refunded_fen=f.refunded_fen, disbursed_fen=f.disbursed_fen)


def project_ledger_read(view: disclosure.ProjectLedger) -> ProjectLedgerRead:
    """The API shape of a project's public ledger."""
    p = view.project
    return ProjectLedgerRead(
        project=ProjectRef(id=p.id, title=p.title, organization_id=p.organization_id,
                           recipient_org_id=p.recipient_org_id),
        totals=FlowsRead(**view.flows.as_dict()),
        ledger_balance_fen=view.ledger_balance_fen,
        balanced=view.balanced,
        months=[_month(m) for m in view.months],
        disbursements=[
            DisbursementRead(
                ref=d.ref, spent_on=d.usage.spent_on, disclosed_at=d.usage.created_at,
                purpose=d.usage.purpose, description=d.usage.description,
                amount_fen=d.usage.amount_fen,
                attachments=[AttachmentRead(url=f"/files/{a.id}", filename=a.filename,
                                            sha256=a.sha256) for a in d.attachments],
                receipt_url=receipt_url(d.ref))
            for d in view.disbursements
        ],
        recent=[
            MovementRead(time=m.time, kind=m.kind, category=m.category,
                         amount_fen=m.amount_fen, donor=m.donor, anonymous=m.anonymous,
                         ref=m.ref, receipt_url=receipt_url(m.ref))
            for m in view.recent
        ],
        exports=project_exports(p.id),
    )


def _annual_project(p: disclosure.AnnualProject) -> AnnualProjectRead:
    return AnnualProjectRead(
        project_id=p.project_id, title=p.title, received_fen=p.flows.received_fen,
        matched_fen=p.flows.matched_fen, refunded_fen=p.flows.refunded_fen,
        disbursed_fen=p.flows.disbursed_fen, balance_fen=p.balance_fen, gifts=p.gifts,
        donors=p.donors)


def annual_read(summary: disclosure.AnnualSummary) -> AnnualRead:
    """The API shape of an organization's year."""
    total = disclosure.AnnualProject(0, "", summary.total, summary.balance_fen, summary.gifts,
                                     summary.donors)
    return AnnualRead(
        organization_id=summary.organization_id, year=summary.year, empty=summary.empty,
        projects=[_annual_project(p) for p in summary.projects],
        total=_annual_project(total),
        months=[_month(m) for m in summary.months],
        purposes=[PurposeRead(purpose=p, amount_fen=fen, usages=n)
                  for p, fen, n in summary.purposes],
        exports=annual_exports(summary.organization_id, summary.year),
    )


# --- downloads -------------------------------------------------------------------------------


def check_format(value: str) -> str:
    """Return the export format, or InvalidInput ``unknown_format`` (422)."""
    if value not in export.FORMATS:
        raise InvalidInput("Choose the format csv, json or xlsx.", code="unknown_format",
                           field="format", details={"formats": list(export.FORMATS)})
    return value


def _row_context(request: Request, session: Session,
                 project_ids: list[int]) -> export.RowContext:
    return export.RowContext(
        usages=disclosure.usage_details(session=session, project_ids=project_ids),
        attachments=disclosure.usage_attachments(session=session, project_ids=project_ids),
        base_url=str(request.app.state.settings.base_url).rstrip("/"),
        anonymous_label=tr(request, "Anonymous"),
    )


Movements = Callable[[Session], Iterator[disclosure.Movement]]
Head = Callable[[Session], dict[str, Any]]


def _download(request: Request, session: Session, *, fmt: str, name: str,
              project_ids: list[int], movements: Movements, head: Head,
              summary: Callable[[Session], list[export.Sheet]]) -> Response:
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{fmt}"',
                   "Cache-Control": "no-store"}
    if fmt == "xlsx":
        # Written in this request's transaction; the file is removed once it has been sent.
        fd, raw_path = tempfile.mkstemp(prefix="shanju-export-", suffix=".xlsx")
        os.close(fd)
        path = Path(raw_path)
        try:
            ctx = _row_context(request, session, project_ids)
            export.write_xlsx(path, [
                *summary(session),
                ("movements", export.COLUMNS, export.movement_rows(movements(session), ctx)),
            ])
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return FileResponse(path, media_type=export.MEDIA_TYPES["xlsx"], headers=disposition,
                            background=BackgroundTask(path.unlink, missing_ok=True))
    database: Database = request.app.state.db

    def chunks() -> Iterator[bytes]:
        # The request's transaction has ended by now: the stream reads in one of its own.
        with database.transaction(write=False) as own:
            ctx = _row_context(request, own, project_ids)
            if fmt == "csv":
                yield from export.csv_chunks(movements(own), ctx)
            else:
                yield from export.json_chunks(head(own), movements(own), ctx)

    return StreamingResponse(chunks(), media_type=export.MEDIA_TYPES[fmt], headers=disposition)


def _flows_head(flows: disclosure.Flows, ledger_balance: int) -> dict[str, Any]:
    return {**flows.as_dict(), "ledger_balance_fen": ledger_balance,
            "balanced": flows.balance_fen == ledger_balance}


# --- routes ----------------------------------------------------------------------------------


@router.get("/disclosure/totals", response_model=TotalsRead, summary="Every project's totals")
def totals(session: DbSession) -> TotalsRead:
    """Every project's received, matched, refunded and disbursed money and balance, in fen.

    Computed from donations, refunds, giving-day gifts, quadratic shares and fund usages (not
    from the transparency log); the balance equals the ledger balance of ``project:<id>``.
    Auditors compare these numbers with the ones recomputed from the log (``shanju verify``).
    """
    return TotalsRead(projects=[
        TotalsRow(project_id=t.project_id, **t.flows.as_dict())
        for t in disclosure.all_totals(session=session)
    ])


@router.get("/disclosure/projects/{project_id}", response_model=ProjectLedgerRead,
            summary="A project's public ledger")
def project_ledger(project_id: DbId, session: DbSession, viewer: Viewer) -> ProjectLedgerRead:
    """Received, matched, refunded, disbursed (with purposes and attachments), the balance
    checked against the ledger, months and the latest movements with masked donor names."""
    project = disclosure.get_project_for_disclosure(session=session, project_id=project_id,
                                                    viewer=viewer)
    return project_ledger_read(disclosure.project_ledger(session=session, project=project))


@router.get("/disclosure/projects/{project_id}/export", summary="A project's open data",
            response_class=Response,
            responses={200: {"content": {t: {} for t in export.MEDIA_TYPES.values()}}})
def project_export(project_id: DbId, request: Request, session: DbSession, viewer: Viewer,
                   format: str = "csv") -> Response:  # noqa: A002 - the query's name
    """Every movement of the project's fund — gifts, matches, refunds, disbursements — as
    ``csv`` (UTF-8 with BOM), ``json`` or ``xlsx``: masked donor names, fen and yuan, China
    time (ISO 8601), and the transparency-log reference of each."""
    fmt = check_format(format)
    project = disclosure.get_project_for_disclosure(session=session, project_id=project_id,
                                                    viewer=viewer)
    pid, title = project.id, project.title
    ids = [pid]

    def head(s: Session) -> dict[str, Any]:
        flows = disclosure.flows_by_project(session=s, project_ids=ids).get(pid,
                                                                           disclosure.Flows())
        balance = disclosure.ledger_balances(session=s, project_ids=ids).get(pid, 0)
        return {"project": {"id": pid, "title": title}, "totals": _flows_head(flows, balance),
                "columns": list(export.COLUMNS)}

    def summary(s: Session) -> list[export.Sheet]:
        totals = head(s)["totals"]
        keys = ["received_fen", "matched_fen", "refunded_fen", "disbursed_fen", "balance_fen",
                "ledger_balance_fen"]
        rows = [[k, totals[k], fen_to_yuan_str(totals[k])] for k in keys]
        return [("summary", ["item", "fen", "yuan"],
                 [["project_id", pid, ""], ["title", title, ""], *rows])]

    return _download(request, session, fmt=fmt, name=f"shanju-project-{pid}", project_ids=ids,
                     movements=lambda s: disclosure.iter_movements(session=s, project_ids=ids),
                     head=head, summary=summary)


@router.get("/disclosure/organizations/{org_id}/annual/{year}", response_model=AnnualRead,
            summary="An organization's annual summary")
def annual(org_id: DbId, year: Year, session: DbSession, viewer: Viewer) -> AnnualRead:
    """The organization's year (China time), per project it publishes or receives funds for
    and in total: received, matched, refunded, disbursed, balance at year end, gifts, donors,
    top purposes of disbursement and months. ``year_not_found`` (404) outside 2000…this year.
    """
    org = organizations.get_visible_organization(session=session, org_id=org_id, viewer=viewer)
    return annual_read(disclosure.annual_summary(session=session, organization_id=org.id,
                                                 year=year))


ANNUAL_COLUMNS = ("project_id", "title", "received_fen", "matched_fen", "refunded_fen",
                  "disbursed_fen", "balance_fen", "gifts", "donors")


@router.get("/disclosure/organizations/{org_id}/annual/{year}/export",
            summary="An organization's year as open data", response_class=Response,
            responses={200: {"content": {t: {} for t in export.MEDIA_TYPES.values()}}})
def annual_export(org_id: DbId, year: Year, request: Request, session: DbSession,
                  viewer: Viewer, format: str = "csv") -> Response:  # noqa: A002
    """``csv``: one row per project and a total row; ``xlsx``: that table, the months and
    every movement of the year; ``json``: the summary and every movement of the year."""
    fmt = check_format(format)
    org = organizations.get_visible_organization(session=session, org_id=org_id, viewer=viewer)
    summary = annual_read(disclosure.annual_summary(session=session, organization_id=org.id,
                                                    year=year))
    name = f"shanju-organization-{org.id}-{year}"
    table = [*[p.model_dump() for p in summary.projects],
             {**summary.total.model_dump(), "project_id": "", "title": "total"}]
    if fmt == "csv":
        body = export.csv_table(ANNUAL_COLUMNS, export.summary_rows(ANNUAL_COLUMNS, table))
        return StreamingResponse(body, media_type=export.MEDIA_TYPES["csv"], headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"'})
    ids = list(disclosure.organization_project_ids(session=session, organization_id=org.id))
    org_id_, year_ = org.id, year
    month_cols = ["month", "received_fen", "matched_fen", "refunded_fen", "disbursed_fen"]
    return _download(
        request, session, fmt=fmt, name=name, project_ids=ids,
        movements=lambda s: disclosure.iter_annual_movements(
            session=s, organization_id=org_id_, year=year_),
        head=lambda _s: summary.model_dump(mode="json", exclude={"exports"}),
        summary=lambda _s: [
            ("projects", ANNUAL_COLUMNS, export.summary_rows(ANNUAL_COLUMNS, table)),
            ("months", month_cols,
             export.summary_rows(month_cols, [m.model_dump() for m in summary.months])),
        ])
