"""JSON API for donations: give (idempotently), list your gifts, refund."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from sqlalchemy.orm import Session

from shanju.core import ratelimit
from shanju.core.db import MAX_OFFSET
from shanju.core.deps import CurrentUser, DbSession, PaymentProviders
from shanju.donations import flows
from shanju.donations import service as donations
from shanju.donations.models import Donation
from shanju.donations.schemas import (
    DonationCreate,
    DonationCreated,
    DonationPage,
    DonationRead,
    PaymentRead,
    RefundCreate,
    RefundRead,
)
from shanju.gifts import api as gifts_api
from shanju.moderation import service as moderation
from shanju.organizations import payment_routes
from shanju.payments import service as payments
from shanju.payments.providers import Providers

router = APIRouter(tags=["donations"])

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key",
           description="Unique per donation attempt; retries with the same key and body "
                       "return the first donation."),
]


@router.post(
    "/donations",
    response_model=DonationCreated,
    status_code=201,
    summary="Give to a project",
    responses={200: {"description": "A retry: the donation created first with this key"},
               409: {"description": "Project not fundraising, key reused with another body, "
                                    "or no approved payment account (no_payment_route)"}},
)
def create_donation(
    body: DonationCreate,
    http_request: Request,
    response: Response,
    session: DbSession,
    user: CurrentUser,
    providers: PaymentProviders,
    idempotency_key: IdempotencyKey = None,
) -> DonationCreated:
    """Create a pending donation and a payment intent; pay at ``payment.checkout_url``."""
    ratelimit.enforce(http_request, "checkout", account=user.id)
    key = payments.check_idempotency_key(idempotency_key)
    request, project = flows.check_donation_request(
        session=session, actor=user, project_id=body.project_id, amount_fen=body.amount_fen,
        donor_name=body.donor_name, anonymous=body.anonymous, message=body.message,
        province=body.province, confirm_past_goal=body.confirm_past_goal,
    )
    # The money settles to the receiving organization's own merchant account.
    payment_routes.check_payment_route(
        session=session, organization_id=project.recipient_org_id, providers=providers.names)
    provider = providers.for_checkout()
    donation, created = flows.start_donation(
        session=session, actor=user, request=request, project=project, provider=provider,
        idempotency_key=key, channel="api",
    )
    if not created:
        response.status_code = 200
    return _created(session=session, donation=donation, providers=providers)


def _reads(session: Session, rows: list[Donation]) -> list[DonationRead]:
    """Donations as their donor sees them: a hidden message left out (moderation)."""
    views = moderation.views_of(session, [(d.public_id, d.message) for d in rows])
    return [DonationRead.model_validate(d).model_copy(update={
        "message": views[d.public_id].for_donor,
        "message_status": views[d.public_id].status.value}) for d in rows]


def _created(*, session: Session, donation: Donation, providers: Providers
             ) -> DonationCreated:
    intent = payments.get_intent(session=session, intent_id=donation.payment_intent_id)
    provider = providers.get(intent.provider)
    return DonationCreated.model_validate(
        {
            **_reads(session, [donation])[0].model_dump(),
            "payment": PaymentRead(
                intent_id=intent.id, provider=intent.provider, status=intent.status.value,
                checkout_url=provider.checkout_url(intent.id),
            ),
        }
    )


@router.get("/donations", response_model=DonationPage, summary="Your donations")
def my_donations(
    session: DbSession,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DonationPage:
    """The signed-in donor's own donations, newest first."""
    rows, total = donations.list_donations(
        session=session, donor_id=user.id, limit=limit, offset=offset
    )
    return DonationPage(
        items=_reads(session, rows), total=total, limit=limit,
        offset=offset,
    )


@router.get("/donations/{donation_id}", response_model=DonationCreated,
            summary="One donation")
def get_donation(
    donation_id: str, session: DbSession, user: CurrentUser, providers: PaymentProviders
) -> DonationCreated:
    """A donation, for its donor, the receiving organization's staff or a reviewer."""
    donation = flows.get_donation(session=session, public_id=donation_id)
    flows.check_can_view(actor=user, donation=donation)
    return _created(session=session, donation=donation, providers=providers)


@router.post("/donations/{donation_id}/refunds", response_model=RefundRead, status_code=201,
             summary="Refund a donation")
def refund_donation(
    donation_id: str,
    body: RefundCreate,
    request: Request,
    session: DbSession,
    user: CurrentUser,
    providers: PaymentProviders,
) -> RefundRead:
    """Return (part of) a paid gift to its donor; the provider confirms by callback."""
    donation = flows.get_donation(session=session, public_id=donation_id)
    flows.check_can_view(actor=user, donation=donation)
    refund = flows.request_refund(
        session=session, actor=user, donation=donation, providers=providers,
        amount_fen=body.amount_fen, reason=body.reason,
    )
    gifts_api.send_refund_after_commit(request, session, refund)
    return RefundRead.model_validate(refund)
