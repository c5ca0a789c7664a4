"""Payment intents, provider events (callbacks) and refunds."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class IntentStatus(enum.StrEnum):
    """A payment intent's state; ``succeeded`` is reached at most once."""

    REQUIRES_PAYMENT = "requires_payment"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class PaymentIntent(Base):
    """The platform's request to collect ``amount_fen`` through a provider."""

    __tablename__ = "payment_intents"
    __table_args__ = (
        UniqueConstraint("idempotency_scope", "idempotency_key"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "pi_..."
    provider: Mapped[str] = mapped_column(String(20))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    status: Mapped[IntentStatus] = mapped_column(
        enum_column(IntentStatus), default=IntentStatus.REQUIRES_PAYMENT
    )
    # The client's Idempotency-Key, scoped to who sent it (a user id or "anon:<session>").
    idempotency_scope: Mapped[str] = mapped_column(String(60))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    request_hash: Mapped[str] = mapped_column(String(64))
    provider_txn_id: Mapped[str | None] = mapped_column(String(80), unique=True)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    succeeded_at: Mapped[dt.datetime | None]

    # --- the payment order (ADR 0028): what was asked of a real provider's gateway --------
    # Empty (NULL) on intents of the sandbox provider written before revision 0009.
    # The sub-merchant the money settles to: a snapshot of the organization's reviewed route
    # when the order was opened (a callback naming another merchant is refused).
    merchant_id: Mapped[str | None] = mapped_column(String(32))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    # The giving day the gift counts toward (credited through the group-commit engine).
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    # The provider's product (payments.gateway.Channel), e.g. "wechat_h5".
    channel: Mapped[str | None] = mapped_column(String(20))
    # The donor, or NULL for a guest; the gift's details as the donor asked at checkout.
    donor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    donor_name: Mapped[str] = mapped_column(String(60), default="")
    anonymous: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str] = mapped_column(String(200), default="")
    province: Mapped[str | None] = mapped_column(String(20))
    # A keyed hash of the provider's payer id (openid / buyer id), set when paid.
    payer_hash: Mapped[str] = mapped_column(String(32), default="")
    # A guest's phone or email for the receipt: sealed (AES-GCM) to send it, and a keyed hash
    # so that signing up later with it claims the gift. NULL when none was given.
    contact_sealed: Mapped[str | None] = mapped_column(String(400))
    contact_hash: Mapped[str | None] = mapped_column(String(32), index=True)
    # The provider closes the order after this; the sweep queries open orders past it.
    expires_at: Mapped[dt.datetime | None] = mapped_column(index=True)


class ProviderEvent(Base):
    """A verified callback from a provider, stored once per (provider, event id)."""

    __tablename__ = "provider_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(80))
    event_type: Mapped[str] = mapped_column(String(40))
    intent_id: Mapped[str | None] = mapped_column(ForeignKey("payment_intents.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RefundStatus(enum.StrEnum):
    """A refund is requested from the provider and confirmed by its callback."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Refund(Base):
    """Money returned to a donor for (part of) a succeeded payment intent."""

    __tablename__ = "refunds"
    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_positive"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "re_..."
    intent_id: Mapped[str] = mapped_column(ForeignKey("payment_intents.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[RefundStatus] = mapped_column(
        enum_column(RefundStatus), default=RefundStatus.PENDING
    )
    reason: Mapped[str] = mapped_column(String(200), default="")
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None]
    # The provider's own id of the refund (WeChat refund_id), once it answered.
    provider_refund_id: Mapped[str | None] = mapped_column(String(80))
