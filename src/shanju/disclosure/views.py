"""Disclosure pages (信息公开): a project's public ledger and an organization's year."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from shanju.core.clock import today_cn
from shanju.core.db import DbId, Year
from shanju.core.deps import DbSession, Viewer
from shanju.core.i18n import N_
from shanju.core.web import redirect, render
from shanju.disclosure import service as disclosure
from shanju.disclosure.links import annual_exports, project_exports, receipt_url
from shanju.organizations import service as organizations

router = APIRouter()

KIND_LABELS = {
    "donation": N_("Donation"),
    "gift": N_("Giving-day gift"),
    "match": N_("Sponsor's match"),
    "match_reversed": N_("Match returned to the sponsor"),
    "quadratic": N_("Quadratic-funding share"),
    "refund": N_("Refund"),
    "refund_failed": N_("Refund failed, money back in the fund"),
    "gift_refund": N_("Giving-day gift refunded"),
    "disbursement": N_("Disbursement"),
}


def chart(months: list[disclosure.MonthRow]) -> dict[str, Any]:
    """Bars of received, matched and disbursed per month, scaled for a 300×120 SVG."""
    peak = max([1] + [max(m.flows.received_fen, m.flows.matched_fen, m.flows.disbursed_fen)
                      for m in months])
    n = max(len(months), 1)
    slot = 300 / n
    width = max(min(slot / 4, 20.0), 0.5)
    offset = (slot - 3 * width) / 2
    bars = []
    for i, m in enumerate(months):
        for j, (series, fen) in enumerate((("received", m.flows.received_fen),
                                           ("matched", m.flows.matched_fen),
                                           ("disbursed", m.flows.disbursed_fen))):
            height = round(max(fen, 0) * 100 / peak, 2)
            bars.append({"x": round(i * slot + offset + j * width, 2), "y": 100 - height,
                         "w": round(width, 2), "h": height, "series": series, "fen": fen,
                         "month": m.month})
    return {"bars": bars, "peak_fen": peak if months else 0,
            "first": months[0].month if months else "", "last": months[-1].month if months else ""}


@router.get("/projects/{project_id}/disclosure", response_class=HTMLResponse)
def project_disclosure(project_id: DbId, request: Request, session: DbSession,
                       viewer: Viewer) -> HTMLResponse:
    """A project's public ledger: where every fen came from and went."""
    project = disclosure.get_project_for_disclosure(session=session, project_id=project_id,
                                                    viewer=viewer)
    view = disclosure.project_ledger(session=session, project=project)
    return render(request, "disclosure/project.html", {
        "project": project, "view": view, "flows": view.flows, "chart": chart(view.months),
        "exports": project_exports(project.id), "receipt_url": receipt_url,
        "kind_labels": KIND_LABELS, "project_id": project.id,
    })


@router.get("/organizations/{org_id}/annual", response_class=HTMLResponse)
def annual_latest(org_id: DbId, session: DbSession, viewer: Viewer) -> Response:
    """The organization's summary of the current year."""
    org = organizations.get_visible_organization(session=session, org_id=org_id, viewer=viewer)
    return redirect(f"/organizations/{org.id}/annual/{today_cn().year}", status_code=307)


@router.get("/organizations/{org_id}/annual/{year}", response_class=HTMLResponse)
def annual_page(org_id: DbId, year: Year, request: Request, session: DbSession,
                viewer: Viewer) -> HTMLResponse:
    """An organization's annual summary: per project and in total, with months and purposes."""
    org = organizations.get_visible_organization(session=session, org_id=org_id, viewer=viewer)
    summary = disclosure.annual_summary(session=session, organization_id=org.id, year=year)
    this_year = today_cn().year
    return render(request, "disclosure/annual.html", {
        "org": org, "summary": summary, "chart": chart(summary.months),
        "exports": annual_exports(org.id, year), "organization_id": org.id,
        "previous_year": year - 1 if year > disclosure.FIRST_YEAR else None,
        "next_year": year + 1 if year < this_year else None,
    })
