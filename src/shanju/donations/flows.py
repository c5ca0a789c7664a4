"""Donation flows: the work that crosses donations, payments, projects and the ledger.

* :func:`start_donation` — a donor's request becomes a pending donation and a payment intent,
  idempotently (the same Idempotency-Key and body return the first donation).
* :func:`receive_callback` — a provider's callback is verified, stored once, and applied:
  a succeeded payment marks the donation paid and credits the project fund through the ledger,
  all in one transaction, exactly once.
* :func:`request_refund` — money goes back to the donor through the provider.

None of these commit: the caller's boundary (a request, a CLI command, a test) does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.core import audit, regions
from shanju.core.clock import today_cn, utcnow
from shanju.core.db import Database
from shanju.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shanju.core.events import on_commit
from shanju.core.ids import public_id
from shanju.core.money import check_amount_fen
from shanju.core.text import check_text
from shanju.donations.models import Donation, DonationStatus
from shanju.ledger import service as ledger
from shanju.payments import service as payments
from shanju.payments.gateway import Gateway
from shanju.payments.models import (
    IntentStatus,
    PaymentIntent,
    ProviderEvent,
    Refund,
    RefundStatus,
)
from shanju.payments.providers import Notification, PaymentProvider, Providers, SandboxProvider
from shanju.projects import goals
from shanju.projects import service as projects
from shanju.projects.models import Project

log = structlog.get_logger(__name__)
MAX_MESSAGE = 200
MAX_NAME = 60
# The name shown for a guest who gives none (masked in public like every name).
GUEST_NAME = "爱心人士"


@dataclass(frozen=True)
class DonationRequest:
    """What a donor asks for; the idempotency fingerprint is computed from all of it."""

    project_id: int
    amount_fen: int
    donor_name: str
    anonymous: bool
    message: str
    province: str | None


def check_donation_request(
    *,
    session: Session,
    actor: User | None,
    project_id: int,
    amount_fen: object,
    donor_name: str | None,
    anonymous: bool,
    message: str | None,
    province: str | None,
    confirm_past_goal: bool = False,
) -> tuple[DonationRequest, Project]:
    """Validate a donation request; every problem gets a specific message and code.

    A project past its goal takes the gift only when the donor confirmed they were told
    (``confirm_past_goal``); one that stopped at its goal takes none (``projects/goals.py``).
    """
    amount = check_amount_fen(amount_fen, field="amount")
    name = check_text(donor_name, field="donor_name", max_length=MAX_NAME,
                      code="donor_name_too_long",
                      message="The name to show can have at most 60 characters."
                      ) or (actor.display_name if actor else GUEST_NAME)
    text = check_text(message, field="message", max_length=MAX_MESSAGE, multiline=True,
                      code="message_too_long",
                      message="The message can have at most 200 characters.")
    where = regions.check_province(province)
    project = projects.get_project(session=session, project_id=project_id)
    projects.check_accepts_donations(project=project, on=today_cn())
    goals.check_goal_allows_gift(session=session, project=project,
                                 confirm_past_goal=confirm_past_goal)
    request = DonationRequest(
        project_id=project.id,
        amount_fen=amount,
        donor_name=name,
        anonymous=bool(anonymous),
        message=text,
        province=where or (actor.province if actor else None),
    )
    return request, project


def start_donation(
    *,
    session: Session,
    actor: User,
    request: DonationRequest,
    project: Project,
    provider: PaymentProvider,
    idempotency_key: str,
    channel: str = "web",
) -> tuple[Donation, bool]:
    """Create a pending donation and its payment intent; return (donation, created).

    A retry with the same key and the same request returns the first donation
    (``created`` False); the same key with a different request is refused.
    """
    scope = f"user:{actor.id}"
    fingerprint = payments.request_hash(asdict(request))
    existing = payments.find_intent_for_key(session=session, scope=scope, key=idempotency_key)
    if existing is None:
        intent = payments.do_create_intent(
            session=session, provider=provider.name, amount_fen=request.amount_fen,
            scope=scope, key=idempotency_key, fingerprint=fingerprint,
        )
        if intent is not None:
            donation = Donation(
                public_id=public_id("d"),
                project_id=project.id,
                recipient_org_id=project.recipient_org_id,
                donor_id=actor.id,
                donor_name=request.donor_name,
                anonymous=request.anonymous,
                message=request.message,
                province=request.province,
                amount_fen=request.amount_fen,
                payment_intent_id=intent.id,
                channel=channel,
            )
            session.add(donation)
            session.flush()
            audit.record(
                session, actor_id=actor.id, action="donations.donation.created",
                object_type="donation", object_id=donation.public_id,
                data={"new": {"project_id": project.id, "amount_fen": request.amount_fen,
                              "intent": intent.id}},
            )
            return donation, True
        # A concurrent request with the same key won the race: fall through to replay it.
        existing = payments.find_intent_for_key(
            session=session, scope=scope, key=idempotency_key
        )
        if existing is None:  # pragma: no cover - the winner's row must be visible now
            raise Conflict("Please retry the donation.", code="retry")
    payments.check_replay(intent=existing, fingerprint=fingerprint)
    first = donation_paid_by(session, existing.id)
    if first is None:  # pragma: no cover - intents for donations always have one
        raise NotFound("There is no such donation.", code="donation_not_found")
    return first, False


def receive_callback(
    *,
    session: Session,
    providers: Providers,
    provider_name: str,
    body: bytes,
    headers: Mapping[str, str],
) -> str:
    """Verify a provider callback and apply it; return what happened (for the log/answer).

    Raises :class:`~shanju.payments.providers.InvalidSignature` (nothing is stored) when the
    callback cannot be trusted.
    """
    provider = providers.get(provider_name)
    note = provider.verify(body=body, headers=headers)
    return apply_notification(session=session, note=note)


def apply_notification(*, session: Session, note: Notification) -> str:
    """Apply a verified notification exactly once; duplicates and stale events change nothing."""
    # Locking protocol: lock the intent's row first (PostgreSQL; SQLite's writer already holds
    # the database lock), so every callback for one payment is applied one after the other.
    # Without it, two callbacks could each take a key-share lock (foreign key check) and then
    # both wait to update the row: a deadlock.
    payments.lock_intent(session=session, intent_id=note.intent_id)
    event = payments.do_record_event(session=session, note=note)
    if event is None:
        return "duplicate"
    outcome = _apply(session=session, note=note, event=event)
    event.outcome = outcome
    session.flush()
    return outcome


def _apply(*, session: Session, note: Notification, event: ProviderEvent) -> str:
    intent = session.get(PaymentIntent, note.intent_id)
    if intent is None or intent.provider != note.provider:
        return "unknown_intent"
    event.intent_id = intent.id
    donation = donation_paid_by(session, intent.id)
    if donation is None:  # pragma: no cover - every intent belongs to a donation
        return "unknown_intent"

    if note.event_type == "payment.succeeded":
        if note.amount_fen != intent.amount_fen:
            return "amount_mismatch"
        try:
            changed = payments.do_mark_succeeded(
                session=session, intent=intent, provider_txn_id=note.provider_txn_id)
        except payments.TransactionIdTaken:
            # The provider says it was paid by a transaction already credited to another
            # payment: a provider's error (or a replay dressed as a new payment). Recorded
            # with its outcome and answered, credited nothing; an operator investigates.
            log.warning("payments.callback.duplicate_transaction", intent_id=intent.id,
                        event_id=note.event_id, provider_txn_id=note.provider_txn_id)
            return "duplicate_transaction"
        if not changed:
            return "already_applied"
        credit_donation(session=session, donation=donation, provider=intent.provider)
        return "credited"

    if note.event_type == "payment.failed":
        if not payments.do_mark_failed(session=session, intent=intent):
            return "ignored_stale"
        if donation.status == DonationStatus.PENDING:
            donation.status = DonationStatus.FAILED
            audit.record(
                session, actor_id=None, action="donations.donation.failed",
                object_type="donation", object_id=donation.public_id,
            )
        return "failed"

    # refund.succeeded / refund.failed
    refund = session.get(Refund, note.refund_id) if note.refund_id else None
    if refund is None or refund.intent_id != intent.id:
        return "unknown_refund"
    if note.amount_fen != refund.amount_fen:
        return "amount_mismatch"
    return settle_refund(session=session, intent=intent, donation=donation, refund=refund,
                         succeeded=note.event_type == "refund.succeeded")


def settle_refund(*, session: Session, intent: PaymentIntent, donation: Donation,
                  refund: Refund, succeeded: bool) -> str:
    """Apply the provider's final word on a refund exactly once: the reserved money goes to the
    donor (succeeded) or back to the project fund (failed). Returns the outcome."""
    if not payments.do_settle_refund(session=session, refund=refund, succeeded=succeeded):
        return "already_applied"
    if succeeded:
        ledger.post(session, ledger.transfer(
            "donation.refunded", source=ledger.REFUNDS,
            destination=ledger.donor_clearing(intent.provider), amount_fen=refund.amount_fen,
            dedupe_key=f"refund.succeeded:{refund.id}", memo=donation.public_id,
            detail=refund_log_detail(refund.id, donation),
        ))
        # Wholly refunded once the succeeded refunds add up to the payment: the intent's
        # ``refunded_fen`` also holds refunds still pending, any of which may yet fail.
        returned = session.scalar(
            select(func.coalesce(func.sum(Refund.amount_fen), 0))
            .where(Refund.intent_id == intent.id, Refund.status == RefundStatus.SUCCEEDED))
        if (returned or 0) >= intent.amount_fen and donation.status == DonationStatus.PAID:
            donation.status = DonationStatus.REFUNDED
            donation.refunded_at = utcnow()
        audit.record(
            session, actor_id=None, action="donations.donation.refunded",
            object_type="donation", object_id=donation.public_id,
            data={"new": {"refund": refund.id, "amount_fen": refund.amount_fen}},
        )
        return "refunded"
    ledger.post(session, ledger.transfer(
        "donation.refund_failed", source=ledger.REFUNDS,
        destination=ledger.project_fund(donation.project_id), amount_fen=refund.amount_fen,
        dedupe_key=f"refund.failed:{refund.id}", memo=donation.public_id,
        detail=refund_log_detail(refund.id, donation),
    ))
    return "refund_failed"


def donation_log_detail(donation: Donation) -> ledger.LogDetail:
    """What the transparency log says about a donation's credit: its ref, the donor's
    commitment (opened on the donor's receipt), the project and the receiving organization."""
    return ledger.LogDetail(
        ref=f"donation:{donation.public_id}",
        donor=None if donation.donor_id is None else f"user:{donation.donor_id}",
        public={"project": donation.project_id, "organization": donation.recipient_org_id},
    )


def refund_log_detail(refund_id: str, donation: Donation) -> ledger.LogDetail:
    """The log's view of a refund's movements: its ref and the donation and project."""
    return ledger.LogDetail(
        ref=f"refund:{refund_id}",
        public={"project": donation.project_id, "donation": donation.public_id},
    )


def credit_donation(*, session: Session, donation: Donation, provider: str) -> None:
    """Mark the donation paid and move its money into the project fund (same transaction)."""
    donation.status = DonationStatus.PAID
    donation.paid_at = utcnow()
    ledger.post(session, ledger.transfer(
        "donation.paid",
        source=ledger.donor_clearing(provider),
        destination=ledger.project_fund(donation.project_id),
        amount_fen=donation.amount_fen,
        dedupe_key=f"donation.paid:{donation.public_id}",
        memo=donation.public_id,
        detail=donation_log_detail(donation),
    ))
    audit.record(
        session, actor_id=None, action="donations.donation.paid", object_type="donation",
        object_id=donation.public_id, data={"new": {"amount_fen": donation.amount_fen}},
    )


def check_can_refund(*, actor: User, donation: Donation) -> None:
    """Refuse all but reviewers and the receiving organization's staff."""
    if actor.role in (Role.REVIEWER, Role.ADMIN):
        return
    if actor.role == Role.ORG_STAFF and actor.organization_id == donation.recipient_org_id:
        return
    raise PermissionDenied(
        "Only the receiving organization or a platform reviewer may refund a donation.",
        code="refund_not_allowed",
    )


def request_refund(
    *,
    session: Session,
    actor: User,
    donation: Donation,
    providers: Providers,
    amount_fen: int | None = None,
    reason: str,
) -> Refund:
    """Reserve the money for a refund and ask the provider to return it (after commit)."""
    check_can_refund(actor=actor, donation=donation)
    if donation.status != DonationStatus.PAID:
        raise Conflict("Only a paid donation can be refunded.", code="not_refundable")
    reason = reason.strip()
    if not reason:
        raise InvalidInput("Give a reason for the refund.", code="reason_required",
                           field="reason")
    intent = payments.get_intent(session=session, intent_id=donation.payment_intent_id)
    amount = check_amount_fen(
        amount_fen if amount_fen is not None else intent.amount_fen - intent.refunded_fen,
        field="amount",
    )
    payments.check_refundable(intent=intent, amount_fen=amount)
    refund = payments.do_create_refund(
        session=session, intent=intent, amount_fen=amount, reason=reason, actor_id=actor.id
    )
    # Refused (InsufficientFunds) if the project has already used the money.
    ledger.post(session, ledger.transfer(
        "donation.refund_requested", source=ledger.project_fund(donation.project_id),
        destination=ledger.REFUNDS, amount_fen=amount,
        dedupe_key=f"refund.requested:{refund.id}", memo=donation.public_id,
        actor_id=actor.id, no_overdraft_source=True,
        detail=refund_log_detail(refund.id, donation),
    ))
    audit.record(
        session, actor_id=actor.id, action="donations.refund.requested", object_type="donation",
        object_id=donation.public_id,
        data={"new": {"refund": refund.id, "amount_fen": amount, "reason": reason}},
    )
    if intent.merchant_id is None:
        # The sandbox: it answers through its callback, after the commit. A real provider's
        # gateway is asked by the caller after the commit (gifts.flows.send_refund).
        provider = providers.get(intent.provider)
        refund_id, intent_id = refund.id, intent.id
        on_commit(session, lambda: provider.request_refund(
            refund_id=refund_id, intent_id=intent_id, amount_fen=amount))
    return refund


def get_donation(*, session: Session, public_id: str) -> Donation:
    """Return a donation by its public id, or 404."""
    donation = session.scalar(select(Donation).where(Donation.public_id == public_id))
    if donation is None:
        raise NotFound("There is no such donation.", code="donation_not_found")
    return donation


def check_can_view(*, actor: User | None, donation: Donation) -> None:
    """Refuse all but the donor, the receiving organization and reviewers (NotFound)."""
    if actor is not None and (
        actor.id == donation.donor_id
        or actor.role in (Role.REVIEWER, Role.ADMIN)
        or (actor.role == Role.ORG_STAFF and actor.organization_id == donation.recipient_org_id)
    ):
        return
    raise NotFound("There is no such donation.", code="donation_not_found")


def intent_status(*, session: Session, donation: Donation) -> IntentStatus:
    """Return the payment state behind a donation."""
    return payments.get_intent(session=session, intent_id=donation.payment_intent_id).status


def build_providers(*, sandbox_secret: str | None, database: Database,
                    gateways: Mapping[str, Gateway] = MappingProxyType({})) -> Providers:
    """Return the installation's payment providers, with the sandbox's callbacks wired to
    :func:`receive_callback` in a transaction of their own — as if they came over HTTP —
    and the real ``gateways`` (``payments.registry.read_gateways``) beside it.

    ``sandbox_secret=None``: no sandbox (always so in production), and no callback names
    "sandbox".
    """
    if sandbox_secret is None:
        return Providers(gateways=gateways)
    sandbox = SandboxProvider(sandbox_secret)
    providers = Providers(sandbox, gateways=gateways)

    def deliver(provider_name: str, body: bytes, headers: dict[str, str]) -> None:
        with database.transaction() as session:
            outcome = receive_callback(
                session=session, providers=providers, provider_name=provider_name,
                body=body, headers=headers,
            )
        log.info("sandbox callback delivered", provider=provider_name, outcome=outcome)

    sandbox.deliver = deliver
    return providers


def donation_paid_by(session: Session, intent_id: str) -> Donation | None:
    """The donation an intent pays for, if any (a giving-day order has none)."""
    return session.scalar(select(Donation).where(Donation.payment_intent_id == intent_id))


def donation_for_intent(*, session: Session, intent_id: str) -> Donation:
    """Return the donation a payment intent pays for (NotFound if none)."""
    donation = donation_paid_by(session, intent_id)
    if donation is None:
        raise NotFound("No such payment.", code="payment_not_found")
    return donation


@dataclass(frozen=True)
class SandboxCheckout:
    """A payment the donor may complete on the sandbox cashier."""

    intent: PaymentIntent
    donation: Donation
    provider: SandboxProvider

    @property
    def finished(self) -> bool:
        """Whether the payment already left ``requires_payment``."""
        return self.intent.status != IntentStatus.REQUIRES_PAYMENT


def check_sandbox_checkout(
    *, session: Session, actor: User, providers: Providers, intent_id: str
) -> SandboxCheckout:
    """Return the donor's own sandbox payment, or a 404/403/409 that says why not."""
    intent = payments.get_intent(session=session, intent_id=intent_id)
    donation = donation_for_intent(session=session, intent_id=intent.id)
    if donation.donor_id != actor.id:
        raise PermissionDenied("This is not your payment.", code="not_your_payment")
    provider = providers.get(intent.provider)
    if not isinstance(provider, SandboxProvider):
        raise Conflict("Only sandbox payments can be completed here.", code="not_sandbox")
    return SandboxCheckout(intent=intent, donation=donation, provider=provider)
