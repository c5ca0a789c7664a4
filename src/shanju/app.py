"""The FastAPI application: routers of every domain, middleware and error handling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shanju import __version__
from shanju.accounts.sms import sms_sender_for
from shanju.campaigns.checkout import OrderCallbackLane, engine_lifespan
from shanju.campaigns.orders import OrderSigner
from shanju.campaigns.pages import LiveStreamLane
from shanju.core import headers, i18n
from shanju.core.clock import utcnow
from shanju.core.config import Settings, get_settings
from shanju.core.db import Database, Timeouts, WriteLockTimeout
from shanju.core.deps import CsrfChecked
from shanju.core.errors import Conflict, DatabaseBusy, DomainError, InvalidInput, NotFound
from shanju.core.i18n import N_
from shanju.core.logging import configure_logging
from shanju.core.mail import mailer_for
from shanju.core.ratelimit import RateLimiter
from shanju.core.web import (
    CSRF_COOKIE,
    LANG_COOKIE,
    PACKAGE_DIR,
    csp_nonce,
    csrf_token,
    error_page,
    error_response,
    page_validation_error,
    wants_json,
)
from shanju.donations.flows import build_providers
from shanju.gifts.intake import NotifyLane
from shanju.moderation import words as moderation_words
from shanju.payments.registry import check_production, gateway_setup

log = structlog.get_logger(__name__)

API_DESCRIPTION = """
The Shanju JSON API. Authenticate with a personal API token
(`Authorization: Bearer sj_...`, created on your account page). A browser calling the API
with its session cookie must send the page's CSRF token as `X-CSRF-Token` on every unsafe
request (`403 csrf_failed` otherwise); Bearer requests need none.

Errors are JSON: `{"error": {"code": "<stable machine code>", "message": "<for people>"}}`
with a 4xx status; too many attempts (sign-in, sign-up, reports, donations) answer `429` with
`Retry-After` (seconds) and code `rate_limited`. Amounts are integer **fen** (1 yuan = 100 fen).
Unsafe requests that create donations take an `Idempotency-Key` header: retrying with the same
key and body returns the first result; the same key with a different body is refused (409).
"""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """What runs with the app: the giving-day group-commit engine, the transparency log's
    periodic checkpointer and the payments job (both stopped first, before the engine
    drains) and the summit's live rooms."""
    from shanju.reconciliation.job import payments_job_lifespan
    from shanju.summit.gateway import live_lifespan
    from shanju.transparency.api import checkpointer_lifespan

    async with (engine_lifespan(app), checkpointer_lifespan(app), payments_job_lifespan(app),
                live_lifespan(app)):
        yield


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Build the application for ``settings`` (the environment's by default)."""
    settings = settings or get_settings()
    # The real gateways (WeChat Pay, Alipay) whose variables are set. Production refuses to
    # start with a weak secret, a sandbox variable, no real provider or one partly set;
    # elsewhere a provider partly set is left out and said in the log.
    gateways = gateway_setup(settings)
    check_production(settings, gateways)
    # The word list of donors' messages, compiled now: an unreadable words file stops the
    # start, not a project page (docs/moderation.md).
    moderation_words.prepare(settings.moderation_words_file)
    configure_logging(json=settings.log_json)
    for problem in gateways.problems:
        log.warning("payment provider left out", problem=problem)
    app = FastAPI(
        title="Shanju 善举 API",
        version=__version__,
        description=API_DESCRIPTION,
        docs_url=None,  # served by _install_docs from vendored assets, not a CDN
        redoc_url=None,
        lifespan=_lifespan,
        # Every unsafe request with a session cookie must carry its CSRF token: checked for
        # every route, not only those that remember to ask (ADR 0004, 0022).
        dependencies=[CsrfChecked],
    )
    app.state.settings = settings
    app.state.db = database or Database(settings.database_url)
    # Every transaction of the app has a lock wait, run time and idle time limit (PostgreSQL):
    # a stuck lock is answered (503, database_busy) instead of holding a request for ever.
    app.state.db.limit(Timeouts(
        lock_ms=settings.db_lock_timeout_ms, statement_ms=settings.db_statement_timeout_ms,
        idle_in_transaction_ms=settings.db_idle_in_transaction_timeout_ms))
    app.state.providers = build_providers(
        sandbox_secret=settings.sandbox_secret if settings.use_sandbox else None,
        database=app.state.db, gateways=gateways.gateways,
    )
    app.state.engine = None  # started by engine_lifespan (or on first use without one)
    app.state.orders = OrderSigner(settings.secret_key)
    app.state.ratelimiter = RateLimiter(settings.rate_limit_url)
    app.state.mailer = mailer_for(settings)  # SMTP if configured, else the log (core/mail.py)
    # Where SMS codes go (accounts/sms.py): Alibaba Cloud SMS if configured, else the log
    # outside production, else none (phone sign-in off).
    app.state.sms = sms_sender_for(settings)
    # The accounts' clock (links' and codes' expiry): a test moves it instead of waiting.
    app.state.clock = utcnow

    _install_middleware(app, settings)
    # Outermost: the giving day's payment callbacks skip the page middleware (see checkout),
    # and so do the real providers' notifications (gifts/intake.py).
    app.add_middleware(OrderCallbackLane)
    app.add_middleware(NotifyLane)
    # The live dashboards' event streams skip it too (see campaigns/pages.py).
    app.add_middleware(LiveStreamLane)
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")
    _include_routers(app)
    _install_docs(app)
    return app


SWAGGER_UI = "/static/vendor/swagger-ui"


def _install_docs(app: FastAPI) -> None:
    # Swagger UI from our own static files: a CDN may be unreachable from self-hosted or
    # mainland-China deployments (see static/vendor/README.md for the version).
    @app.get("/api/docs", include_in_schema=False)
    def api_docs(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — Swagger UI",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url="data:,",  # no icon rather than one fetched from elsewhere
            # No badge fetched from validator.swagger.io: the page talks to us only.
            swagger_ui_parameters={"validatorUrl": None},
        )
        # Its one inline script (SwaggerUIBundle's set-up) runs under this page's CSP nonce.
        html = bytes(page.body).decode().replace(
            "<script>", f'<script nonce="{csp_nonce(request)}">')
        return HTMLResponse(html)


def _include_routers(app: FastAPI) -> None:
    from shanju.accounts import api as accounts_api
    from shanju.accounts import views as accounts_views
    from shanju.campaigns import api as campaigns_api
    from shanju.campaigns import checkout as campaigns_checkout
    from shanju.campaigns import gift_api as campaigns_gift_api
    from shanju.campaigns import gift_views as campaigns_gift_views
    from shanju.campaigns import live_api as campaigns_live_api
    from shanju.campaigns import pages as campaigns_pages
    from shanju.campaigns import views as campaigns_views
    from shanju.complaints import api as complaints_api
    from shanju.complaints import views as complaints_views
    from shanju.disclosure import api as disclosure_api
    from shanju.disclosure import views as disclosure_views
    from shanju.discovery import views as discovery_views
    from shanju.donations import api as donations_api
    from shanju.donations import views as donations_views
    from shanju.gifts import api as gifts_api
    from shanju.gifts import views as gifts_views
    from shanju.ledger import api as ledger_api
    from shanju.moderation import api as moderation_api
    from shanju.moderation import views as moderation_views
    from shanju.organizations import api as organizations_api
    from shanju.organizations import views as organizations_views
    from shanju.payments import api as payments_api
    from shanju.payments import views as payments_views
    from shanju.projects import api as projects_api
    from shanju.projects import views as projects_views
    from shanju.reconciliation import api as reconciliation_api
    from shanju.reconciliation import views as reconciliation_views
    from shanju.sharing import views as sharing_views
    from shanju.site import views as site_views
    from shanju.summit import api as summit_api
    from shanju.summit import gateway as summit_gateway
    from shanju.summit import live_views as summit_live_views
    from shanju.summit import registration_api as summit_registration_api
    from shanju.summit import registration_views as summit_registration_views
    from shanju.summit import views as summit_views
    from shanju.transparency import api as transparency_api
    from shanju.transparency import views as transparency_views

    # The sandbox's routes (cashier pages, "pay now" API) exist only where the sandbox
    # provider does: never in production (core.config).
    sandbox = "sandbox" in app.state.providers.names
    # Giving-day checkout first: /payments/sandbox/orders/complete must not be taken for the
    # intent route /payments/sandbox/{intent_id}/complete of payments_api.
    app.include_router(campaigns_checkout.api_router, prefix="/api/v1")
    app.include_router(campaigns_checkout.page_router, include_in_schema=False)
    if sandbox:
        app.include_router(campaigns_checkout.sandbox_api_router, prefix="/api/v1")
        app.include_router(campaigns_checkout.sandbox_page_router, include_in_schema=False)
        app.include_router(payments_api.sandbox_router, prefix="/api/v1")
        app.include_router(payments_views.router, include_in_schema=False)
    for api in (
        # campaigns_gift_api before other campaign routers: its literal /campaigns/holds and
        # /campaigns/gifts/... must win over /campaigns/{id} patterns.
        campaigns_gift_api,
        accounts_api, organizations_api, projects_api, donations_api, payments_api, gifts_api,
        complaints_api, moderation_api, ledger_api, campaigns_api, campaigns_live_api,
        transparency_api, disclosure_api, reconciliation_api,
        summit_registration_api, summit_api,
    ):
        app.include_router(api.router, prefix="/api/v1")
    for views in (
        campaigns_gift_views,  # before other campaign pages (see campaigns_gift_api)
        site_views, accounts_views, organizations_views, projects_views, donations_views,
        gifts_views, sharing_views,
        complaints_views, moderation_views, campaigns_views, transparency_views,
        disclosure_views, reconciliation_views, discovery_views,
        summit_registration_views, summit_live_views, summit_views, summit_gateway,
        # After any /campaigns/<fixed path> page of the organizers: "/campaigns/{slug}" is
        # a catch-all for one path segment.
        campaigns_pages,
    ):
        app.include_router(views.router, include_in_schema=False)


class _Started(Response):
    """A response's start message as a :class:`Response` whose headers can be read and set
    (``set_cookie``, ``headers.apply``): what the page middleware changes before it is sent."""

    def __init__(self, message: Message) -> None:  # no body: only the headers
        self.status_code = message["status"]
        self.raw_headers = list(message.get("headers", []))


class PageMiddleware:
    """Every request's locale (``?lang=`` or the ``sj_lang`` cookie), CSP nonce and CSRF
    cookie, and every response's security headers (``core.headers``), as plain ASGI.

    Plain ASGI, not Starlette's ``BaseHTTPMiddleware`` (``@app.middleware("http")``): that
    runs the rest of the app in a task of its own and streams its answer through memory
    streams — a task group, two streams and a second response object per request, on every
    page and API call (a tenth of a giving-day order's time on the event loop, docs/
    benchmarks.md "Order path"). Here the response's start message is changed on its way out;
    its body passes untouched. WebSockets and the lifespan pass through, as before.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
        request.state.locale = i18n.negotiate(chosen)
        request.state.user = None
        csp_nonce(request)  # this request's nonce, before any page is rendered

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response = _Started(message)
                self._finish(request, response)
                message = {**message, "headers": response.raw_headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _finish(self, request: Request, response: Response) -> None:
        settings = self.settings
        if "lang" in request.query_params:
            response.set_cookie(
                LANG_COOKIE, request.state.locale, max_age=365 * 86400, samesite="lax",
                secure=settings.cookie_secure,
            )
        # The cookie holds the token this browser's forms carry: a new random one for a new
        # browser, the session's own after sign-in (unless the handler set one: sign-in and
        # sign-out rotate it themselves).
        token = csrf_token(request)
        sets_csrf = any(
            value.startswith(f"{CSRF_COOKIE}=".encode())
            for name, value in response.raw_headers if name == b"set-cookie"
        )
        if request.cookies.get(CSRF_COOKIE) != token and not sets_csrf:
            response.set_cookie(
                CSRF_COOKIE, token, httponly=True, samesite="lax",
                secure=settings.cookie_secure,
            )
        headers.apply(request, response, settings)


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(PageMiddleware, settings=settings)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        # A passing refusal (ServiceBusy) carries its Retry-After in exc.headers.
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if not wants_json(request):
            # People get a sentence in their language; a path that does not parse is a 404.
            return error_response(request, page_validation_error(errors))
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or None
        message = f"{field}: {first.get('msg', 'invalid')}" if field else "Invalid request."
        body = InvalidInput(message, code="validation_error", field=field).to_dict()
        body["error"]["details"] = {
            "errors": [
                {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")}
                for e in errors
            ]
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        # The database refused a value's form (a NUL character, a number out of range): the
        # client's input, never the platform's state — the transaction was rolled back.
        if "NUL" in str(exc.orig):
            err = InvalidInput("Text may not contain NUL (0x00) characters.",
                               code="nul_character")
        else:
            err = InvalidInput("A value in the request is out of range.", code="value_out_of_range")
        return error_response(request, err)

    async def database_busy(request: Request, exc: Exception) -> Response:
        # A lock or statement timeout, a deadlock victim, a dropped connection, SQLite's write
        # lock not had in time, no pooled connection free: the transaction was rolled back.
        # An answer, never a hang or a 500; a provider retries its callback on the 503.
        log.warning("db.busy", method=request.method, path=request.url.path,
                    error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return await domain_error(request, DatabaseBusy(
            N_("The platform is busy right now. Please try again in a moment.")))

    for busy in (OperationalError, PoolTimeout, WriteLockTimeout):
        app.add_exception_handler(busy, database_busy)

    @app.exception_handler(IntegrityError)
    async def integrity_error(request: Request, exc: IntegrityError) -> Response:
        # A constraint refused the change (most often the same thing sent twice at once, the
        # second losing the race): the transaction was rolled back and nothing was saved. It is
        # a conflict with what the database holds, never the platform failing.
        log.warning("db.integrity_error", path=request.url.path, method=request.method,
                    error=str(exc.orig).splitlines()[0][:200] if exc.orig else "")
        return error_response(request, Conflict(
            "This conflicts with data that was saved at the same time (perhaps the same "
            "request was sent twice). Nothing was changed; please reload and try again.",
            code="integrity_conflict"))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Response:
        # The last resort: a page in the site's layout and language for people, the usual
        # JSON error for the API. Starlette re-raises ``exc`` after this answer (logged there).
        del exc
        err = DomainError("Something went wrong on our side.", code="internal_error",
                          status_code=500)
        if wants_json(request):
            return JSONResponse(err.to_dict(), status_code=500)
        try:
            return error_page(request, err)
        except Exception:  # noqa: BLE001 - the page itself failed: plain text, still a page
            return PlainTextResponse("500 Internal Server Error", status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(request, NotFound("This page does not exist."))
        if exc.status_code == 405:
            response = error_response(
                request, DomainError("Method not allowed.", code="method_not_allowed",
                                     status_code=405)
            )
            if exc.headers and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        return error_response(
            request, DomainError(str(exc.detail), code="http_error", status_code=exc.status_code)
        )
