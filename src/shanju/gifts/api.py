"""JSON API of the gift pipeline: checkout through a real provider, the providers' one
notification intake, and an order's state (ADR 0028; ``gifts/flows.py`` does the work).

    POST /api/v1/gifts                        open a payment order → how to pay it
    POST /api/v1/payments/notify/{provider}   the provider's signed notification
    GET  /api/v1/gifts/orders/{order_id}      the order's state (asks the provider if open)

Database work and the provider's HTTP calls run in the threadpool (plain ``def`` handlers; ``POST
/gifts``, the giving day's order, in one explicit hop), and every provider call happens outside
a transaction. They hold no request-wide transaction (the donor is loaded in a short read, as
on the giving-day checkout): each step opens its own, so a provider's call never waits while
SQLite's write lock is held. An order records the donor's API token use (when due) in its own
write transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from shanju.accounts.models import User
from shanju.campaigns import orders
from shanju.campaigns.checkout import (
    NO_USE,
    Donor,
    EngineUnavailable,
    SignedIn,
    ViewerUse,
    load_donor,
    record_use,
    record_use_in,
    start_engine,
)
from shanju.campaigns.engine import GiftResult
from shanju.core import ratelimit
from shanju.core.clock import utcnow
from shanju.core.db import Database, DbId
from shanju.core.deps import RawBody, get_database
from shanju.core.errors import DomainError, NotFound
from shanju.core.events import on_commit
from shanju.core.i18n import N_
from shanju.core.text import MultiLine, SingleLine
from shanju.core.web import CSRF_COOKIE
from shanju.donations import flows as donation_flows
from shanju.gifts import flows, intake
from shanju.payments import service as payments
from shanju.payments.gateway import Channel, Gateway, GatewayError, PayAction
from shanju.payments.models import PaymentIntent
from shanju.payments.providers import Providers

log = structlog.get_logger(__name__)
router = APIRouter(tags=["gifts"])
# An open order is asked about at the provider at most this often by its status endpoint.
QUERY_AFTER = dt.timedelta(seconds=3)


def gateways_of(request: Request) -> Mapping[str, Gateway]:
    """The installation's real payment gateways, by provider name."""
    providers: Providers = request.app.state.providers
    return providers.gateways


def _gateway(request: Request, name: str) -> Gateway:
    gateway = gateways_of(request).get(name)
    if gateway is None:
        raise NotFound("Unknown payment provider: %(name)s", code="unknown_provider",
                       params={"name": name})
    return gateway


def _secret(request: Request) -> str:
    secret: str = request.app.state.settings.secret_key
    return secret


def _hasher(request: Request) -> flows.PayerHasher:
    signer: orders.OrderSigner = request.app.state.orders
    return signer.payer_hash


# --- checkout --------------------------------------------------------------------------------


class GiftCreate(BaseModel):
    """A gift to a project, optionally counted toward a live giving day."""

    project_id: DbId
    campaign_id: DbId | None = Field(default=None, description="A live giving day the project "
                                     "is enrolled in: the gift is matched by its sponsors")
    amount_fen: int = Field(description="Integer fen (¥1 = 100)")
    channel: str = Field(description="wechat_h5 | wechat_native | wechat_jsapi | alipay_wap "
                                     "| alipay_page | alipay_qr (what the installation offers)",
                         max_length=20)
    donor_name: SingleLine | None = Field(default=None, max_length=200)
    anonymous: bool = False
    message: MultiLine | None = Field(default=None, max_length=1000)
    province: SingleLine | None = Field(default=None, max_length=20)
    return_url: str | None = Field(default=None, max_length=500,
                                   description="A path on this site to come back to")
    openid: str | None = Field(default=None, max_length=128,
                               description="wechat_jsapi: the payer's openid")
    confirm_past_goal: bool = Field(
        default=False, description="The donor was told the project is past its goal and "
        "still wants to give; without it such a gift is refused (409 past_goal_unconfirmed)")


class PayActionRead(BaseModel):
    """How the donor pays: go to ``url``, show ``qr_text`` as a QR code, or call JSAPI."""

    kind: str
    url: str | None = None
    qr_text: str | None = None
    jsapi_params: dict[str, str] | None = None


class OrderRead(BaseModel):
    """A payment order and, once paid, its gift."""

    order_id: str
    status: str
    provider: str
    channel: str | None
    amount_fen: int
    project_id: int | None
    campaign_id: int | None
    gift_url: str
    pay: PayActionRead | None = None


IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key",
           description="Unique per donation attempt: a retry returns the same order"),
]


def _gift_url(intent: PaymentIntent, secret_key: str = "") -> str:
    """The order's page; a guest's link carries the key that opens it."""
    if intent.donor_id is None and secret_key:
        return f"/gifts/orders/{intent.id}?k={flows.order_key(secret_key, intent.id)}"
    return f"/gifts/orders/{intent.id}"


def order_page_url(request: Request, intent: PaymentIntent) -> str:
    """The order's page, as a path on this site (with a guest's key)."""
    return _gift_url(intent, _secret(request))


def _scope(request: Request, actor: User | None) -> str:
    """Whose Idempotency-Keys these are: an account, or a guest's browser (its CSRF cookie,
    hashed: a key of one browser never opens another's order)."""
    if actor is not None:
        return f"user:{actor.id}"
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return "guest:" + hashlib.sha256(cookie.encode()).hexdigest()[:40]


def _read(intent: PaymentIntent, action: PayAction | None = None) -> OrderRead:
    return OrderRead(
        order_id=intent.id, status=intent.status.value, provider=intent.provider,
        channel=intent.channel, amount_fen=intent.amount_fen, project_id=intent.project_id,
        campaign_id=intent.campaign_id, gift_url=_gift_url(intent),
        pay=None if action is None else PayActionRead(
            kind=action.kind.value, url=action.url, qr_text=action.qr_text,
            jsapi_params=dict(action.jsapi_params) if action.jsapi_params else None))


def check_gift(*, session: Any, actor: User | None, body: GiftCreate,
               gateways: Mapping[str, Gateway]) -> tuple[flows.GiftRequest, Any]:
    """Validate a checkout (reads only); return the request and its project."""
    channel = flows.check_channel(body.channel, gateways=gateways)
    if body.campaign_id is None:
        checked, project = donation_flows.check_donation_request(
            session=session, actor=actor, project_id=body.project_id,
            amount_fen=body.amount_fen, donor_name=body.donor_name, anonymous=body.anonymous,
            message=body.message, province=body.province,
            confirm_past_goal=body.confirm_past_goal)
        return flows.GiftRequest(
            project_id=project.id, campaign_id=None, amount_fen=checked.amount_fen,
            donor_name=checked.donor_name, anonymous=checked.anonymous,
            message=checked.message, province=checked.province, channel=channel.value), project
    _, project, fields = orders.check_order_request(
        session=session, actor=actor, campaign_id=body.campaign_id,
        project_id=body.project_id, amount_fen=body.amount_fen,
        donor_name=body.donor_name, anonymous=body.anonymous, message=body.message,
        province=body.province, confirm_past_goal=body.confirm_past_goal)
    return flows.GiftRequest(
        project_id=project.id, campaign_id=body.campaign_id, amount_fen=fields["amount_fen"],
        donor_name=fields["donor_name"], anonymous=fields["anonymous"],
        message=fields["message"], province=fields["province"], channel=channel.value), project


def open_and_pay(request: Request, *, actor: User | None, body: GiftCreate, key: str,
                 contact: str | None = None, use: ViewerUse = NO_USE
                 ) -> tuple[PaymentIntent, PayAction]:
    """Write the order in its own transaction, then ask the provider to open it. ``use``:
    the donor's credential use still to record (``load_donor``), recorded with the order, or
    on its own when the order is refused."""
    database: Database = get_database(request)
    gateways = gateways_of(request)
    written = False
    try:
        with database.transaction() as session:
            gift, project = check_gift(session=session, actor=actor, body=body,
                                       gateways=gateways)
            provider = flows.provider_of(Channel(gift.channel))
            route = flows.merchant_for(session=session,
                                       organization_id=project.recipient_org_id,
                                       provider=provider, secret_key=_secret(request))
            intent, _ = flows.open_order(session=session, actor=actor,
                                         scope=_scope(request, actor), request=gift,
                                         project=project, route=route, idempotency_key=key,
                                         contact=contact, secret_key=_secret(request))
            settings = request.app.state.settings
            pay = flows.pay_request(
                intent=intent, route=route, project_title=project.title,
                base_url=settings.base_url, client_ip=_client_ip(request),
                return_url=settings.base_url.rstrip("/") + order_page_url(request, intent),
                openid=body.openid)
            record_use_in(session, use)
            session.expunge(intent)
        written = True
    finally:
        if not written:
            record_use(database, use)
    # After the commit: never an HTTP call inside a transaction. The same order opened again
    # (a retry) is accepted by both providers.
    action = _gateway(request, intent.provider).create_payment(pay)
    return intent, action


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "127.0.0.1"


@router.post("/gifts", response_model=OrderRead, status_code=201,
             summary="Give: open a payment order at WeChat Pay or Alipay",
             dependencies=[SignedIn],
             responses={401: {"description": "Not signed in, or the API token is invalid"},
                        409: {"description": "Not open for donations (project_goal_reached: "
                                             "it stopped at its goal), past its goal without "
                                             "confirm_past_goal (past_goal_unconfirmed), no "
                                             "payment route, or Idempotency-Key reused"},
                        422: {"description": "Invalid amount, text, channel or key"},
                        502: {"description": "The provider could not open the order "
                                             "(`payment_*` codes); retry with the same key"}})
async def create_gift(body: GiftCreate, request: Request,
                      idempotency_key: IdempotencyKey = None) -> OrderRead:
    """Open the order and say how to pay it; the same Idempotency-Key gives the same order."""
    # One worker-thread hop for all of it (the donor, the order, the provider's call), and
    # the answer serialized on the loop: a giving day's peak is made of these requests.
    return await run_in_threadpool(_create_gift, request, body, idempotency_key)


def _create_gift(request: Request, body: GiftCreate, idempotency_key: str | None
                 ) -> OrderRead:
    user, use = load_donor(request)
    try:
        ratelimit.enforce(request, "checkout", account=user.id)
        key = payments.check_idempotency_key(idempotency_key)
    except DomainError:
        record_use(get_database(request), use)
        raise
    intent, action = open_and_pay(request, actor=user, body=body, key=key, use=use)
    return _read(intent, action)


@router.get("/gifts/orders/{order_id}", response_model=OrderRead,
            summary="A payment order's state (the donor's own)")
def get_order(order_id: str, request: Request, user: Donor) -> OrderRead:
    """The order's state; if it is still open, the provider is asked first (its callback may
    be late or lost); a paid giving-day order whose gift is not written yet goes to the engine
    again."""
    database: Database = get_database(request)
    with database.transaction(write=False) as session:
        intent = _own_order(session, order_id, user)
        open_since = intent.created_at
        waiting = ((intent.status.value == "requires_payment" and intent.merchant_id is not None)
                   or flows.gift_unwritten(session=session, intent=intent))
    if waiting and utcnow() - open_since >= QUERY_AFTER:
        sync_order(request, order_id)
    with database.transaction(write=False) as session:
        return _read(_own_order(session, order_id, user))


def _own_order(session: Any, order_id: str, user: User) -> PaymentIntent:
    intent = payments.get_intent(session=session, intent_id=order_id)
    if intent.donor_id != user.id:
        raise NotFound("No such payment.", code="payment_not_found")
    session.expunge(intent)
    return intent


def sync_order(request: Request, order_id: str) -> flows.Applied | None:
    """Ask the provider about an open order and apply its answer (a provider that cannot be
    reached now changes nothing: the next look, the sweep or the reconciliation will)."""
    database: Database = get_database(request)
    with database.transaction(write=False) as session:
        provider = payments.get_intent(session=session, intent_id=order_id).provider
    try:
        applied = flows.settle_by_query(
            database=database, gateway=_gateway(request, provider), intent_id=order_id,
            secret_key=_secret(request), hash_payer=_hasher(request))
    except GatewayError as exc:
        log.warning("payments.query.failed", order_id=order_id, code=exc.code)
        return None
    if applied is not None and applied.gift is not None:
        credit_with_engine(request.app, applied)
    return applied


# --- the intake ------------------------------------------------------------------------------


def credit_with_engine(app: Any, applied: flows.Applied) -> GiftResult:
    """Hand a paid giving-day order to the group-commit engine; answered once it is durable
    (or a duplicate of the gift already written for it)."""
    assert applied.gift is not None  # noqa: S101 - callers check
    engine = app.state.engine or start_engine(app)
    try:
        return engine.submit(applied.gift).result(timeout=30)
    except DomainError:
        raise
    except Exception as exc:
        log.exception("payments.notify.engine_failed", order_id=applied.order_id)
        raise EngineUnavailable(N_("The gift could not be recorded now; please retry.")) from exc


@router.post("/payments/notify/{provider}", summary="A provider's notification (WeChat Pay "
             "API v3 / Alipay notify), answered in the provider's own format",
             responses={400: {"description": "Not verified: the provider's 'failed' answer"}},
             response_class=Response)
async def notify(provider: str, request: Request, body: RawBody) -> Response:
    """Verify, record once, credit once. Safe to deliver any number of times, in any order."""
    # Served by gifts.intake.NotifyLane in front of the app; this route documents the
    # endpoint and answers the same way if the lane is not installed (no database work on
    # the event loop: receive_notification does it in worker threads and the engine).
    ack = await intake.receive_notification(request.app, provider=provider, body=body,
                                            headers=request.headers)
    return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)


def send_refund_after_commit(request: Request, session: Any, refund: Any) -> None:
    """For a real provider's order: ask the provider to pay the refund once the transaction
    that reserved it has committed (the sandbox answers through its own callback)."""
    intent = session.get(PaymentIntent, refund.intent_id)
    if intent is None or intent.merchant_id is None:
        return
    refund_id, provider = refund.id, intent.provider
    database: Database = get_database(request)

    def send() -> None:
        try:
            flows.send_refund(database=database, gateway=_gateway(request, provider),
                              refund_id=refund_id, secret_key=_secret(request),
                              base_url=request.app.state.settings.base_url,
                              hash_payer=_hasher(request))
        except DomainError as exc:  # stays pending: the sweep asks again
            log.warning("payments.refund.not_sent", refund_id=refund_id, code=exc.code)

    on_commit(session, send)
