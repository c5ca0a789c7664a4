"""Giving-day checkout: orders, the sandbox's payment of them, and the callback into the engine.

The path of a giving-day gift (see ``docs/campaigns/checkout.md``)::

    POST /api/v1/campaigns/{id}/orders        validate (reads only) → signed order token
    POST /api/v1/payments/sandbox/orders/complete   the sandbox "pays" and sends its callback
    POST /api/v1/payments/callbacks/{provider}/orders
         verify the provider's signature and the order token → PaidGift
         → await engine.submit_async(gift): answered once the gift's batch is durable

No route here opens a write transaction: orders write nothing, and the paid gift is written by
the group-commit engine, many gifts per transaction. (A request's write transaction would also
take SQLite's write lock while it waits for the engine, which needs it.) The pages — the
donate form of an enrolled project, the sandbox cashier and the thank-you page with the match
result — follow the same path.

The engine's lifecycle is the application's: :func:`engine_lifespan` starts a
:class:`~shanju.campaigns.engine.GroupCommitEngine` on the app's database at start-up and stops
it (draining what was submitted) at shutdown.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, FastAPI, Form, Header, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from shanju.accounts import service as accounts
from shanju.accounts.models import User
from shanju.campaigns import engine as campaigns_engine
from shanju.campaigns import orders
from shanju.campaigns.engine import GiftResult
from shanju.core import ratelimit
from shanju.core.db import Database, DbId
from shanju.core.deps import (
    MAX_RAW_BODY,
    SESSION_COOKIE,
    CsrfChecked,
    DbSession,
    Viewer,
    get_database,
)
from shanju.core.errors import (
    BodyTooLarge,
    DomainError,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    ServiceBusy,
)
from shanju.core.i18n import N_
from shanju.core.regions import PROVINCES
from shanju.core.text import MultiLine, SingleLine
from shanju.core.web import login_url, redirect, render, tr
from shanju.gifts import flows as gift_flows
from shanju.moderation import service as moderation
from shanju.organizations import payment_routes
from shanju.payments.providers import OrderPaymentProvider, Providers, SandboxProvider
from shanju.projects import goals
from shanju.projects import service as projects

if TYPE_CHECKING:
    from shanju.campaigns.engine import GroupCommitEngine

log = structlog.get_logger(__name__)
api_router = APIRouter(tags=["giving-day checkout"])
page_router = APIRouter()
# The sandbox's cashier for orders: included only when the installation runs the sandbox
# (never in production unless an operator opted in; see core.config).
sandbox_api_router = APIRouter(tags=["giving-day checkout"])
sandbox_page_router = APIRouter()
PRESET_YUAN = ("10", "20", "50", "100", "200", "500")


# --- the engine in the application -----------------------------------------------------------


class EngineUnavailable(ServiceBusy):
    """The group-commit engine could not take or commit the gift; the provider retries."""

    code = "engine_unavailable"


_start_lock = threading.Lock()


def start_engine(app: FastAPI) -> GroupCommitEngine:
    """Start the app's engine if it has none yet (idempotent) and return it."""
    with _start_lock:
        engine: GroupCommitEngine | None = getattr(app.state, "engine", None)
        if engine is None:
            writer = app.state.settings.giving_day_writer
            if writer == "escrow":
                from shanju.campaigns.escrow_writer import EscrowEngine

                engine = EscrowEngine(app.state.db)
            else:
                engine = campaigns_engine.GroupCommitEngine(app.state.db)
            engine.start()
            app.state.engine = engine
            log.info("campaigns.engine.started", extra={"writer": writer})
        return engine


def stop_engine(app: FastAPI) -> None:
    """Stop the app's engine, answering everything already submitted first."""
    with _start_lock:
        engine: GroupCommitEngine | None = getattr(app.state, "engine", None)
        app.state.engine = None
    if engine is not None:
        engine.stop()
        log.info("campaigns.engine.stopped")


@asynccontextmanager
async def engine_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """FastAPI lifespan: the engine runs while the application does."""
    start_engine(app)
    try:
        yield
    finally:
        await asyncio.to_thread(stop_engine, app)


def _signer(request: Request) -> orders.OrderSigner:
    signer: orders.OrderSigner = request.app.state.orders
    return signer


# --- who is asking, without a write transaction ----------------------------------------------


def _read_db(request: Request) -> Iterator[Session]:
    with get_database(request).transaction(write=False) as session:
        yield session


ReadSession = Annotated[Session, Depends(_read_db, scope="function")]


@dataclass(frozen=True, slots=True)
class ViewerUse:
    """The use of a viewer's credential that is due to be recorded: an API token's last use,
    a web session's activity (each at most once a minute, ``accounts.service``)."""

    token_id: int | None = None
    session_id: int | None = None

    def __bool__(self) -> bool:
        return self.token_id is not None or self.session_id is not None


NO_USE = ViewerUse()


def viewer_in(session: Session, request: Request) -> tuple[User | None, ViewerUse]:
    """The signed-in user (API token or session cookie), read in ``session``, and the use of
    their credential to record (:func:`record_use_in`). An invalid API token is refused
    (401 ``invalid_token``); no credential, or a session cookie that no longer signs in,
    is nobody (None)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        found = accounts.api_token_login(session=session, token=auth[7:].strip())
        if found is None:
            raise NotAuthenticated("The API token is invalid or revoked.",
                                   code="invalid_token")
        return found[0], ViewerUse(token_id=found[1])
    if cookie := request.cookies.get(SESSION_COOKIE):
        idle = accounts.IdleTimeouts.from_settings(request.app.state.settings)
        if signed_in := accounts.session_login(session=session, token=cookie, idle=idle):
            return signed_in[0], ViewerUse(session_id=signed_in[1])
    return None, NO_USE


def record_use_in(session: Session, use: ViewerUse) -> None:
    """Record a credential's use in the caller's write transaction."""
    if use.token_id is not None:
        accounts.do_record_api_token_use(session=session, token_id=use.token_id)
    if use.session_id is not None:
        accounts.do_touch_session(session=session, session_id=use.session_id)


def record_use(database: Database, use: ViewerUse) -> None:
    """Record a credential's use, if due, in a short transaction of its own."""
    if use:
        with database.transaction(write=True) as session:
            record_use_in(session, use)


def _load_viewer(request: Request) -> User | None:
    """The signed-in user (session cookie or API token), loaded in a short read transaction
    and detached; a token's last use is recorded in a short transaction of its own."""
    database: Database = get_database(request)
    with database.transaction(write=False) as session:
        user, use = viewer_in(session, request)
        if user is not None:
            session.expunge(user)
    record_use(database, use)
    request.state.user = user
    return user


def _require_donor(request: Request) -> User:
    user = _load_viewer(request)
    if user is None:
        raise NotAuthenticated("Please sign in first.")
    return user


def donor_in(session: Session, request: Request) -> tuple[User, ViewerUse]:
    """The signed-in donor, read in ``session`` and detached from it, and the use of their
    credential still to record (the caller records it, with its own write if it has one:
    :func:`record_use_in`). 401 when nobody is signed in."""
    user, use = viewer_in(session, request)
    if user is None:
        raise NotAuthenticated("Please sign in first.")
    session.expunge(user)
    request.state.user = user
    return user, use


def load_donor(request: Request) -> tuple[User, ViewerUse]:
    """In a worker thread: :func:`donor_in` in a short read transaction of its own."""
    with get_database(request).transaction(write=False) as session:
        return donor_in(session, request)


async def _has_credentials(request: Request) -> None:
    # The hot order routes read the donor in their one worker-thread hop (load_donor,
    # viewer_in), not in a dependency of its own; a request with no credential at all is
    # still refused here, before its body is validated, as the Donor dependency does.
    if (not request.headers.get("authorization", "").lower().startswith("bearer ")
            and SESSION_COOKIE not in request.cookies):
        raise NotAuthenticated("Please sign in first.")


ReadViewer = Annotated[User | None, Depends(_load_viewer)]
Donor = Annotated[User, Depends(_require_donor)]
#: A route that reads its donor itself (:func:`load_donor`): no credential at all is a 401.
SignedIn = Depends(_has_credentials)


# --- the paid callback ---------------------------------------------------------------------


def _order_provider(providers: Providers, name: str) -> OrderPaymentProvider:
    provider = providers.get(name)
    if not hasattr(provider, "verify_order"):
        raise NotFound("This provider does not pay giving-day orders.",
                       code="unknown_provider")
    return provider  # type: ignore[return-value]


async def receive_order_callback(
    app: Any, *, provider_name: str, body: bytes, headers: Mapping[str, str]
) -> GiftResult:
    """Verify a provider's order callback and credit the gift; return once it is durable.

    Raises (nothing is stored): ``invalid_signature``/``stale_callback``/``malformed_callback``
    (the provider's signature), ``invalid_order_token``/``order_expired``/``order_mismatch``/
    ``amount_mismatch`` (the order), ``engine_unavailable`` (503: the provider retries).
    """
    provider = _order_provider(app.state.providers, provider_name)
    note = provider.verify_order(body=body, headers=headers)
    signer: orders.OrderSigner = app.state.orders
    gift = signer.paid_gift(note)
    engine: GroupCommitEngine | None = app.state.engine
    if engine is None:
        # Served without a lifespan (e.g. uvicorn with lifespan="off"): start on first use.
        engine = await asyncio.to_thread(start_engine, app)
    try:
        result: GiftResult = await engine.submit_async(gift)
    except DomainError:
        raise
    except Exception as exc:
        log.exception("campaigns.callback.engine_failed", order_id=gift.order_id)
        raise EngineUnavailable(N_("The gift could not be recorded now; please retry.")) from exc
    return result


class OrderCallbackLane:
    """The giving day's hot path as plain ASGI, in front of the application's middleware.

    ``POST /api/v1/payments/callbacks/{provider}/orders`` is the one request the peak is made
    of. Handled here it skips the per-request work pages and the rest of the API need
    (locale and CSRF cookies, routing, dependency injection, response models): read the body,
    verify, hand the gift to the engine, answer when it is durable — the same
    :func:`receive_order_callback` the documented route below calls, with the same answers.
    """

    PREFIX = "/api/v1/payments/callbacks/"
    SUFFIX = "/orders"
    MAX_BODY = MAX_RAW_BODY

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not path.startswith(self.PREFIX) or not path.endswith(self.SUFFIX)):
            await self.app(scope, receive, send)
            return
        provider = path[len(self.PREFIX):-len(self.SUFFIX)]
        if not provider or "/" in provider:
            await self.app(scope, receive, send)
            return
        status, payload, extra = 200, b"", []
        try:
            body = await self._body(receive)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            result = await receive_order_callback(
                scope["app"], provider_name=provider, body=body, headers=headers)
            payload = json.dumps(_result_json(result), separators=(",", ":")).encode()
        except DomainError as exc:
            status = exc.status_code
            payload = json.dumps(exc.to_dict(), ensure_ascii=False).encode()
            # A passing refusal (503, nothing recorded) says when to retry.
            extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"x-content-type-options", b"nosniff"),
            *extra,
        ]})
        await send({"type": "http.response.body", "body": payload})

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise DomainError("The client went away.", code="client_disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.MAX_BODY:
                raise BodyTooLarge("The request body is too large.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _result_json(result: GiftResult) -> dict[str, Any]:
    return {"outcome": result.outcome, "order_id": result.order_id, "gift_id": result.gift_id,
            "matched_fen": result.matched_fen, "match_status": result.match_status,
            "reason": result.reason, "gift_url": f"/campaigns/gifts/{result.order_id}"}


class OrderCallbackResult(BaseModel):
    """What became of a paid order: credited now, or a duplicate of an earlier callback."""

    outcome: str = Field(description="credited | duplicate")
    order_id: str
    gift_id: int
    matched_fen: int
    match_status: str
    reason: str
    gift_url: str


@api_router.post(
    "/payments/callbacks/{provider}/orders", response_model=OrderCallbackResult,
    summary="Provider callback for a giving-day order (answered once the gift is durable)",
    responses={400: {"description": "Signature, order token or amount cannot be trusted"},
               503: {"description": "Not recorded; retry"}},
)
async def order_callback(provider: str, request: Request) -> Response:
    """Verify and credit a paid giving-day order. Safe to deliver more than once."""
    # Served by OrderCallbackLane in front of the app; this route documents the endpoint and
    # answers the same way if the lane is not installed.
    body = await request.body()
    result = await receive_order_callback(
        request.app, provider_name=provider, body=body, headers=request.headers)
    # The hot path of the giving day: serialized directly, no response-model round trip.
    return Response(json.dumps(_result_json(result), separators=(",", ":")).encode(),
                    media_type="application/json")


# --- orders (API) --------------------------------------------------------------------------


class OrderCreate(BaseModel):
    """A donor's giving-day gift to an enrolled project."""

    project_id: DbId
    amount_fen: int = Field(description="Integer fen (¥1 = 100)")
    donor_name: SingleLine | None = Field(default=None, max_length=200)
    anonymous: bool = False
    message: MultiLine | None = Field(default=None, max_length=1000)
    province: SingleLine | None = Field(default=None, max_length=20)
    confirm_past_goal: bool = Field(
        default=False, description="The donor was told the project is past its goal and "
        "still wants to give; without it such a gift is refused (409 past_goal_unconfirmed)")


class OrderCreated(BaseModel):
    """A signed order: pay it with ``token`` at the provider (nothing is stored until paid)."""

    order_id: str
    campaign_id: int
    project_id: int
    amount_fen: int
    donor_name: str
    anonymous: bool
    message: str
    province: str | None
    expires_at: str
    token: str
    provider: str = Field(description="The payment provider that pays this order")


IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key",
           description="Unique per donation attempt; a retry with the same key gets the same "
                       "order id (so it can be paid once)."),
]


@api_router.post(
    "/campaigns/{campaign_id}/orders", response_model=OrderCreated, status_code=201,
    summary="Start a giving-day gift: a signed order to pay",
    responses={401: {"description": "Not signed in, or the API token is invalid"},
               409: {"description": "Campaign not live, or project not enrolled"},
               422: {"description": "Invalid amount, text or Idempotency-Key"}},
    dependencies=[SignedIn],
)
async def create_order(campaign_id: DbId, body: OrderCreate, request: Request,
                       idempotency_key: IdempotencyKey = None) -> OrderCreated:
    """Validate the gift and return its order; the same Idempotency-Key gives the same order."""
    # One worker-thread hop for all of it (the donor, the checks, the order), and the answer
    # serialized on the loop: a giving day's peak is made of these requests.
    return await run_in_threadpool(_create_order, request, campaign_id, body, idempotency_key)


def _create_order(request: Request, campaign_id: int, body: OrderCreate,
                  idempotency_key: str | None) -> OrderCreated:
    database: Database = get_database(request)
    use = NO_USE
    # One read transaction for the donor and the checks, opened here in the worker thread,
    # never by a dependency: a dependency's connection would be held while the request waits
    # for a thread again, and at a giving day's peak every thread could be waiting for a
    # connection held by a request that waits for a thread (the pool's 30 s timeout, 503s;
    # docs/benchmarks.md, http).
    try:
        with database.transaction(write=False) as session:
            user, use = donor_in(session, request)
            ratelimit.enforce(request, "checkout", account=user.id)
            key = orders.check_idempotency_key(idempotency_key)
            campaign, project, fields = orders.check_order_request(
                session=session, actor=user, campaign_id=campaign_id,
                project_id=body.project_id, amount_fen=body.amount_fen,
                donor_name=body.donor_name, anonymous=body.anonymous, message=body.message,
                province=body.province, confirm_past_goal=body.confirm_past_goal,
            )
            # The money settles to the receiving organization's own merchant account.
            payment_routes.check_payment_route(session=session,
                                               organization_id=project.recipient_org_id,
                                               providers=_providers(request).names)
            campaign_id_, project_id = campaign.id, project.id
    finally:
        record_use(database, use)
    provider = _providers(request).for_checkout()
    order, token = orders.make_order(
        signer=_signer(request), actor=user, campaign_id=campaign_id_, project_id=project_id,
        idempotency_key=key, fields=fields)
    return OrderCreated(**order.to_json(), token=token, provider=provider.name)


class OrderPayment(BaseModel):
    """The order the sandbox cashier should pay. Who paid (the payer's account and device,
    which anti-fraud counts) is the provider's to say, never the donor's: the sandbox reports
    one payer per donor account."""

    token: str = Field(max_length=4096)


def _providers(request: Request) -> Providers:
    providers: Providers = request.app.state.providers
    return providers


def _sandbox(providers: Providers) -> SandboxProvider:
    provider = providers.get("sandbox")
    if not isinstance(provider, SandboxProvider):  # pragma: no cover - its routes need it
        raise NotFound("The sandbox provider is not configured.", code="unknown_provider")
    return provider


async def pay_with_sandbox(request: Request, *, user: User, token: str) -> GiftResult:
    """The donor pays an order on the sandbox cashier: the sandbox builds and signs its
    callback and delivers it to the same handler as the HTTP callback endpoint."""
    order = _signer(request).verify(token)
    if order.donor_id != user.id:
        raise PermissionDenied("This is not your order.", code="not_your_order")
    sandbox = _sandbox(request.app.state.providers)
    body, headers = sandbox.build_order_callback(
        order_id=order.order_id, amount_fen=order.amount_fen, attach=token,
        payer=f"sbx-payer-{user.id}", device=f"sbx-device-{user.id}",
    )
    return await receive_order_callback(request.app, provider_name=sandbox.name, body=body,
                                        headers=headers)


@sandbox_api_router.post(
    "/payments/sandbox/orders/complete", response_model=OrderCallbackResult,
    summary="Sandbox: pay a giving-day order, as the donor would on its cashier",
)
async def sandbox_complete_order(body: OrderPayment, request: Request, user: Donor
                                 ) -> OrderCallbackResult:
    """Pay the order; answer with what became of the gift (credited / duplicate, match)."""
    result = await pay_with_sandbox(request, user=user, token=body.token)
    return OrderCallbackResult(**_result_json(result))


# --- pages -----------------------------------------------------------------------------------


KEPT_FIELDS = ("amount", "custom_amount", "donor_name", "anonymous", "message", "province")


def _form_page(request: Request, session: Session, *, campaign_id: int, project_id: int,
               viewer: User | None, values: dict[str, Any] | None = None,
               error: DomainError | None = None) -> HTMLResponse:
    campaign = orders.get_campaign(session=session, campaign_id=campaign_id)
    project = projects.get_visible_project(session=session, project_id=project_id,
                                           viewer=viewer)
    ctx: dict[str, Any] = {
        "campaign": campaign, "project": project, "presets": PRESET_YUAN,
        "provinces": PROVINCES, "form_error": error,
        "donate_action": f"/campaigns/{campaign.id}/projects/{project.id}/donate",
        "values": values or {"amount": "20",
                             "donor_name": viewer.display_name if viewer else "",
                             "province": (viewer.province if viewer else "") or ""},
        "idempotency_key": (values or {}).get("idempotency_key") or uuid.uuid4().hex,
        "payment_block": payment_routes.payment_block_reason(
            session=session, organization_id=project.recipient_org_id,
            providers=_providers(request).names),
        # Real providers the organization takes: the form posts to /gifts/give instead.
        "pay_methods": gift_flows.pay_methods(
            session=session, organization_id=project.recipient_org_id,
            gateways=_providers(request).gateway_names,
            secret_key=request.app.state.settings.secret_key),
        "goal": goals.goal_for(session=session, project=project),
    }
    if error is not None:
        ctx["form_message"] = tr(request, error.message)
    return render(request, "campaigns/checkout/donate.html", ctx,
                  status_code=error.status_code if error else 200)


@page_router.get("/campaigns/{campaign_id}/projects/{project_id}/donate",
                 response_class=HTMLResponse)
def donate_page(campaign_id: DbId, project_id: DbId, request: Request, session: DbSession,
                viewer: Viewer) -> Response:
    """The giving-day donate form alone (also where its errors are shown)."""
    # Choices carried through sign-in come back as the donor left them.
    kept = {k: request.query_params[k][:200] for k in KEPT_FIELDS
            if request.query_params.get(k)}
    values = {"amount": "20", "donor_name": viewer.display_name if viewer else "",
              "province": (viewer.province if viewer else "") or "", **kept}
    return _form_page(request, session, campaign_id=campaign_id, project_id=project_id,
                      viewer=viewer, values=values)


@page_router.post("/campaigns/{campaign_id}/projects/{project_id}/donate",
                  dependencies=[CsrfChecked], response_class=HTMLResponse)
def donate(
    campaign_id: DbId,
    project_id: DbId,
    request: Request,
    session: ReadSession,
    viewer: ReadViewer,
    amount: Annotated[str, Form()] = "",
    custom_amount: Annotated[str, Form()] = "",
    donor_name: Annotated[str, Form()] = "",
    anonymous: Annotated[str, Form()] = "",
    message: Annotated[str, Form()] = "",
    province: Annotated[str, Form()] = "",
    idempotency_key: Annotated[str, Form()] = "",
    confirm_past_goal: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Validate the gift and show the sandbox cashier for its order (nothing is stored)."""
    from shanju.core.money import parse_yuan

    chosen = {"amount": amount, "custom_amount": custom_amount, "donor_name": donor_name,
              "anonymous": anonymous, "message": message, "province": province}
    if viewer is None:
        query = urlencode({k: v for k, v in chosen.items() if v})
        path = f"/campaigns/{campaign_id}/projects/{project_id}/donate"
        return redirect(login_url(path + (f"?{query}" if query else "")))
    ratelimit.enforce(request, "checkout", account=viewer.id)
    try:
        amount_fen = parse_yuan(custom_amount or amount, field="amount")
        key = orders.check_idempotency_key(idempotency_key)
        campaign, project, fields = orders.check_order_request(
            session=session, actor=viewer, campaign_id=campaign_id, project_id=project_id,
            amount_fen=amount_fen, donor_name=donor_name, anonymous=bool(anonymous),
            message=message, province=province, confirm_past_goal=bool(confirm_past_goal),
        )
        payment_routes.check_payment_route(
            session=session, organization_id=project.recipient_org_id,
            providers=_providers(request).names)
        _providers(request).for_checkout()
    except DomainError as exc:
        return _form_page(request, session, campaign_id=campaign_id, project_id=project_id,
                          viewer=viewer, values={**chosen, "idempotency_key": idempotency_key,
                                                 "confirm_past_goal": confirm_past_goal},
                          error=exc)
    order, token = orders.make_order(
        signer=_signer(request), actor=viewer, campaign_id=campaign.id, project_id=project.id,
        idempotency_key=key, fields=fields)
    # The cashier is this response (not a redirect): the token carries the donor's name and
    # message, which do not belong in a URL.
    return render(request, "campaigns/checkout/pay.html",
                  {"order": order, "token": token, "campaign": campaign, "project": project})


@sandbox_page_router.post("/pay/sandbox/orders", dependencies=[CsrfChecked])
async def sandbox_pay(
    request: Request,
    token: Annotated[str, Form(max_length=4096)] = "",
    action: Annotated[str, Form()] = "pay",
) -> Response:
    """The donor pays (or cancels) on the sandbox cashier; show the result."""
    user = await asyncio.to_thread(_require_donor, request)
    order = _signer(request).verify(token)
    if action != "pay":
        return redirect(f"/projects/{order.project_id}")
    result = await pay_with_sandbox(request, user=user, token=token)
    return redirect(f"/campaigns/orders/{result.order_id}")


@page_router.get("/campaigns/orders/{order_id}", response_class=HTMLResponse)
def order_done(order_id: str, request: Request, session: DbSession, viewer: Viewer
               ) -> Response:
    """Thank-you page: the gift and what became of its match (the donor's own only)."""
    if viewer is None:
        return redirect(login_url(f"/campaigns/orders/{order_id}"))
    gift = orders.gift_for_donor(session=session, order_id=order_id, donor_id=viewer.id)
    campaign = orders.get_campaign(session=session, campaign_id=gift.campaign_id)
    project = projects.get_project(session=session, project_id=gift.project_id)
    return render(request, "campaigns/checkout/done.html", {
        "gift": gift, "campaign": campaign, "project": project,
        "message_view": moderation.message_view(session, gift_id=gift.order_id,
                                                text=gift.message)})
