"""JSON API for payment providers' callbacks and the sandbox gateway."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from shanju.core.deps import CurrentUser, DbSession, PaymentProviders, RawBody
from shanju.core.errors import Conflict
from shanju.donations import flows
from shanju.payments import service as payments

router = APIRouter(tags=["payments"])
# The sandbox gateway's routes: included only when the installation runs the sandbox
# (never in production; see core.config).
sandbox_router = APIRouter(tags=["payments"])


class CallbackResult(BaseModel):
    """What the platform did with a callback (a provider only needs the 200)."""

    outcome: str


@router.post("/payments/callbacks/{provider}", response_model=CallbackResult,
             summary="Provider callback (notification)",
             responses={400: {"description": "Signature or body cannot be trusted"},
                        503: {"description": "Busy (`database_busy`): nothing was applied; "
                                             "retry after `Retry-After` seconds"}})
def provider_callback(
    provider: str, request: Request, body: RawBody, session: DbSession,
    providers: PaymentProviders,
) -> CallbackResult:
    """Verify and apply a provider's signed callback. Safe to deliver more than once (and at
    once: concurrent deliveries are applied one after the other; one is credited)."""
    # A plain def: the flow's blocking database work runs in the threadpool, never on the
    # event loop (the body is read by the RawBody dependency; see core/deps.py).
    outcome = flows.receive_callback(
        session=session, providers=providers, provider_name=provider, body=body,
        headers=dict(request.headers),
    )
    return CallbackResult(outcome=outcome)


class SandboxCompletion(BaseModel):
    """How the sandbox cashier should finish a payment."""

    outcome: Literal["succeeded", "failed"] = "succeeded"


class IntentRead(BaseModel):
    """A payment intent's state."""

    id: str
    status: str
    amount_fen: int


@sandbox_router.post("/payments/sandbox/{intent_id}/complete", response_model=IntentRead,
             summary="Sandbox: pay (or fail) an intent, as the donor would on its cashier")
def sandbox_complete(
    intent_id: str,
    body: SandboxCompletion,
    session: DbSession,
    user: CurrentUser,
    providers: PaymentProviders,
) -> IntentRead:
    """The sandbox gateway sends its signed callback; the platform applies it."""
    checkout = flows.check_sandbox_checkout(
        session=session, actor=user, providers=providers, intent_id=intent_id
    )
    if checkout.finished:
        raise Conflict("This payment is already finished.", code="payment_finished")
    intent, provider = checkout.intent, checkout.provider
    # The gateway is another system: its callback arrives in a transaction of its own, as a
    # real one would. This request has written nothing, so end its transaction first (on
    # SQLite it holds the write lock the callback needs); a fresh read then shows the effect.
    amount, succeeded = intent.amount_fen, body.outcome == "succeeded"
    session.commit()
    provider.complete_payment(intent_id=intent_id, amount_fen=amount, succeeded=succeeded)
    session.expire_all()
    intent = payments.get_intent(session=session, intent_id=intent_id)
    return IntentRead(id=intent.id, status=intent.status.value, amount_fen=intent.amount_fen)
