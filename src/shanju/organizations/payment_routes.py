"""Payment routes: where each organization's donations settle, submitted by its staff and
reviewed by the platform like any qualification change.

The platform is WeChat Pay's service provider (服务商) and Alipay's third-party application
(ISV); each organization is a sub-merchant, so a donor's money settles straight into the
charity's own merchant account. A route names that account at one provider:

* WeChat Pay: the ``sub_mchid`` (the merchant number WeChat Pay issued, documented as
  ``string[1,32]`` and issued as digits — 10 in every current account; 8 to 10 accepted) and,
  optionally, the ``sub_appid`` of the organization's own official account or mini program
  (``wx`` + 16 hex digits).
* Alipay: the merchant's PID (``2088`` + 12 digits: the ``seller_id`` of its callbacks) and
  the ``app_auth_token`` the merchant granted the platform's application. The token is a
  credential: it is stored sealed with AES-256-GCM under a key derived (HKDF-SHA256) from
  ``SHANJU_SECRET_KEY`` for this purpose alone, bound to the organization, provider and PID,
  and is never shown again — pages and the API say only whether it is set.

Status moves (one row per submission)::

    pending ──approve──▶ approved ──revoke──▶ revoked
       │                    │
       ├──reject──▶ rejected└──(a newer route approved)──▶ superseded
       └──(a newer submission)──▶ superseded

A change to an approved route is a new pending submission; the approved one stays in force
until the new one is approved. At most one route per (organization, provider) is approved and
at most one pending (partial unique indexes back both rules).

The payment code asks :func:`merchant_route` (approved only, token opened) and pages and
donate endpoints ask :func:`payment_block_reason` / :func:`check_payment_route`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shanju.accounts import service as accounts
from shanju.accounts.models import Role, User
from shanju.core import audit
from shanju.core.clock import utcnow
from shanju.core.config import get_settings
from shanju.core.db import get_or_404
from shanju.core.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from shanju.core.i18n import N_, Msg
from shanju.core.security import SealError, derive_key, seal, unseal
from shanju.core.text import check_characters
from shanju.organizations.models import (
    Organization,
    OrgStatus,
    PaymentRoute,
    RouteProvider,
    RouteStatus,
)
from shanju.payments.gateway import MerchantRoute

log = structlog.get_logger(__name__)

# The HKDF label of the key that seals app_auth_tokens: a key for this purpose only.
TOKEN_KEY_PURPOSE = "shanju.organizations.payment_routes.app_auth_token/v1"  # noqa: S105 - a label
# The provider that needs no route: it moves no real money (development, test, demo only).
SANDBOX = "sandbox"
REASON_MAX = 2000

PROVIDER_LABELS = {
    RouteProvider.WECHATPAY: N_("WeChat Pay"),
    RouteProvider.ALIPAY: N_("Alipay"),
}
STATUS_LABELS = {
    RouteStatus.PENDING: N_("Pending review"),
    RouteStatus.APPROVED: N_("Approved"),
    RouteStatus.REJECTED: N_("Rejected"),
    RouteStatus.REVOKED: N_("Revoked"),
    RouteStatus.SUPERSEDED: N_("Replaced"),
}
NO_ROUTE = N_("The receiving organization has no approved payment account yet, so this "
              "project cannot take donations online for now.")
NO_PROVIDER = N_("Online giving is not open yet: no payment provider is configured.")

# ASCII only ([0-9], not \d, which matches every script's digits).
_SUB_MCHID_RE = re.compile(r"[0-9]{8,10}")
_PID_RE = re.compile(r"2088[0-9]{12}")
_SUB_APPID_RE = re.compile(r"wx[0-9a-f]{16}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9]{20,64}")
# Full-width forms (what a Chinese input method types: １９００, ｗｘ) → their ASCII twins.
_FULL_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}


class PaymentRouteUnreadable(DomainError):
    """An approved route's sealed token does not open (the secret key changed, or the row was
    altered): the organization must submit its token again."""

    status_code = 503
    code = "payment_route_unreadable"


@dataclass(frozen=True, slots=True)
class RouteInput:
    """A submitted route, checked and normalized (the token in clear, in memory only)."""

    provider: RouteProvider
    merchant_id: str
    sub_appid: str | None
    app_auth_token: str | None


# --- validation -------------------------------------------------------------------------------


def _compact(value: str, *, field: str) -> str:
    """The typed id without spaces (also U+3000) and with full-width forms made ASCII."""
    check_characters(value, field=field, multiline=False)
    return "".join(value.translate(_FULL_WIDTH).split())


def parse_provider(value: str, *, field: str = "provider") -> RouteProvider:
    """Return the provider for a form or API value, or InvalidInput ``invalid_payment_provider``."""
    try:
        return RouteProvider(value.strip())
    except ValueError:
        raise InvalidInput(
            "Choose the payment provider: wechatpay or alipay.",
            code="invalid_payment_provider", field=field,
        ) from None


def check_route_input(
    *, provider: str, merchant_id: str, sub_appid: str = "", app_auth_token: str = "",
    token_optional: bool = False,
) -> RouteInput:
    """Check a submitted route field by field (in the form's order); return it normalized.

    ``token_optional``: an Alipay token may be left empty (the one on file for the same PID is
    kept). Each problem is an InvalidInput naming its field with a stable code.
    """
    chosen = parse_provider(provider)
    merchant = _compact(merchant_id, field="merchant_id")
    appid = _compact(sub_appid, field="sub_appid").lower()
    token = app_auth_token.strip()
    check_characters(token, field="app_auth_token", multiline=False)
    if not merchant:
        raise InvalidInput("This field is required.", code="required", field="merchant_id")
    if chosen == RouteProvider.WECHATPAY:
        if not _SUB_MCHID_RE.fullmatch(merchant):
            raise InvalidInput(
                "Enter the sub-merchant number (sub_mchid) WeChat Pay issued: 8 to 10 digits, "
                "e.g. 1900000109.",
                code="invalid_sub_mchid", field="merchant_id",
            )
        if appid and not _SUB_APPID_RE.fullmatch(appid):
            raise InvalidInput(
                "Enter the AppID as wx followed by 16 hexadecimal characters, or leave it "
                "empty.",
                code="invalid_sub_appid", field="sub_appid",
            )
        if token:
            raise InvalidInput(
                "WeChat Pay needs no authorization token; leave it empty.",
                code="field_not_for_provider", field="app_auth_token",
            )
        return RouteInput(chosen, merchant, appid or None, None)
    if not _PID_RE.fullmatch(merchant):
        raise InvalidInput(
            "Enter the Alipay merchant PID: 16 digits beginning with 2088.",
            code="invalid_alipay_pid", field="merchant_id",
        )
    if appid:
        raise InvalidInput(
            "Alipay routes have no sub_appid; leave it empty.",
            code="field_not_for_provider", field="sub_appid",
        )
    if not token:
        if token_optional:
            return RouteInput(chosen, merchant, None, None)
        raise InvalidInput(
            "Enter the app_auth_token the merchant granted the platform's application.",
            code="app_auth_token_required", field="app_auth_token",
        )
    if not _TOKEN_RE.fullmatch(token):
        raise InvalidInput(
            "The app_auth_token is 20 to 64 letters and digits (Alipay issues 40); check that "
            "it was copied whole.",
            code="invalid_app_auth_token", field="app_auth_token",
        )
    return RouteInput(chosen, merchant, None, token)


def _check_reason(reason: str, *, required: bool) -> str | None:
    note = reason.strip()
    check_characters(note, field="reason", multiline=True)
    if required and not note:
        raise InvalidInput("Give a reason for this decision.", code="reason_required",
                           field="reason")
    if len(note) > REASON_MAX:
        raise InvalidInput("This text is too long.", code="too_long", field="reason",
                           details={"max_length": REASON_MAX})
    return note or None


# --- sealing the token ------------------------------------------------------------------------


def _token_key(secret_key: str) -> bytes:
    return derive_key(secret_key, TOKEN_KEY_PURPOSE)


def _token_context(organization_id: int, provider: RouteProvider, merchant_id: str) -> str:
    # Authenticated with the ciphertext: a sealed token moved to another organization's (or
    # another PID's) row does not open there.
    return f"payment_route:{organization_id}:{provider.value}:{merchant_id}"


def seal_token(*, secret_key: str, organization_id: int, provider: RouteProvider,
               merchant_id: str, token: str) -> str:
    """Seal an app_auth_token for storage in its route's row."""
    return seal(_token_key(secret_key), token,
                context=_token_context(organization_id, provider, merchant_id))


def open_token(*, secret_key: str, route: PaymentRoute) -> str | None:
    """The route's app_auth_token in clear (None if it has none); PaymentRouteUnreadable if
    it does not open."""
    if route.auth_token_sealed is None:
        return None
    try:
        return unseal(_token_key(secret_key), route.auth_token_sealed,
                      context=_token_context(route.organization_id, route.provider,
                                             route.merchant_id))
    except SealError:
        log.error("organizations.payment_route.unreadable", route_id=route.id,
                  organization_id=route.organization_id, provider=route.provider.value)
        raise PaymentRouteUnreadable(N_(
            "This organization's payment account cannot be used right now; the platform has "
            "been told.")) from None


def do_reseal_tokens(*, session: Session, old_secret_key: str, new_secret_key: str) -> int:
    """Re-seal every stored app_auth_token under a new ``SHANJU_SECRET_KEY`` (run once, when
    rotating it: docs/operations-secrets.md); return how many were re-sealed.

    A token that does not open under the old key is left as it is and logged (its
    organization must submit it again).
    """
    count = 0
    for route in session.scalars(select(PaymentRoute).where(
            PaymentRoute.auth_token_sealed.is_not(None)).order_by(PaymentRoute.id)):
        try:
            token = open_token(secret_key=old_secret_key, route=route)
        except PaymentRouteUnreadable:
            continue
        assert token is not None  # noqa: S101 - the query selected sealed tokens only
        route.auth_token_sealed = seal_token(
            secret_key=new_secret_key, organization_id=route.organization_id,
            provider=route.provider, merchant_id=route.merchant_id, token=token)
        audit.record(session, actor_id=None, action="organizations.payment_route.resealed",
                     object_type="payment_route", object_id=route.id,
                     data={"organization_id": route.organization_id})
        count += 1
    session.flush()
    return count


# --- permissions --------------------------------------------------------------------------------


def _is_staff_of(actor: User, organization_id: int) -> bool:
    return actor.role == Role.ORG_STAFF and actor.organization_id == organization_id


def check_can_view(*, actor: User, organization_id: int) -> None:
    """Refuse anyone but the organization's staff and reviewers (403 ``not_your_organization``)."""
    if not (actor.is_reviewer or _is_staff_of(actor, organization_id)):
        raise PermissionDenied("Only this organization's staff may do this.",
                               code="not_your_organization")


def _check_reviewer(actor: User) -> None:
    if not actor.is_reviewer:
        raise PermissionDenied("Only platform reviewers may do this.", code="reviewer_only")


# --- submitting -------------------------------------------------------------------------------


def _current(session: Session, organization_id: int, provider: RouteProvider,
             status: RouteStatus, *, lock: bool = False) -> PaymentRoute | None:
    query = select(PaymentRoute).where(
        PaymentRoute.organization_id == organization_id, PaymentRoute.provider == provider,
        PaymentRoute.status == status)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def _audit(session: Session, *, actor: User | None, route: PaymentRoute, verb: str,
           data: dict[str, object]) -> None:
    audit.record(session, actor_id=actor.id if actor else None,
                 action=f"organizations.payment_route.{verb}", object_type="payment_route",
                 object_id=route.id, data={"organization_id": route.organization_id,
                                           "provider": route.provider.value, **data})


def _end(session: Session, route: PaymentRoute, *, actor: User, status: RouteStatus,
         reason: str | None, verb: str) -> None:
    diff = audit.changes(route, status=status, ended_by_id=actor.id, ended_at=utcnow(),
                         end_reason=reason)
    session.flush()  # out of the one-per-status index before another row takes its place
    _audit(session, actor=actor, route=route, verb=verb, data=diff)


def do_submit_route(
    *, session: Session, organization: Organization, actor: User, provider: str,
    merchant_id: str, sub_appid: str = "", app_auth_token: str = "", secret_key: str,
) -> PaymentRoute:
    """Submit a payment route of ``organization`` for review (its staff only).

    The approved route, if any, stays in force until this one is approved. A pending
    submission of the same provider is replaced (superseded). An Alipay token left empty keeps
    the one on file for the same PID.
    """
    if not _is_staff_of(actor, organization.id):
        raise PermissionDenied("Only this organization's staff may do this.",
                               code="not_your_organization")
    data = check_route_input(provider=provider, merchant_id=merchant_id, sub_appid=sub_appid,
                             app_auth_token=app_auth_token, token_optional=True)
    if organization.status == OrgStatus.SUSPENDED:
        raise Conflict(
            "A suspended organization cannot change its payment accounts; contact the "
            "platform.",
            code="organization_suspended",
        )
    # The pending row first, under a lock: a reviewer approving it meanwhile is seen (the
    # approved row read next is then the one just approved).
    pending = _current(session, organization.id, data.provider, RouteStatus.PENDING, lock=True)
    approved = _current(session, organization.id, data.provider, RouteStatus.APPROVED)
    sealed: str | None = None
    if data.app_auth_token is not None:
        sealed = seal_token(secret_key=secret_key, organization_id=organization.id,
                            provider=data.provider, merchant_id=data.merchant_id,
                            token=data.app_auth_token)
    elif data.provider == RouteProvider.ALIPAY:
        # Keep the token on file for this PID (the newest submission's, else the approved one).
        on_file = [r for r in (pending, approved)
                   if r is not None and r.merchant_id == data.merchant_id and r.auth_token_sealed]
        if not on_file:
            raise InvalidInput(
                "Enter the app_auth_token the merchant granted the platform's application.",
                code="app_auth_token_required", field="app_auth_token",
            )
        sealed = on_file[0].auth_token_sealed
    if (approved is not None and data.app_auth_token is None
            and (approved.merchant_id, approved.sub_appid, approved.auth_token_sealed)
            == (data.merchant_id, data.sub_appid, sealed)):
        raise Conflict("This is the payment account already in force; nothing to review.",
                       code="route_unchanged")
    route = PaymentRoute(
        organization_id=organization.id, provider=data.provider, merchant_id=data.merchant_id,
        sub_appid=data.sub_appid, auth_token_sealed=sealed, status=RouteStatus.PENDING,
        submitted_by_id=actor.id, submitted_at=utcnow(),
    )
    try:
        # One savepoint for replacing the pending submission and adding this one: refused
        # together, nothing of it stays in the caller's transaction.
        with session.begin_nested():
            if pending is not None:
                _end(session, pending, actor=actor, status=RouteStatus.SUPERSEDED,
                     reason=None, verb="superseded")
            session.add(route)
    except IntegrityError:
        # Another submission of this provider was inserted meanwhile (the partial unique
        # index on pending routes decided).
        raise Conflict("Another change of this payment account was submitted at the same "
                       "time; reload the page.", code="route_change_pending") from None
    _audit(session, actor=actor, route=route, verb="submitted", data={"new": {
        "merchant_id": route.merchant_id, "sub_appid": route.sub_appid,
        "app_auth_token_set": sealed is not None,
        "app_auth_token_changed": data.app_auth_token is not None,
        "status": route.status.value,
        "replaces_route_id": approved.id if approved else None}})
    return route


# --- reviewing ----------------------------------------------------------------------------------

_NOTICE_TITLES = {
    "approved": N_("The platform approved your %(provider)s payment account %(merchant_id)s."),
    "rejected": N_("The platform did not approve your %(provider)s payment account "
                   "%(merchant_id)s."),
    "revoked": N_("Your %(provider)s payment account %(merchant_id)s was revoked."),
}
_NOTICE_NOTE = N_("Reviewer's note: %(reason)s")


def _notify(session: Session, route: PaymentRoute, verb: str, note: str | None) -> None:
    staff_ids = session.scalars(select(User.id).where(
        User.organization_id == route.organization_id, User.role == Role.ORG_STAFF)).all()
    accounts.do_notify(
        session=session, user_ids=staff_ids, kind=f"payment_route.{verb}",
        title=_NOTICE_TITLES[verb], body=_NOTICE_NOTE if note else "",
        params={"provider": Msg(PROVIDER_LABELS[route.provider]),
                "merchant_id": route.merchant_id, "reason": note or ""},
        link="/console/payment-routes",
    )


def _lock(session: Session, route: PaymentRoute) -> PaymentRoute:
    # Re-read the row under a lock (PostgreSQL): two reviewers deciding at once see each
    # other's decision; SQLite's single writer serializes them anyway.
    session.refresh(route, with_for_update=True)
    return route


def _check_status(route: PaymentRoute, *allowed: RouteStatus) -> None:
    if route.status not in allowed:
        raise Conflict("This decision is not possible in the payment account's current "
                       "status.", code="invalid_transition",
                       details={"status": route.status.value})


def do_approve_route(*, session: Session, route: PaymentRoute, actor: User,
                     reason: str = "") -> PaymentRoute:
    """Approve a pending route (reviewers): it takes force, replacing the approved one."""
    _check_reviewer(actor)
    note = _check_reason(reason, required=False)
    _check_status(_lock(session, route), RouteStatus.PENDING)
    previous = _current(session, route.organization_id, route.provider, RouteStatus.APPROVED,
                        lock=True)
    if previous is not None:
        _end(session, previous, actor=actor, status=RouteStatus.SUPERSEDED, reason=None,
             verb="superseded")
    diff = audit.changes(route, status=RouteStatus.APPROVED, reviewed_by_id=actor.id,
                         reviewed_at=utcnow(), review_note=note)
    session.flush()  # the locks above order concurrent decisions; the index backs them
    _audit(session, actor=actor, route=route, verb="approved",
           data={**diff, "replaces_route_id": previous.id if previous else None})
    _notify(session, route, "approved", note)
    return route


def do_reject_route(*, session: Session, route: PaymentRoute, actor: User,
                    reason: str) -> PaymentRoute:
    """Reject a pending route (reviewers; reason required); the approved one stays in force."""
    _check_reviewer(actor)
    note = _check_reason(reason, required=True)
    _check_status(_lock(session, route), RouteStatus.PENDING)
    diff = audit.changes(route, status=RouteStatus.REJECTED, reviewed_by_id=actor.id,
                         reviewed_at=utcnow(), review_note=note)
    session.flush()
    _audit(session, actor=actor, route=route, verb="rejected", data=diff)
    _notify(session, route, "rejected", note)
    return route


def do_revoke_route(*, session: Session, route: PaymentRoute, actor: User,
                    reason: str) -> PaymentRoute:
    """Take an approved route out of force (reviewers, or the organization's own staff — e.g.
    the merchant account was closed); reason required. Donations stop until another route is
    approved."""
    if not (actor.is_reviewer or _is_staff_of(actor, route.organization_id)):
        raise PermissionDenied("Only this organization's staff may do this.",
                               code="not_your_organization")
    note = _check_reason(reason, required=True)
    _check_status(_lock(session, route), RouteStatus.APPROVED)
    _end(session, route, actor=actor, status=RouteStatus.REVOKED, reason=note, verb="revoked")
    _notify(session, route, "revoked", note)
    return route


# --- what the payment code and the pages ask ---------------------------------------------------


def merchant_route(*, session: Session, organization_id: int, provider: str,
                   secret_key: str | None = None) -> MerchantRoute | None:
    """Where ``organization_id``'s money settles at ``provider``: its approved route with the
    token opened, or None (no approved route, or a provider that takes no routes).

    ``secret_key``: the installation's ``SHANJU_SECRET_KEY`` (default: the environment's);
    a token that does not open under it raises PaymentRouteUnreadable (503).
    """
    try:
        chosen = RouteProvider(provider)
    except ValueError:
        return None
    route = _current(session, organization_id, chosen, RouteStatus.APPROVED)
    if route is None:
        return None
    token = open_token(secret_key=secret_key or get_settings().secret_key, route=route)
    return MerchantRoute(provider=chosen.value, merchant_id=route.merchant_id,
                         sub_appid=route.sub_appid, auth_token=token)


def payment_block_reason(*, session: Session, organization_id: int,
                         providers: Iterable[str]) -> str | None:
    """Why ``organization_id`` cannot take money through any of ``providers`` (the
    installation's configured provider names), as a msgid; None if it can.

    The sandbox needs no route (it moves no money and runs only in development, test and
    demo); every real provider needs an approved route of the organization.
    """
    names = set(providers)
    if SANDBOX in names:
        return None
    real = [p for p in RouteProvider if p.value in names]
    if not real:
        return NO_PROVIDER
    found = session.scalar(select(PaymentRoute.id).where(
        PaymentRoute.organization_id == organization_id, PaymentRoute.provider.in_(real),
        PaymentRoute.status == RouteStatus.APPROVED).limit(1))
    return None if found is not None else NO_ROUTE


def check_payment_route(*, session: Session, organization_id: int,
                        providers: Iterable[str]) -> None:
    """Refuse a gift to ``organization_id`` when no configured real provider has an approved
    route of it: 409 ``no_payment_route``.

    With no provider at all this passes: the checkout answers ``no_payment_provider`` (503).
    """
    names = list(providers)
    if not names:
        return
    if payment_block_reason(session=session, organization_id=organization_id,
                            providers=names) is not None:
        raise Conflict(NO_ROUTE, code="no_payment_route")


# --- queries ----------------------------------------------------------------------------------


def get_route(*, session: Session, route_id: int) -> PaymentRoute:
    """Return the route with ``route_id`` (NotFound ``payment_route_not_found`` if none)."""
    return get_or_404(session, PaymentRoute, route_id,
                      message=N_("This payment account does not exist."),
                      code="payment_route_not_found")


def get_visible_route(*, session: Session, route_id: int, viewer: User) -> PaymentRoute:
    """Return the route if ``viewer`` may see it (its organization's staff, reviewers); the
    same NotFound as a missing one otherwise, so route ids reveal nothing."""
    route = session.get(PaymentRoute, route_id)
    if route is None or not (viewer.is_reviewer
                             or _is_staff_of(viewer, route.organization_id)):
        raise NotFound("This payment account does not exist.", code="payment_route_not_found")
    return route


def routes_of_organization(*, session: Session, organization_id: int,
                           history: int = 10) -> list[PaymentRoute]:
    """The organization's routes: every pending and approved one, then the ``history`` newest
    others (rejected, revoked, replaced); newest first within each."""
    live = (RouteStatus.PENDING, RouteStatus.APPROVED)
    base = select(PaymentRoute).where(PaymentRoute.organization_id == organization_id)
    current = session.scalars(base.where(PaymentRoute.status.in_(live))
                              .order_by(PaymentRoute.provider, PaymentRoute.id.desc())).all()
    older = session.scalars(base.where(PaymentRoute.status.not_in(live))
                            .order_by(PaymentRoute.id.desc()).limit(history)).all()
    return [*current, *older]


def list_for_review(*, session: Session, status: RouteStatus | None = None, page: int = 1,
                    per_page: int = 50) -> tuple[list[PaymentRoute], int]:
    """Routes for reviewers: pending first (oldest first), then the others newest first."""
    query = select(PaymentRoute)
    if status is not None:
        query = query.where(PaymentRoute.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pending_first = case((PaymentRoute.status == RouteStatus.PENDING, 0), else_=1)
    oldest_pending = case((PaymentRoute.status == RouteStatus.PENDING, PaymentRoute.id),
                          else_=-PaymentRoute.id)
    page = max(page, 1)
    items = session.scalars(query.order_by(pending_first, oldest_pending)
                            .offset((page - 1) * per_page).limit(per_page)).all()
    return list(items), total


def count_pending(*, session: Session) -> int:
    """How many payment routes wait for a reviewer."""
    return session.scalar(select(func.count()).select_from(PaymentRoute).where(
        PaymentRoute.status == RouteStatus.PENDING)) or 0


def approved_route(*, session: Session, organization_id: int,
                   provider: RouteProvider) -> PaymentRoute | None:
    """The route of ``provider`` in force for the organization, if any (token not opened)."""
    return _current(session, organization_id, provider, RouteStatus.APPROVED)


def approved_merchant_routes(*, session: Session, provider: str, secret_key: str | None = None
                             ) -> tuple[list[MerchantRoute], list[str]]:
    """Every merchant in force at ``provider`` (its approved routes, tokens opened), one per
    merchant id, and the merchant ids whose token does not open under ``secret_key``.

    For the daily reconciliation, which fetches Alipay's bill merchant by merchant.
    """
    try:
        chosen = RouteProvider(provider)
    except ValueError:
        return [], []
    routes = session.scalars(select(PaymentRoute).where(
        PaymentRoute.provider == chosen, PaymentRoute.status == RouteStatus.APPROVED)
        .order_by(PaymentRoute.merchant_id, PaymentRoute.id)).all()
    found: dict[str, MerchantRoute] = {}
    unreadable: list[str] = []
    key = secret_key or get_settings().secret_key
    for route in routes:
        if route.merchant_id in found or route.merchant_id in unreadable:
            continue
        try:
            token = open_token(secret_key=key, route=route)
        except PaymentRouteUnreadable:
            unreadable.append(route.merchant_id)
            continue
        found[route.merchant_id] = MerchantRoute(
            provider=chosen.value, merchant_id=route.merchant_id, sub_appid=route.sub_appid,
            auth_token=token)
    return list(found.values()), unreadable
