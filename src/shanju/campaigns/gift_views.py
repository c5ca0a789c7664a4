"""HTML pages of a giving-day gift's match: the donor's "why was my gift not matched?" page
and the reviewers' queue of held matches. Thin: reading in ``campaigns.holds``, wording in
``campaigns.explain``.

Register this router before other ``/campaigns/...`` and ``/review/campaigns/...`` routers
with a path parameter in that place (``/review/campaigns/{id}`` would otherwise catch
``/review/campaigns/holds``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.campaigns import explain, flows, holds
from shanju.campaigns.models import CampaignGift, GiftStatus
from shanju.core.deps import CsrfChecked, DbSession, Reviewer, Viewer
from shanju.core.errors import Conflict, DomainError, InvalidInput, NotFound, PermissionDenied
from shanju.core.web import login_url, redirect, render, request_locale, tr
from shanju.gifts import api as gifts_api
from shanju.gifts import flows as gift_flows

router = APIRouter()
PAGE_SIZE = 50


def _can_refund(gift: CampaignGift, viewer: User) -> bool:
    if gift.status != GiftStatus.PAID:
        return False
    try:
        flows.check_can_refund(actor=viewer, gift=gift)
    except PermissionDenied:
        return False
    return True


def _gift_page(request: Request, session: Session, viewer: User, order_id: str, *,
               refunded: bool = False, error: DomainError | None = None) -> HTMLResponse:
    detail = holds.get_gift_for_viewer(session=session, order_id=order_id, viewer=viewer)
    locale = request_locale(request)
    return render(request, "campaigns/gifts/detail.html", {
        "d": detail,
        "gift": detail.gift,
        "why": explain.explain_gift(detail.gift, locale),
        "is_reviewer": viewer.is_reviewer,
        "payer_prefix": holds.short_hash(detail.gift.payer_hash),
        "device_prefix": holds.short_hash(detail.gift.device_hash),
        "can_refund": _can_refund(detail.gift, viewer),
        "refunded": refunded,
        "refund_error": error,
        "refund_error_message": tr(request, error.message) if error else "",
    }, status_code=error.status_code if error else 200)


@router.get("/campaigns/gifts/{order_id}", response_class=HTMLResponse)
def gift_page(order_id: str, request: Request, session: DbSession, viewer: Viewer,
              refunded: Annotated[str, Query(max_length=4)] = "",
              k: Annotated[str, Query(max_length=64)] = "") -> Response:
    """A giving-day gift: its match, and why it was (not) matched, in plain words. A guest
    donor opens it with the key of their order's link (``?k=``, as the thank-you page)."""
    if viewer is None:
        if k and gift_flows.check_order_key(request.app.state.settings.secret_key, order_id, k):
            return _guest_gift_page(request, session, order_id)
        return redirect(login_url(str(request.url.path)))
    return _gift_page(request, session, viewer, order_id, refunded=refunded == "1")


def _guest_gift_page(request: Request, session: Session, order_id: str) -> HTMLResponse:
    detail = holds.gift_detail(session=session, order_id=order_id)
    if detail is None:
        raise NotFound("No such gift.", code="gift_not_found")
    response = render(request, "campaigns/gifts/detail.html", {
        "d": detail, "gift": detail.gift,
        "why": explain.explain_gift(detail.gift, request_locale(request)),
        "is_reviewer": False, "payer_prefix": "", "device_prefix": "", "can_refund": False,
        "refunded": False, "refund_error": None, "refund_error_message": "",
    })
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the key is in this page's URL
    return response


@router.post("/campaigns/gifts/{order_id}/refund", dependencies=[CsrfChecked],
             response_class=HTMLResponse)
def refund_gift(
    order_id: str,
    request: Request,
    session: DbSession,
    viewer: Viewer,
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Refund the gift and reverse its match (reviewers, the receiving organization's staff)."""
    if viewer is None:
        return redirect(login_url(f"/campaigns/gifts/{order_id}"))
    holds.get_gift_for_viewer(session=session, order_id=order_id, viewer=viewer)  # else 404
    try:
        with session.begin_nested():
            flows.refund_gift(session=session, actor=viewer, order_id=order_id,
                              reason=reason)
        # Paid through WeChat Pay or Alipay: the provider is asked after the commit.
        if (refund := flows.pending_refund_of(session=session, order_id=order_id)) is not None:
            gifts_api.send_refund_after_commit(request, session, refund)
    except DomainError as exc:
        session.expire_all()
        return _gift_page(request, session, viewer, order_id, error=exc)
    return redirect(f"/campaigns/gifts/{order_id}?refunded=1#refund")


def _holds_page(request: Request, session: Session, *, page: int = 1, released: str = "",
                error: DomainError | None = None, failed_order: str = "",
                settled: str = "") -> HTMLResponse:
    items, total = holds.list_held(session=session, limit=PAGE_SIZE,
                                   offset=(page - 1) * PAGE_SIZE)
    locale = request_locale(request)
    return render(request, "campaigns/holds/list.html", {
        "rows": [(h, explain.explain_gift(h.gift, locale)) for h in items],
        "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE)),
        "released": released,
        "error": error, "error_message": tr(request, error.message) if error else "",
        "failed_order": failed_order,
        "settled": settled,
    }, status_code=error.status_code if error else 200)


@router.get("/review/campaigns/holds", response_class=HTMLResponse)
def holds_page(
    request: Request,
    session: DbSession,
    reviewer: Reviewer,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    released: Annotated[str, Query(max_length=40)] = "",
    settled: Annotated[str, Query(max_length=10)] = "",
) -> HTMLResponse:
    """Reviewers: matches held through the public notice period, with why, to release."""
    del reviewer
    return _holds_page(request, session, page=page, released=released,
                       settled=settled if settled.isdigit() else "")


@router.post("/review/campaigns/holds/settle", dependencies=[CsrfChecked])
def settle_holds(session: DbSession, reviewer: Reviewer) -> Response:
    """Settle every held match whose notice period has passed, then show how many."""
    del reviewer
    settled = flows.settle_held(session=session)
    return redirect(f"/review/campaigns/holds?settled={settled}")


@router.post("/review/campaigns/holds/{order_id}/release", dependencies=[CsrfChecked],
             response_class=HTMLResponse)
def release_hold(
    order_id: str,
    request: Request,
    session: DbSession,
    reviewer: Reviewer,
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Return a held match to its sponsor's pool (with the reviewer's reason)."""
    try:
        gift = holds.do_release_held(session=session, order_id=order_id, actor=reviewer,
                                     reason=reason)
    except (InvalidInput, Conflict) as exc:
        return _holds_page(request, session, error=exc, failed_order=order_id)
    return redirect(f"/review/campaigns/holds?released={gift.order_id}")
