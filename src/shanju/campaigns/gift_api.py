"""JSON API of a giving-day gift's match (under /api/v1): the donor's "why was my gift not
matched?" and the reviewers' queue of held matches.

Register this router before other ``/campaigns/{...}`` API routers (``/campaigns/{id}``
would otherwise catch ``/campaigns/holds``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from shanju.campaigns import explain, flows, holds
from shanju.campaigns.models import MatchStatus
from shanju.core.db import DbId
from shanju.core.deps import CsrfChecked, CurrentUser, DbSession, Reviewer
from shanju.core.web import request_locale
from shanju.gifts import api as gifts_api

router = APIRouter(tags=["campaigns"])


class GiftMatchRead(BaseModel):
    """A giving-day gift and its matching decision, explained."""

    order_id: str
    campaign_id: int
    campaign_slug: str
    campaign_name: str
    project_id: int
    project_title: str
    organization_id: int
    organization_name: str
    donor_name: str  # masked, unless the caller is the donor
    amount_fen: int
    status: str  # paid | refunded
    paid_at: dt.datetime
    matched_fen: int
    total_fen: int  # gift + match the project receives (held: once it settles)
    match_status: str  # none | matched | held | released | reversed
    pool_id: int | None
    sponsor_name: str | None
    rule_version: int | None
    hold_until: dt.datetime | None
    reason: str  # stable code, "" when fully matched
    reason_params: dict[str, Any]
    reason_title: str
    message: str  # the explanation for the donor, in the request's language
    reviewer_message: str | None  # the reviewers' explanation (reviewers only)


class HeldMatchRead(BaseModel):
    """A match held through the public notice period."""

    order_id: str
    campaign_id: int
    campaign_name: str
    project_id: int
    project_title: str
    organization_name: str
    donor_name: str  # masked
    amount_fen: int
    matched_fen: int
    pool_id: int | None
    hold_until: dt.datetime | None
    reason: str
    reason_params: dict[str, Any]
    reason_title: str
    reviewer_message: str
    payer_prefix: str  # the first characters of the payer account's hash
    device_prefix: str


class HeldMatchPage(BaseModel):
    """A page of held matches."""

    items: list[HeldMatchRead]
    total: int
    limit: int
    offset: int


class ReleaseIn(BaseModel):
    """Why a reviewer releases a held match (kept in the audit log)."""

    reason: str = Field(min_length=1, max_length=200)


class ReleasedRead(BaseModel):
    """A held match returned to its pool."""

    order_id: str
    match_status: str
    pool_id: int | None
    released_fen: int


@router.get("/campaigns/gifts/{order_id}", response_model=GiftMatchRead,
            summary="A giving-day gift's match and why")
def get_gift(order_id: str, request: Request, session: DbSession,
             user: CurrentUser) -> GiftMatchRead:
    """The gift's match status with the reason code and a plain explanation ("why was my
    gift not matched?"). Visible to the donor, the receiving organization's staff and
    reviewers; 404 for anyone else. ``?lang=en`` for English."""
    d = holds.get_gift_for_viewer(session=session, order_id=order_id, viewer=user)
    g = d.gift
    why = explain.explain_gift(g, request_locale(request))
    return GiftMatchRead(
        order_id=g.order_id, campaign_id=d.campaign.id, campaign_slug=d.campaign.slug,
        campaign_name=d.campaign.name, project_id=g.project_id, project_title=d.project_title,
        organization_id=g.organization_id, organization_name=d.organization_name,
        donor_name=d.donor_display, amount_fen=g.amount_fen, status=str(g.status),
        paid_at=g.paid_at, matched_fen=g.matched_fen, total_fen=d.total_fen,
        match_status=str(g.match_status), pool_id=g.pool_id, sponsor_name=d.sponsor_name,
        rule_version=g.rule_version, hold_until=g.hold_until, reason=g.reason,
        reason_params=g.reason_params or {}, reason_title=why.title, message=why.donor,
        reviewer_message=why.reviewer if user.is_reviewer else None,
    )


@router.get("/campaigns/holds", response_model=HeldMatchPage,
            summary="Held matches (reviewers)")
def list_holds(
    request: Request,
    session: DbSession,
    reviewer: Reviewer,
    campaign_id: DbId | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HeldMatchPage:
    """Matches held through the public notice period, the soonest to settle first, with
    the anti-fraud reason. Donor names are masked; payer and device hashes are cut to a
    short prefix."""
    del reviewer
    items, total = holds.list_held(session=session, campaign_id=campaign_id, limit=limit,
                                   offset=offset)
    locale = request_locale(request)
    out = []
    for h in items:
        g = h.gift
        why = explain.explain_gift(g, locale)
        out.append(HeldMatchRead(
            order_id=g.order_id, campaign_id=g.campaign_id, campaign_name=h.campaign_name,
            project_id=g.project_id, project_title=h.project_title,
            organization_name=h.organization_name, donor_name=h.donor_masked,
            amount_fen=g.amount_fen, matched_fen=g.matched_fen, pool_id=g.pool_id,
            hold_until=g.hold_until, reason=g.reason, reason_params=g.reason_params or {},
            reason_title=why.title, reviewer_message=why.reviewer,
            payer_prefix=h.payer_prefix, device_prefix=h.device_prefix,
        ))
    return HeldMatchPage(items=out, total=total, limit=limit, offset=offset)


@router.post("/campaigns/holds/{order_id}/release", response_model=ReleasedRead,
             dependencies=[CsrfChecked], summary="Release a held match (reviewers)")
def release_hold(order_id: str, body: ReleaseIn, session: DbSession,
                 reviewer: Reviewer) -> ReleasedRead:
    """Return a held match to its sponsor's pool instead of letting it settle, with the
    reviewer's reason. 409 ``match_not_held`` if it is not held (settled, released or
    refunded meanwhile)."""
    gift = holds.do_release_held(session=session, order_id=order_id, actor=reviewer,
                                 reason=body.reason)
    return ReleasedRead(order_id=gift.order_id, match_status=str(gift.match_status),
                        pool_id=gift.pool_id, released_fen=gift.matched_fen)


class RefundIn(BaseModel):
    """Why a giving-day gift is refunded (kept in the audit log)."""

    reason: str = Field(min_length=1, max_length=200)


class RefundedRead(BaseModel):
    """A refunded giving-day gift and the match it reversed."""

    order_id: str
    status: str  # refunded
    match_status: str  # reversed if a match stood, else unchanged
    amount_fen: int
    match_reversed_fen: int


class SettledRead(BaseModel):
    """How many held matches settled to their projects."""

    settled: int


@router.post("/campaigns/gifts/{order_id}/refund", response_model=RefundedRead,
             dependencies=[CsrfChecked], summary="Refund a giving-day gift")
def refund_gift(order_id: str, body: RefundIn, request: Request, session: DbSession,
                user: CurrentUser) -> RefundedRead:
    """Refund the gift and reverse its match: the match goes back to the sponsor's pool and
    the caps it used are freed. Reviewers and staff of the receiving organization; 403
    ``refund_not_allowed`` for others who may see the gift (its donor), 404 for anyone else;
    409 ``gift_already_refunded``; 409 ``insufficient_funds`` if the project has already
    spent the money."""
    holds.get_gift_for_viewer(session=session, order_id=order_id, viewer=user)  # else 404
    gift = flows.refund_gift(session=session, actor=user, order_id=order_id,
                             reason=body.reason)
    # Paid through WeChat Pay or Alipay: the provider is asked after the commit.
    if (refund := flows.pending_refund_of(session=session, order_id=order_id)) is not None:
        gifts_api.send_refund_after_commit(request, session, refund)
    reversed_fen = gift.matched_fen if gift.match_status == MatchStatus.REVERSED else 0
    return RefundedRead(order_id=gift.order_id, status=str(gift.status),
                        match_status=str(gift.match_status), amount_fen=gift.amount_fen,
                        match_reversed_fen=reversed_fen)


@router.post("/campaigns/holds/settle", response_model=SettledRead,
             dependencies=[CsrfChecked], summary="Settle due held matches (reviewers)")
def settle_holds(session: DbSession, reviewer: Reviewer) -> SettledRead:
    """Settle every held match whose public notice period has passed (hold → project);
    matches still in their notice period are left alone. Safe to repeat."""
    del reviewer
    return SettledRead(settled=flows.settle_held(session=session))
