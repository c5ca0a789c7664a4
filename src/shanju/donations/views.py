"""Donation pages: the donate form, the donation's own page, refunds and "my donations"."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.campaigns import holds as campaign_gifts
from shanju.core import ratelimit
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession, PaymentProviders, Viewer
from shanju.core.errors import DomainError
from shanju.core.money import parse_yuan
from shanju.core.regions import PROVINCES
from shanju.core.web import login_url, redirect, render, tr
from shanju.donations import flows
from shanju.donations import service as donations
from shanju.gifts import api as gifts_api
from shanju.gifts import service as gifts
from shanju.gifts import views as gift_views
from shanju.moderation import service as moderation
from shanju.organizations import payment_routes
from shanju.payments import service as payments
from shanju.projects import goals
from shanju.projects import service as projects
from shanju.projects.models import Project

router = APIRouter()

PRESET_YUAN = ("10", "20", "50", "100", "200", "500")
PAGE_SIZE = 20
# What a donor chose before being asked to sign in; carried through sign-in (or sign-up) in
# the donate page's query so the form comes back as they left it.
KEPT_FIELDS = ("amount", "custom_amount", "donor_name", "anonymous", "message", "province")


def _project(session: Session, project_id: DbId, viewer: User | None = None) -> Project:
    # The donate pages show the project's title: only of a project the viewer may see.
    return projects.get_visible_project(session=session, project_id=project_id, viewer=viewer)


def _form_context(session: Session, project: Project, viewer: User | None,
                  values: dict[str, Any] | None = None,
                  error: DomainError | None = None) -> dict[str, Any]:
    return {
        "project": project,
        "goal": goals.goal_for(session=session, project=project),
        "presets": PRESET_YUAN,
        "provinces": PROVINCES,
        "values": values or {"amount": "20", "donor_name": viewer.display_name if viewer else "",
                             "province": (viewer.province if viewer else "") or ""},
        "idempotency_key": (values or {}).get("idempotency_key") or uuid.uuid4().hex,
        "form_error": error,
    }


@router.get("/projects/{project_id}/donate", response_class=HTMLResponse)
def donate_page(project_id: DbId, request: Request, session: DbSession, viewer: Viewer
                ) -> Response:
    """A page with just the donate form (also where form errors are shown)."""
    project = _project(session, project_id, viewer)
    ctx = _form_context(session, project, viewer)
    ctx["payment_block"] = payment_routes.payment_block_reason(
        session=session, organization_id=project.recipient_org_id,
        providers=request.app.state.providers.names)
    kept = {k: request.query_params[k][:200] for k in KEPT_FIELDS if request.query_params.get(k)}
    ctx["values"].update(kept)
    ctx["pay_methods"] = gift_views.pay_methods(request, session, project.recipient_org_id)
    return render(request, "donations/donate.html", ctx)


@router.post("/projects/{project_id}/donate", dependencies=[CsrfChecked],
             response_class=HTMLResponse)
def donate(
    project_id: DbId,
    request: Request,
    session: DbSession,
    viewer: Viewer,
    providers: PaymentProviders,
    amount: Annotated[str, Form()] = "",
    custom_amount: Annotated[str, Form()] = "",
    donor_name: Annotated[str, Form()] = "",
    anonymous: Annotated[str, Form()] = "",
    message: Annotated[str, Form()] = "",
    province: Annotated[str, Form()] = "",
    idempotency_key: Annotated[str, Form()] = "",
    confirm_past_goal: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Create the donation and send the donor to the payment provider's cashier."""
    if viewer is None:
        chosen = {"amount": amount, "custom_amount": custom_amount, "donor_name": donor_name,
                  "anonymous": anonymous, "message": message, "province": province}
        query = urlencode({k: v for k, v in chosen.items() if v})
        return redirect(login_url(f"/projects/{project_id}/donate" + (f"?{query}" if query
                                                                       else "")))
    ratelimit.enforce(request, "checkout", account=viewer.id)
    project = _project(session, project_id, viewer)
    values = {"amount": amount, "custom_amount": custom_amount, "donor_name": donor_name,
              "anonymous": anonymous, "message": message, "province": province,
              "idempotency_key": idempotency_key, "confirm_past_goal": confirm_past_goal}
    try:
        amount_fen = parse_yuan(custom_amount or amount, field="amount")
        key = payments.check_idempotency_key(idempotency_key)
        req, project = flows.check_donation_request(
            session=session, actor=viewer, project_id=project.id, amount_fen=amount_fen,
            donor_name=donor_name, anonymous=bool(anonymous), message=message,
            province=province, confirm_past_goal=bool(confirm_past_goal),
        )
        # The money settles to the receiving organization's own merchant account.
        payment_routes.check_payment_route(
            session=session, organization_id=project.recipient_org_id, providers=providers.names)
        provider = providers.for_checkout()
        donation, _ = flows.start_donation(
            session=session, actor=viewer, request=req, project=project, provider=provider,
            idempotency_key=key, channel="web",
        )
    except DomainError as exc:
        ctx = _form_context(session, project, viewer, values, exc)
        ctx["form_message"] = tr(request, exc.message)
        return render(request, "donations/donate.html", ctx, status_code=exc.status_code)
    return redirect(provider.checkout_url(donation.payment_intent_id))


@router.get("/donations/{public_id}", response_class=HTMLResponse)
def donation_page(public_id: str, request: Request, session: DbSession, viewer: Viewer
                  ) -> Response:
    """A donation's own page: thanks, its state, and (for the organization) a refund form."""
    donation = flows.get_donation(session=session, public_id=public_id)
    flows.check_can_view(actor=viewer, donation=donation)
    project = projects.get_project(session=session, project_id=donation.project_id)
    can_refund = True
    try:
        assert viewer is not None  # noqa: S101 - check_can_view refused anonymous viewers
        flows.check_can_refund(actor=viewer, donation=donation)
    except DomainError:
        can_refund = False
    status = flows.intent_status(session=session, donation=donation)
    template = "donations/_status.html" if request.headers.get("hx-request") else \
        "donations/donation.html"
    return render(request, template, {
        "donation": donation, "project": project, "intent_status": status,
        "can_refund": can_refund,
        "message_view": moderation.message_view(session, gift_id=donation.public_id,
                                                text=donation.message)})


@router.post("/donations/{public_id}/refund", dependencies=[CsrfChecked],
             response_class=HTMLResponse)
def refund(
    public_id: str,
    request: Request,
    session: DbSession,
    user: CurrentUser,
    providers: PaymentProviders,
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Refund a whole gift (receiving organization or reviewer)."""
    donation = flows.get_donation(session=session, public_id=public_id)
    flows.check_can_view(actor=user, donation=donation)
    refunded = flows.request_refund(session=session, actor=user, donation=donation,
                                    providers=providers, reason=reason)
    gifts_api.send_refund_after_commit(request, session, refunded)
    return redirect(f"/donations/{public_id}")


@router.get("/me/donations", response_class=HTMLResponse)
def my_donations(
    request: Request,
    session: DbSession,
    viewer: Viewer,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    """The donor's own gifts, newest first."""
    if viewer is None:
        return redirect("/login?next=/me/donations")
    rows, total = donations.list_donations(
        session=session, donor_id=viewer.id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    summary = gifts.donor_summary(session=session, donor_id=viewer.id)
    projects = donations.project_titles(session=session, project_ids=[d.project_id for d in rows])
    giving_day = (campaign_gifts.donor_gifts(session=session, donor_id=viewer.id)
                  if page == 1 else [])
    return render(request, "donations/mine.html", {
        "donations": rows, "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE)),
        "summary": summary, "projects": projects, "giving_day_gifts": giving_day,
    })
