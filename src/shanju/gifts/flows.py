"""The gift pipeline through a real provider's gateway (ADR 0028): order, intake, refund.

One gift, one payment order, whatever the kind:

* :func:`open_order` — a checkout becomes a payment order (the ``payment_intents`` row, whose
  id is the provider's ``out_trade_no``) written before the provider is asked; an ordinary
  gift also gets its pending :class:`~shanju.donations.models.Donation`. A retry with the same
  Idempotency-Key returns the same order, which the provider opens again unchanged.
  :func:`pay_request` is what the gateway is then asked, *after* the commit.
* :func:`apply_report` — the one exactly-once path: a verified
  :class:`~shanju.payments.gateway.PaymentReport` or
  :class:`~shanju.payments.gateway.RefundReport` (from a callback, an order query or the
  reconciliation) is stored once per ``(provider, event id)``, the order's row locked, its
  merchant and amount checked, and the order moved ``requires_payment → succeeded`` by a
  conditional update — one caller ever credits. An ordinary gift is credited here (donation
  paid, ledger); a giving-day gift is handed back as a
  :class:`~shanju.campaigns.engine.PaidGift` for the group-commit engine, which writes it, its
  match and its ledger entry in its batch and refuses a second gift for the same order.
* :func:`settle_by_query` / :func:`send_refund` — the provider calls that must not run inside
  a transaction: ask, then apply the verified answer in a transaction of its own.

None of the ``session`` functions commit: the caller's boundary does.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import User
from shanju.accounts.service import normalize_email
from shanju.campaigns import flows as campaign_flows
from shanju.campaigns.engine import PaidGift
from shanju.campaigns.models import CampaignGift
from shanju.core import audit
from shanju.core.clock import utcnow
from shanju.core.db import Database, flush_unless_duplicate
from shanju.core.errors import Conflict, InvalidInput
from shanju.core.ids import public_id
from shanju.core.security import constant_time_equal, derive_key, seal
from shanju.donations import flows as donations
from shanju.donations.models import Donation, DonationStatus
from shanju.organizations import payment_routes
from shanju.payments import service as payments
from shanju.payments.gateway import (
    Channel,
    Gateway,
    GatewayError,
    MerchantRoute,
    PaymentReport,
    PaymentState,
    PayRequest,
    RefundReport,
    RefundState,
)
from shanju.payments.models import IntentStatus, PaymentIntent, ProviderEvent, Refund
from shanju.projects.models import Project

log = structlog.get_logger(__name__)

# How long the donor has to pay an opened order; the provider closes it after.
ORDER_TTL = dt.timedelta(minutes=30)
# How long after it opened a failed order is still asked about (the donor may retry and pay).
FAILED_ORDER_WATCH = dt.timedelta(days=1)
NOTIFY_PATH = "/api/v1/payments/notify/{provider}"
# The provider's identifiers of the payer, dropped from the stored event (kept only hashed).
PAYER_FIELDS = frozenset({"payer", "buyer_id", "buyer_logon_id", "buyer_open_id",
                          "buyer_user_id", "openid", "sp_openid", "sub_openid"})
PayerHasher = Callable[[str], str]
# A provider's answers to a refund request that are final: the refund cannot happen.
REFUND_REFUSALS = frozenset({"payment_refund_exceeds", "payment_order_unknown",
                             "payment_order_conflict", "payment_provider_refused"})


# A guest's contact for the receipt: a mainland mobile number or an email address.
MOBILE_RE = re.compile(r"^1[3-9][0-9]{9}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MAX_CONTACT = 120


def check_contact(value: str | None) -> str | None:
    """A guest's phone (11 digits, spaces and dashes ignored) or email, normalized; or None."""
    text = (value or "").strip()
    if not text:
        return None
    phone = re.sub(r"[\s-]", "", text).removeprefix("+86")
    if MOBILE_RE.match(phone):
        return phone
    if len(text) <= MAX_CONTACT and EMAIL_RE.match(text):
        return text.lower()
    raise InvalidInput("Enter a mobile number (11 digits) or an email address for the receipt, "
                       "or leave it empty.", code="contact_invalid", field="contact")


def contact_hash(secret_key: str, contact: str) -> str:
    """The keyed hash that lets the owner of ``contact`` claim the gift after signing up."""
    key = derive_key(secret_key, "gifts.contact-hash")
    return hmac.digest(key, contact.encode(), "sha256").hex()[:32]


def seal_contact(secret_key: str, order_id: str, contact: str) -> str:
    """The contact, sealed for sending the receipt (never stored in the clear)."""
    return seal(derive_key(secret_key, "gifts.contact"), contact, context=f"order:{order_id}")


def order_key(secret_key: str, order_id: str) -> str:
    """The key in a guest's link to their order's page (whoever has the link may see it)."""
    key = derive_key(secret_key, "gifts.order-link")
    return hmac.digest(key, order_id.encode(), "sha256").hex()[:32]


def check_order_key(secret_key: str, order_id: str, key: str) -> bool:
    """Whether ``key`` opens ``order_id``'s page."""
    return bool(key) and constant_time_equal(order_key(secret_key, order_id), key)


@dataclass(frozen=True)
class GiftRequest:
    """What the donor asks at checkout; the idempotency fingerprint is computed from all of it."""

    project_id: int
    campaign_id: int | None
    amount_fen: int
    donor_name: str
    anonymous: bool
    message: str
    province: str | None
    channel: str


def provider_of(channel: Channel) -> str:
    """The provider whose product ``channel`` is."""
    return "wechatpay" if channel.value.startswith("wechat_") else "alipay"


def check_channel(value: object, *, gateways: Mapping[str, Gateway]) -> Channel:
    """The payment channel the donor chose, if a configured gateway offers it."""
    try:
        channel = Channel(str(value))
    except ValueError:
        channel = None
    if channel is None or not any(channel in g.channels for g in gateways.values()):
        raise InvalidInput("Choose how to pay: %(choices)s.", code="channel_unavailable",
                           field="channel", params={"choices": ", ".join(
                               c.value for g in gateways.values() for c in g.channels)})
    return channel


def pay_methods(*, session: Session, organization_id: int, gateways: Iterable[str],
                secret_key: str) -> list[str]:
    """The real providers a donor may pay this organization through: the installation's
    configured gateways at which it has an approved route, in the order they are offered."""
    configured = set(gateways)
    return [name for name in ("wechatpay", "alipay") if name in configured
            and payment_routes.merchant_route(session=session, organization_id=organization_id,
                                              provider=name, secret_key=secret_key) is not None]


def merchant_for(*, session: Session, organization_id: int, provider: str,
                 secret_key: str) -> MerchantRoute:
    """The organization's reviewed merchant route at ``provider``, or a clear refusal."""
    route = payment_routes.merchant_route(session=session, organization_id=organization_id,
                                          provider=provider, secret_key=secret_key)
    if route is None:
        raise Conflict("This organization cannot receive donations through this payment "
                       "method yet.", code="no_payment_route", params={"provider": provider})
    return route


def open_order(
    *,
    session: Session,
    actor: User | None,
    scope: str,
    request: GiftRequest,
    project: Project,
    route: MerchantRoute,
    idempotency_key: str,
    contact: str | None = None,
    secret_key: str = "",
) -> tuple[PaymentIntent, bool]:
    """Write the payment order (and an ordinary gift's pending donation); return
    ``(order, created)``. The same key and request return the first order (``created``
    False); the same key with another request is refused (``idempotency_key_reused``)."""
    fingerprint = payments.request_hash({**asdict(request), "contact": contact or ""})
    existing = payments.find_intent_for_key(session=session, scope=scope, key=idempotency_key)
    if existing is not None:
        payments.check_replay(intent=existing, fingerprint=fingerprint)
        return existing, False
    intent = PaymentIntent(
        id=public_id("pi"), provider=route.provider, amount_fen=request.amount_fen,
        idempotency_scope=scope, idempotency_key=idempotency_key, request_hash=fingerprint,
        merchant_id=route.merchant_id, organization_id=project.recipient_org_id,
        project_id=project.id, campaign_id=request.campaign_id, channel=request.channel,
        donor_id=actor.id if actor else None, donor_name=request.donor_name,
        anonymous=request.anonymous, message=request.message, province=request.province,
        expires_at=utcnow() + ORDER_TTL,
    )
    if contact:
        intent.contact_hash = contact_hash(secret_key, contact)
        intent.contact_sealed = seal_contact(secret_key, intent.id, contact)
    if not flush_unless_duplicate(session, intent):
        # A concurrent request with the same key won the race: replay it.
        winner = payments.find_intent_for_key(session=session, scope=scope, key=idempotency_key)
        if winner is None:  # pragma: no cover - the winner's row must be visible now
            raise Conflict("Please retry the donation.", code="retry")
        payments.check_replay(intent=winner, fingerprint=fingerprint)
        return winner, False
    if request.campaign_id is None:
        donation = Donation(
            public_id=public_id("d"), project_id=project.id,
            recipient_org_id=project.recipient_org_id, donor_id=intent.donor_id,
            donor_name=request.donor_name, anonymous=request.anonymous,
            message=request.message, province=request.province,
            amount_fen=request.amount_fen, payment_intent_id=intent.id, channel=request.channel,
        )
        session.add(donation)
        session.flush()
    audit.record(session, actor_id=intent.donor_id, action="payments.order.opened",
                 object_type="payment_intent", object_id=intent.id,
                 data={"new": {"project_id": project.id, "campaign_id": request.campaign_id,
                               "amount_fen": request.amount_fen, "provider": route.provider,
                               "merchant_id": route.merchant_id}})
    return intent, True


def pay_request(*, intent: PaymentIntent, route: MerchantRoute, project_title: str,
                base_url: str, return_url: str, client_ip: str,
                openid: str | None = None) -> PayRequest:
    """What the gateway is asked for this order (after the order's transaction committed)."""
    description = f"善举 · {project_title}"
    while len(description.encode()) > 127:
        description = description[:-1]
    return PayRequest(
        out_trade_no=intent.id, amount_fen=intent.amount_fen, description=description,
        merchant=route, channel=Channel(intent.channel or ""),
        notify_url=base_url.rstrip("/") + NOTIFY_PATH.format(provider=intent.provider),
        expires_at=intent.expires_at or utcnow() + ORDER_TTL, return_url=return_url,
        client_ip=client_ip, openid=openid,
    )


# --- the intake ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """What the intake did with one verified report.

    ``outcome``: ``credited`` (an ordinary gift paid now), ``to_engine`` (a giving-day order
    paid now: ``gift`` goes to the engine), ``duplicate`` (this event was applied before),
    ``already_applied`` (another event paid the order first), ``amount_mismatch``,
    ``wrong_merchant``, ``wrong_provider``, ``unknown_order``, ``duplicate_transaction``,
    ``not_paid``, ``failed`` (closed unpaid), ``refunded``, ``refund_failed``,
    ``refund_processing``, ``unknown_refund``. Only the mismatches are *trouble*: recorded,
    credited nothing, shown to reviewers by the reconciliation.
    """

    outcome: str
    order_id: str
    gift: PaidGift | None = None


TROUBLE = frozenset({"amount_mismatch", "wrong_merchant", "wrong_provider", "unknown_order",
                     "duplicate_transaction", "unknown_refund"})


def scrub(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A notification's resource as stored: without the payer's identifiers."""
    return {k: v for k, v in raw.items() if k not in PAYER_FIELDS}


def event_of(report: PaymentReport | RefundReport) -> tuple[str, str]:
    """The report's ``(event id, event type)`` as ``provider_events`` stores them."""
    if isinstance(report, PaymentReport):
        kind = f"payment.{report.state.value}"
        ref = report.out_trade_no
    else:
        kind = f"refund.{report.state.value}"
        ref = report.out_refund_no
    # A query's answer has no event id: one per (order or refund, state) — applying the same
    # answer twice changes nothing either way.
    return report.event_id or f"query:{ref}:{report.state.value}", kind


def apply_report(*, session: Session, report: PaymentReport | RefundReport,
                 hash_payer: PayerHasher) -> Applied:
    """Apply a verified report exactly once (see the module's doc)."""
    order_id = report.out_trade_no
    # Locking protocol (docs/locking.md): the order's row first, then the event.
    intent = payments.lock_intent(session=session, intent_id=order_id)
    event_id, kind = event_of(report)
    event = ProviderEvent(provider=report.provider, event_id=event_id[:80], event_type=kind,
                          intent_id=intent.id if intent else None,
                          payload=scrub(report.raw), outcome="received")
    if not flush_unless_duplicate(session, event):
        return _again(intent, order_id)
    if intent is None:
        outcome = Applied("unknown_order", order_id)
    elif intent.provider != report.provider:
        outcome = Applied("wrong_provider", order_id)
    elif isinstance(report, PaymentReport):
        outcome = _apply_payment(session, intent, report, hash_payer=hash_payer)
    else:
        outcome = _apply_refund(session, intent, report)
    event.outcome = outcome.outcome
    session.flush()
    if outcome.outcome in TROUBLE:
        log.warning("payments.report.refused", order_id=order_id, outcome=outcome.outcome,
                    provider=report.provider, event_id=event_id)
    return outcome


def _again(intent: PaymentIntent | None, order_id: str) -> Applied:
    """A notification seen before. A paid giving-day order is handed to the engine again:
    if the first hand-over never became a gift (the engine failed, the process died), this
    one does; if it did, the engine answers ``duplicate``."""
    if (intent is not None and intent.campaign_id is not None
            and intent.status == IntentStatus.SUCCEEDED):
        return Applied("duplicate", order_id, gift=paid_gift(intent))
    return Applied("duplicate", order_id)


def _apply_payment(session: Session, intent: PaymentIntent, report: PaymentReport, *,
                   hash_payer: PayerHasher) -> Applied:
    order_id = intent.id
    if report.merchant_id != intent.merchant_id:
        return Applied("wrong_merchant", order_id)
    if report.amount_fen != intent.amount_fen:
        return Applied("amount_mismatch", order_id)
    if report.state in (PaymentState.NOT_PAID,):
        return Applied("not_paid", order_id)
    if report.state == PaymentState.CLOSED:
        if payments.do_mark_failed(session=session, intent=intent):
            donation = donations.donation_paid_by(session, intent.id)
            if donation is not None and donation.status == DonationStatus.PENDING:
                donation.status = DonationStatus.FAILED
            return Applied("failed", order_id)
        return Applied("already_applied", order_id)
    # PAID, or REFUNDED (paid, then refunded: the payment happened all the same).
    try:
        changed = payments.do_mark_succeeded(
            session=session, intent=intent, provider_txn_id=report.provider_txn_id,
            payer_hash=hash_payer(report.payer_id) if report.payer_id else "",
            paid_at=report.paid_at)
    except payments.TransactionIdTaken:
        return Applied("duplicate_transaction", order_id)
    if not changed:
        if intent.campaign_id is not None:
            return Applied("already_applied", order_id, gift=paid_gift(intent))
        return Applied("already_applied", order_id)
    if intent.campaign_id is not None:
        return Applied("to_engine", order_id, gift=paid_gift(intent))
    donation = donations.donation_paid_by(session, intent.id)
    if donation is None:  # pragma: no cover - an ordinary order always has its donation
        return Applied("unknown_order", order_id)
    donations.credit_donation(session=session, donation=donation, provider=intent.provider)
    return Applied("credited", order_id)


def paid_gift(intent: PaymentIntent) -> PaidGift:
    """The engine's input for a paid giving-day order."""
    if intent.campaign_id is None or intent.project_id is None:  # pragma: no cover
        raise ValueError(f"{intent.id} is not a giving-day order")
    return PaidGift(
        order_id=intent.id, campaign_id=intent.campaign_id, project_id=intent.project_id,
        donor_id=intent.donor_id, donor_name=intent.donor_name, anonymous=intent.anonymous,
        message=intent.message, province=intent.province, amount_fen=intent.amount_fen,
        provider=intent.provider, provider_txn_id=intent.provider_txn_id or "",
        payer_hash=intent.payer_hash, device_hash="",
        paid_at=intent.succeeded_at or utcnow(),
    )


def _apply_refund(session: Session, intent: PaymentIntent, report: RefundReport) -> Applied:
    order_id = intent.id
    refund = session.get(Refund, report.out_refund_no)
    if refund is None or refund.intent_id != intent.id:
        return Applied("unknown_refund", order_id)
    if report.merchant_id and report.merchant_id != intent.merchant_id:
        return Applied("wrong_merchant", order_id)
    if report.amount_fen is not None and report.amount_fen != refund.amount_fen:
        return Applied("amount_mismatch", order_id)
    if report.provider_refund_id and not refund.provider_refund_id:
        refund.provider_refund_id = report.provider_refund_id
    if report.state == RefundState.PROCESSING:
        return Applied("refund_processing", order_id)
    succeeded = report.state == RefundState.SUCCEEDED
    if intent.campaign_id is not None:
        return Applied(campaign_flows.settle_gift_refund(
            session=session, order=intent, refund=refund, succeeded=succeeded), order_id)
    donation = donations.donation_paid_by(session, intent.id)
    if donation is None:  # pragma: no cover - an ordinary order always has its donation
        return Applied("unknown_refund", order_id)
    outcome = donations.settle_refund(session=session, intent=intent, donation=donation,
                                      refund=refund,
                                      succeeded=succeeded)
    return Applied(outcome, order_id)


# --- provider calls outside transactions ----------------------------------------------------


def order_merchant(*, session: Session, intent: PaymentIntent, secret_key: str
                   ) -> MerchantRoute:
    """The merchant an order's money went to (its snapshot), with the route's credentials."""
    route = payment_routes.merchant_route(
        session=session, organization_id=intent.organization_id or 0,
        provider=intent.provider, secret_key=secret_key)
    if route is not None and route.merchant_id == intent.merchant_id:
        return route
    # The route changed since: the order's own merchant id (WeChat Pay needs no more).
    return MerchantRoute(provider=intent.provider, merchant_id=intent.merchant_id or "")


def gift_unwritten(*, session: Session, intent: PaymentIntent) -> bool:
    """True for a paid giving-day order whose gift the engine has not written (its hand-over
    failed): it must be handed over again."""
    return (intent.campaign_id is not None and intent.status == IntentStatus.SUCCEEDED
            and session.scalar(select(CampaignGift.id)
                               .where(CampaignGift.order_id == intent.id)) is None)


def settle_by_query(*, database: Database, gateway: Gateway, intent_id: str,
                    secret_key: str, hash_payer: PayerHasher) -> Applied | None:
    """Ask the provider about an open order (its callback never came, or the donor is back
    first) and apply the answer; None if the order is not open or the provider knows it not.
    A paid giving-day order whose gift is not written yet is handed back (``gift``) without
    asking the provider.

    Raises GatewayError when the provider cannot be asked now.
    """
    with database.transaction(write=False) as session:
        intent = payments.get_intent(session=session, intent_id=intent_id)
        if gift_unwritten(session=session, intent=intent):
            # Paid, but its hand-over to the engine failed; when the payment was found by
            # this query (the callback lost) no provider will retry: hand it over again.
            return Applied("already_applied", intent_id, gift=paid_gift(intent))
        if (intent.status not in (IntentStatus.REQUIRES_PAYMENT, IntentStatus.FAILED)
                or intent.merchant_id is None):
            return None
        merchant = order_merchant(session=session, intent=intent, secret_key=secret_key)
    report = gateway.query_payment(out_trade_no=intent_id, merchant=merchant)
    if report is None:
        return None
    with database.transaction() as session:
        return apply_report(session=session, report=report, hash_payer=hash_payer)


def send_refund(*, database: Database, gateway: Gateway, refund_id: str, secret_key: str,
                base_url: str, hash_payer: PayerHasher) -> Applied | None:
    """Ask the provider to return a pending refund's money (after the transaction that
    reserved it committed) and apply its answer. If the provider cannot be reached the refund
    stays pending: :func:`settle_refund_by_query` (or the next try) settles it."""
    with database.transaction(write=False) as session:
        refund = session.get(Refund, refund_id)
        if refund is None or refund.status.value != "pending":
            return None
        intent = payments.get_intent(session=session, intent_id=refund.intent_id)
        merchant = order_merchant(session=session, intent=intent, secret_key=secret_key)
        amount, total, reason = refund.amount_fen, intent.amount_fen, refund.reason
        provider, order_id = intent.provider, intent.id
    try:
        report = gateway.refund(
            out_refund_no=refund_id, out_trade_no=order_id, amount_fen=amount,
            total_fen=total, merchant=merchant, reason=reason,
            notify_url=base_url.rstrip("/") + NOTIFY_PATH.format(provider=provider))
    except GatewayError as exc:
        log.warning("payments.refund.not_sent", refund_id=refund_id, code=exc.code,
                    retryable=exc.retryable)
        if exc.code not in REFUND_REFUSALS:
            # Unreachable, busy, or our own configuration: the refund stays pending for the
            # next try (a retryable error) or for an operator (a refused credential).
            if exc.retryable:
                return None
            raise
        # The provider's signed, final "no" (the order cannot be refunded): the refund failed,
        # and its reserved money goes back to the project fund — through the one path.
        report = RefundReport(
            provider=provider, out_refund_no=refund_id, out_trade_no=order_id,
            state=RefundState.FAILED, amount_fen=amount, merchant_id=merchant.merchant_id,
            event_id=f"refused:{refund_id}", raw={"refused": exc.code, **exc.params})
    with database.transaction() as session:
        return apply_report(session=session, report=report, hash_payer=hash_payer)


def settle_refund_by_query(*, database: Database, gateway: Gateway, refund_id: str,
                           secret_key: str, hash_payer: PayerHasher) -> Applied | None:
    """Ask the provider about a pending refund (its callback was lost) and apply the answer."""
    with database.transaction(write=False) as session:
        refund = session.get(Refund, refund_id)
        if refund is None or refund.status.value != "pending":
            return None
        intent = payments.get_intent(session=session, intent_id=refund.intent_id)
        merchant = order_merchant(session=session, intent=intent, secret_key=secret_key)
        order_id = intent.id
    report = gateway.query_refund(out_refund_no=refund_id, out_trade_no=order_id,
                                  merchant=merchant)
    if report is None:
        return None
    with database.transaction() as session:
        return apply_report(session=session, report=report, hash_payer=hash_payer)


def open_orders(*, session: Session, older_than: dt.datetime, limit: int = 500) -> list[str]:
    """Gateway orders opened before ``older_than`` that still need a look: waiting for
    payment (to query), or paid on a giving day with no gift written (to hand to the engine
    again — see :func:`gift_unwritten`)."""
    unwritten = (
        (PaymentIntent.status == IntentStatus.SUCCEEDED)
        & PaymentIntent.campaign_id.is_not(None)
        & ~select(CampaignGift.id).where(CampaignGift.order_id == PaymentIntent.id).exists())
    # A failed payment (WeChat Pay PAYERROR) may still be paid by the donor retrying on the
    # provider's page: asked about for a day after the order opened.
    retried = ((PaymentIntent.status == IntentStatus.FAILED)
               & (PaymentIntent.created_at >= older_than - FAILED_ORDER_WATCH))
    return list(session.scalars(
        select(PaymentIntent.id)
        .where((PaymentIntent.status == IntentStatus.REQUIRES_PAYMENT) | unwritten | retried,
               PaymentIntent.merchant_id.is_not(None),
               PaymentIntent.created_at < older_than)
        .order_by(PaymentIntent.created_at).limit(limit)))


def pending_refunds(*, session: Session, older_than: dt.datetime, limit: int = 500
                    ) -> list[str]:
    """Gateway refunds still waiting for the provider's word, requested before ``older_than``."""
    return list(session.scalars(
        select(Refund.id).join(PaymentIntent, PaymentIntent.id == Refund.intent_id)
        .where(Refund.status == "pending", PaymentIntent.merchant_id.is_not(None),
               Refund.created_at < older_than)
        .order_by(Refund.created_at).limit(limit)))


def do_claim_guest_gifts(*, session: Session, user: User, secret_key: str) -> int:
    """Give ``user`` the guest gifts made with their (confirmed) email address; how many.

    Called when a sign-up or a change of email is confirmed: the address is then proven to
    be theirs.
    """
    if user.email is None:  # an account with only a phone: no address to claim with
        return 0
    hashed = contact_hash(secret_key, normalize_email(user.email))
    orders = list(session.scalars(select(PaymentIntent.id).where(
        PaymentIntent.contact_hash == hashed, PaymentIntent.donor_id.is_(None))))
    if not orders:
        return 0
    for model, column in ((PaymentIntent, PaymentIntent.id),
                          (Donation, Donation.payment_intent_id),
                          (CampaignGift, CampaignGift.order_id)):
        session.execute(update(model).where(column.in_(orders), model.donor_id.is_(None))
                        .values(donor_id=user.id).execution_options(synchronize_session=False))
    audit.record(session, actor_id=user.id, action="gifts.guest_gifts.claimed",
                 object_type="user", object_id=str(user.id), data={"new": {"orders": orders}})
    return len(orders)
