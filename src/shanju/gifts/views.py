"""Gift pages through a real provider: give (signed in or as a guest), pay, and the order's page.

    POST /gifts/give              the donate form (any project page, giving day or not)
    GET  /gifts/orders/{order_id} the thank-you page the provider sends the donor back to:
                                  paid (with the receipt and, on a giving day, the match),
                                  still waiting (it asks the provider, and looks again), or
                                  not paid

A guest needs no account: the order's page opens with the key in its link
(``?k=``, :func:`~shanju.gifts.flows.order_key`), which the provider's return URL carries.
The handlers hold no request-wide transaction (see ``gifts/api.py``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.campaigns import explain, orders
from shanju.campaigns import holds as campaign_holds
from shanju.campaigns.checkout import ReadViewer
from shanju.campaigns.models import CampaignGift
from shanju.core import ratelimit
from shanju.core.db import Database
from shanju.core.deps import CsrfChecked, get_database
from shanju.core.errors import DomainError, InvalidInput, NotFound
from shanju.core.money import parse_yuan
from shanju.core.regions import PROVINCES
from shanju.core.web import redirect, render, request_locale, tr
from shanju.donations.models import Donation
from shanju.gifts import api as gifts_api
from shanju.gifts import flows
from shanju.moderation import service as moderation
from shanju.payments import service as payments
from shanju.payments.gateway import ActionKind, Channel
from shanju.payments.models import IntentStatus, PaymentIntent
from shanju.projects import goals
from shanju.projects import service as projects
from shanju.sharing import service as sharing

router = APIRouter()
PRESET_YUAN = ("10", "20", "50", "100", "200", "500")
# Which product of each provider a browser gets: a phone pays on the provider's H5/wap page,
# a desktop scans a QR code (WeChat Native) or goes to Alipay's page cashier.
PHONE_CHANNELS = {"wechatpay": Channel.WECHAT_H5, "alipay": Channel.ALIPAY_WAP}
DESKTOP_CHANNELS = {"wechatpay": Channel.WECHAT_NATIVE, "alipay": Channel.ALIPAY_PAGE}
PHONE_MARKERS = ("Mobile", "Android", "iPhone", "iPad")


def pay_methods(request: Request, session: Session, organization_id: int) -> list[str]:
    """The real providers a donor may pay this organization through (see flows)."""
    return flows.pay_methods(session=session, organization_id=organization_id,
                             gateways=gifts_api.gateways_of(request),
                             secret_key=request.app.state.settings.secret_key)


def channel_for(request: Request, method: str) -> Channel:
    """The provider's product for this browser (phone or desktop)."""
    agent = request.headers.get("user-agent", "")
    table = PHONE_CHANNELS if any(m in agent for m in PHONE_MARKERS) else DESKTOP_CHANNELS
    try:
        return table[method]
    except KeyError:
        raise InvalidInput("Choose how to pay: WeChat Pay or Alipay.",
                                 code="channel_unavailable", field="method") from None


def _form_page(request: Request, session: Session, *, project_id: int, campaign_id: int | None,
               viewer: User | None, values: dict[str, Any], error: DomainError) -> Response:
    project = projects.get_visible_project(session=session, project_id=project_id,
                                           viewer=viewer)
    ctx: dict[str, Any] = {
        "project": project, "presets": PRESET_YUAN, "provinces": PROVINCES,
        "values": values, "idempotency_key": values.get("idempotency_key") or uuid.uuid4().hex,
        "form_error": error, "form_message": tr(request, error.message),
        "pay_methods": pay_methods(request, session, project.recipient_org_id),
        "campaign_id": campaign_id, "viewer_is_guest": viewer is None,
        "goal": goals.goal_for(session=session, project=project),
    }
    if campaign_id is not None:
        ctx["campaign"] = orders.get_campaign(session=session, campaign_id=campaign_id)
        return render(request, "campaigns/checkout/donate.html", {
            **ctx, "donate_action": "/gifts/give"}, status_code=error.status_code)
    return render(request, "donations/donate.html", ctx, status_code=error.status_code)


@router.post("/gifts/give", dependencies=[CsrfChecked], response_class=HTMLResponse)
def give(
    request: Request,
    viewer: ReadViewer,
    project_id: Annotated[int, Form(ge=1, le=2**31 - 1)],
    campaign_id: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
    amount: Annotated[str, Form(max_length=20)] = "",
    custom_amount: Annotated[str, Form(max_length=20)] = "",
    donor_name: Annotated[str, Form(max_length=200)] = "",
    anonymous: Annotated[str, Form(max_length=10)] = "",
    message: Annotated[str, Form(max_length=1000)] = "",
    province: Annotated[str, Form(max_length=20)] = "",
    contact: Annotated[str, Form(max_length=200)] = "",
    method: Annotated[str, Form(max_length=20)] = "",
    idempotency_key: Annotated[str, Form(max_length=200)] = "",
    confirm_past_goal: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Open the gift's payment order and send the donor to pay it (or show its QR code)."""
    values = {"amount": amount, "custom_amount": custom_amount, "donor_name": donor_name,
              "anonymous": anonymous, "message": message, "province": province,
              "contact": contact, "method": method, "idempotency_key": idempotency_key,
              "confirm_past_goal": confirm_past_goal}
    ratelimit.enforce(request, "checkout", account=viewer.id if viewer else None)
    try:
        amount_fen = parse_yuan(custom_amount or amount, field="amount")
        key = payments.check_idempotency_key(idempotency_key)
        channel = channel_for(request, method)
        body = gifts_api.GiftCreate(
            project_id=project_id, campaign_id=campaign_id, amount_fen=amount_fen,
            channel=channel.value, donor_name=donor_name, anonymous=bool(anonymous),
            message=message, province=province or None,
            confirm_past_goal=bool(confirm_past_goal))
        intent, action = gifts_api.open_and_pay(request, actor=viewer, body=body, key=key,
                                                contact=flows.check_contact(contact))
    except DomainError as exc:
        database: Database = get_database(request)
        with database.transaction(write=False) as session:
            return _form_page(request, session, project_id=project_id, campaign_id=campaign_id,
                              viewer=viewer, values=values, error=exc)
    if action.kind is ActionKind.REDIRECT and action.url:
        return redirect(action.url)
    # A QR code to scan with the phone (desktop), and the page looks again until it is paid.
    return render(request, "gifts/scan.html", {
        "order": intent, "qr_text": action.qr_text or "", "method": intent.provider,
        "order_url": gifts_api.order_page_url(request, intent)})


@router.get("/gifts/orders/{order_id}", response_class=HTMLResponse)
def order_page(order_id: str, request: Request, viewer: ReadViewer,
               k: Annotated[str, Query(max_length=64)] = "") -> Response:
    """The donor's order: paid (thanks, receipt, match), waiting (looks again), or not paid."""
    if set(request.query_params) - {"k", "lang"}:
        # Alipay comes back with the trade's signed return parameters appended: they say
        # nothing this page trusts (the notify and the order query do), and do not belong in
        # the address bar or the history. The same page, without them.
        kept = {name: request.query_params[name] for name in ("k", "lang")
                if name in request.query_params}
        return redirect(f"/gifts/orders/{order_id}" + (f"?{urlencode(kept)}" if kept else ""))
    database: Database = get_database(request)
    secret = request.app.state.settings.secret_key
    with database.transaction(write=False) as session:
        intent = session.get(PaymentIntent, order_id)
        if intent is None or not ((viewer is not None and intent.donor_id == viewer.id)
                                  or flows.check_order_key(secret, order_id, k)):
            raise NotFound("No such payment.", code="payment_not_found")
        # Still open (the callback may be late or lost: ask the provider), or paid on a giving
        # day with its gift not written yet (hand it to the engine again).
        waiting = (intent.status == IntentStatus.REQUIRES_PAYMENT
                   or flows.gift_unwritten(session=session, intent=intent))
    if waiting:
        gifts_api.sync_order(request, order_id)
    with database.transaction(write=False) as session:
        intent = session.get_one(PaymentIntent, order_id)
        project = projects.get_project(session=session, project_id=intent.project_id or 0)
        donation = session.scalar(select(Donation).where(Donation.payment_intent_id == order_id))
        gift = session.scalar(select(CampaignGift).where(CampaignGift.order_id == order_id))
        paid = intent.status == IntentStatus.SUCCEEDED and (
            intent.campaign_id is None or gift is not None)
        self_url = gifts_api.order_page_url(request, intent)
        key_query = self_url.partition("?")[2]  # a guest's ?k=: their pages open with it
        settings = request.app.state.settings
        ctx: dict[str, Any] = {"order": intent, "project": project, "donation": donation,
               "gift": gift,
               "paid": paid, "waiting": not paid and intent.status in (
                   IntentStatus.REQUIRES_PAYMENT, IntentStatus.SUCCEEDED),
               "receipt_ref": (f"gift:{order_id}" if intent.campaign_id is not None
                               else f"donation:{donation.public_id}" if donation else ""),
               # The gift's message is moderated under the gift's id (a donation's d_…).
               "message_view": moderation.message_view(
                   session, gift_id=donation.public_id if donation else order_id,
                   text=intent.message),
               "self_url": self_url,
               "share": sharing.share_meta(project=project, base_url=settings.base_url,
                                           site_name=settings.platform_name),
               "share_url": sharing.share_link(settings.base_url, project.id),
               "poster_url": f"/gifts/orders/{order_id}/poster.png"
                             + (f"?{key_query}" if key_query else "")}
        if gift is not None:
            detail = campaign_holds.gift_detail(session=session, order_id=order_id)
            ctx["sponsor_name"] = detail.sponsor_name if detail else None
            ctx["why"] = explain.explain_gift(gift, request_locale(request))
            ctx["gift_page_url"] = f"/campaigns/gifts/{order_id}" + (
                f"?{key_query}" if key_query else "")
        template = "gifts/_order_status.html" if request.headers.get("hx-request") \
            else "gifts/order.html"
        response = render(request, template, ctx)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the key is in this page's URL
    return response
