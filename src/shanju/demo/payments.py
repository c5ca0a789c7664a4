"""The demo's real payment flow: WeChat Pay and Alipay emulated inside the demo server.

``shanju demo`` serves both providers' emulators (``shanju.payments.emulators``) from its own
server, under :data:`WECHATPAY_PATH` and :data:`ALIPAY_PATH`, and points the production
gateways at them — the SDKs, signatures, encryption and the gift pipeline's intake run exactly
as they would against WeChat Pay and Alipay; only the base URL and the keys differ (issue 12,
item 5). A donor's ``POST /api/v1/gifts`` opens the order at the emulator, the phone-sized
payer page of the emulator takes the payment, and the emulator's signed callback comes back
over HTTP to ``/api/v1/payments/notify/{provider}``.

* Keys are made once, in the demo's data directory (:data:`KEY_DIR` beside its database), and
  reused on every start: RSA key generation costs a noticeable fraction of a second each.
* The seed approves a WeChat Pay and an Alipay route for every approved organization that
  receives gifts (a project's recipient), through the payment-route services (its staff
  submits, the demo reviewer approves): :func:`do_approve_routes`. Their merchant ids are
  derived from the organization's id.
* The emulators keep their state in memory. At each start every approved route is told to
  them (:func:`register_merchants`), so the emulated providers know the demo's sub-merchants;
  a route approved while the demo runs is known from the next start.

Never in production: :func:`install` refuses a production app, and nothing but the demo calls
it (``shanju serve`` and ``create_app`` know nothing of the emulators).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.core.db import Database
from shanju.organizations import payment_routes
from shanju.organizations.models import (
    Organization,
    OrgStatus,
    PaymentRoute,
    RouteProvider,
    RouteStatus,
)
from shanju.payments.alipay import AlipayGateway
from shanju.payments.emulators import alipay as alipay_emulator
from shanju.payments.emulators import wechatpay as wechatpay_emulator
from shanju.payments.gateway import Gateway
from shanju.payments.providers import Providers
from shanju.payments.wechatpay import WeChatPayGateway
from shanju.projects.models import Project

log = structlog.get_logger(__name__)

EMULATORS_PATH = "/emulators"
WECHATPAY_PATH = f"{EMULATORS_PATH}/wechatpay"
ALIPAY_PATH = f"{EMULATORS_PATH}/alipay"
# The emulators' keys, in the demo's data directory (beside var/demo.sqlite3).
KEY_DIR = "demo-emulators"
# The demo's merchant numbers: WeChat Pay sub_mchid 19xxxxxxxx, Alipay PID 20881xxxxxxxxxxx.
_SUB_MCHID_BASE = 1_900_000_000
_PID_BASE = 2_088_100_000_000_000


@dataclass(frozen=True)
class DemoPayments:
    """Both emulators and the production gateways that talk to them."""

    wechatpay: wechatpay_emulator.WeChatPayEmulator
    alipay: alipay_emulator.AlipayEmulator
    gateways: Mapping[str, Gateway]


def server_url(host: str, port: int) -> str:
    """Where the demo server itself is reached from its own process: ``host``, or 127.0.0.1
    when it listens on every address."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - compared with, not bound to
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def attach(app: FastAPI, *, key_dir: Path, url: str) -> DemoPayments:
    """Serve both emulators from the demo's ``app`` (reached at ``url``), tell them the
    approved merchants, and point the app's gateways at them."""
    payments = start(key_dir=key_dir, url=url)
    register_merchants(payments, database=app.state.db,
                       secret_key=app.state.settings.secret_key)
    install(app, payments)
    return payments


def start(*, key_dir: Path, url: str) -> DemoPayments:
    """The emulators and the gateways pointed at them, for a demo served at ``url``.

    The keys are read from ``key_dir`` (made there, 0600, on the first start only).
    """
    wechatpay, wechatpay_config = wechatpay_emulator.setup(url + WECHATPAY_PATH, key_dir)
    alipay, alipay_config = alipay_emulator.setup(url + ALIPAY_PATH, key_dir)
    gateways: dict[str, Gateway] = {
        "wechatpay": WeChatPayGateway(wechatpay_config),
        "alipay": AlipayGateway(alipay_config),
    }
    return DemoPayments(wechatpay=wechatpay, alipay=alipay, gateways=gateways)


def install(app: FastAPI, payments: DemoPayments) -> None:
    """Mount both emulators on the demo's ``app`` and make its gateways the app's."""
    if app.state.settings.environment == "production":
        raise RuntimeError("the payment emulators are for the demo; never mounted in production")
    app.mount(WECHATPAY_PATH, wechatpay_emulator.create_app(payments.wechatpay))
    app.mount(ALIPAY_PATH, alipay_emulator.create_app(payments.alipay))
    use_gateways(app, payments.gateways)


def use_gateways(app: FastAPI, gateways: Mapping[str, Gateway]) -> None:
    """Make ``gateways`` the app's real payment gateways, beside its other providers (the
    sandbox): the one place the demo says where the app keeps them."""
    current: Providers = app.state.providers
    legacy = [current.get(name) for name in current.names if name not in current.gateways]
    app.state.providers = Providers(*legacy, gateways=gateways)


def register_merchants(payments: DemoPayments, *, database: Database, secret_key: str) -> int:
    """Tell the emulators the merchant of every approved route (WeChat Pay's bound
    sub-merchants, Alipay's authorizations); how many. A route whose token does not open
    under ``secret_key`` (the secret key changed since the seed) is left out, with a warning."""
    with database.transaction(write=False) as session:
        rows = session.execute(
            select(PaymentRoute, Organization.name)
            .join(Organization, Organization.id == PaymentRoute.organization_id)
            .where(PaymentRoute.status == RouteStatus.APPROVED)
            .order_by(PaymentRoute.id)).all()
        found: list[tuple[RouteProvider, str, str, str | None]] = []
        for route, name in rows:
            try:
                token = payment_routes.open_token(secret_key=secret_key, route=route)
            except payment_routes.PaymentRouteUnreadable:
                log.warning("demo.payments.route_left_out", route_id=route.id,
                            reason="its app_auth_token does not open under this secret key")
                continue
            found.append((route.provider, route.merchant_id, name, token))
    known_pids = {m.pid for m in payments.alipay.merchants.values()}
    for provider, merchant_id, name, token in found:
        if provider == RouteProvider.WECHATPAY:
            payments.wechatpay.add_sub_merchant(merchant_id, name)
        elif token and merchant_id not in known_pids:
            payments.alipay.add_merchant(name, pid=merchant_id, auth_token=token)
            known_pids.add(merchant_id)
    return len(found)


def demo_merchant_ids(organization_id: int) -> tuple[str, str]:
    """The demo's WeChat Pay sub_mchid and Alipay PID of an organization."""
    return str(_SUB_MCHID_BASE + organization_id), str(_PID_BASE + organization_id)


def do_approve_routes(*, session: Session, reviewer: User, secret_key: str) -> int:
    """Give every approved organization that receives projects' gifts a WeChat Pay and an
    Alipay route, submitted by its staff and approved by ``reviewer`` as the review pages
    would; how many were approved.

    A provider of which the organization has any route (approved, pending, revoked …) is
    left as it is, so running this again changes nothing.
    """
    have = {(org_id, provider) for org_id, provider in session.execute(
        select(PaymentRoute.organization_id, PaymentRoute.provider))}
    organizations = session.scalars(
        select(Organization).where(Organization.status == OrgStatus.APPROVED,
                                   Organization.id.in_(select(Project.recipient_org_id)))
        .order_by(Organization.id)).all()
    approved = 0
    for organization in organizations:
        staff = session.scalar(
            select(User).where(User.organization_id == organization.id,
                               User.role == Role.ORG_STAFF).order_by(User.id).limit(1))
        if staff is None:
            continue
        sub_mchid, pid = demo_merchant_ids(organization.id)
        for provider, fields in (
            (RouteProvider.WECHATPAY, {"merchant_id": sub_mchid}),
            (RouteProvider.ALIPAY, {"merchant_id": pid,
                                    "app_auth_token": secrets.token_hex(20)}),
        ):
            if (organization.id, provider) in have:
                continue
            route = payment_routes.do_submit_route(
                session=session, organization=organization, actor=staff,
                provider=provider.value, secret_key=secret_key, **fields)
            payment_routes.do_approve_route(session=session, route=route, actor=reviewer)
            approved += 1
    return approved
