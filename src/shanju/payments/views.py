"""The sandbox provider's cashier page: where a donor "pays" in the demo and in tests.

This page plays the payment provider, a system outside the platform: pressing pay makes the
sandbox send its signed callback, which the platform verifies and applies exactly as it would
a real provider's (see ``payments/providers.py``). The app includes this router only when the
installation runs the sandbox (never in production).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from shanju.core.deps import CsrfChecked, CurrentUser, DbSession, PaymentProviders
from shanju.core.web import redirect, render
from shanju.donations import flows
from shanju.projects import service as projects

router = APIRouter()


@router.get("/pay/sandbox/{intent_id}", response_class=HTMLResponse)
def cashier(intent_id: str, request: Request, session: DbSession, user: CurrentUser,
            providers: PaymentProviders) -> Response:
    """Show what is being paid and the pay / cancel buttons."""
    checkout = flows.check_sandbox_checkout(
        session=session, actor=user, providers=providers, intent_id=intent_id
    )
    intent, donation = checkout.intent, checkout.donation
    if checkout.finished:
        return redirect(f"/donations/{donation.public_id}")
    project = projects.get_project(session=session, project_id=donation.project_id)
    return render(request, "payments/sandbox.html",
                  {"intent": intent, "donation": donation, "project": project})


@router.post("/pay/sandbox/{intent_id}", dependencies=[CsrfChecked])
def pay(
    intent_id: str,
    session: DbSession,
    user: CurrentUser,
    providers: PaymentProviders,
    action: Annotated[str, Form()] = "pay",
) -> Response:
    """The donor pays (or cancels); the sandbox sends its callback; show the result."""
    checkout = flows.check_sandbox_checkout(
        session=session, actor=user, providers=providers, intent_id=intent_id
    )
    intent, donation, provider = checkout.intent, checkout.donation, checkout.provider
    if checkout.finished:
        return redirect(f"/donations/{donation.public_id}")
    public_id, amount = donation.public_id, intent.amount_fen
    # End this request's (read-only so far) transaction: the callback arrives in its own.
    session.commit()
    provider.complete_payment(intent_id=intent_id, amount_fen=amount, succeeded=action == "pay")
    return redirect(f"/donations/{public_id}")
