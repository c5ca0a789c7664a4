"""Donations: a donor's gift to a project, in integer fen."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class DonationStatus(enum.StrEnum):
    """pending → paid → refunded; pending → failed when the payment fails."""

    PENDING = "pending"
    PAID = "paid"
    REFUNDED = "refunded"
    FAILED = "failed"


class Donation(Base):
    """A gift to a project; it counts toward totals only once paid."""

    __tablename__ = "donations"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        Index("ix_donations_project_status_paid", "project_id", "status", "paid_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)  # "d_..."
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    recipient_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    donor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    donor_name: Mapped[str] = mapped_column(String(60))  # as the donor wants it shown
    anonymous: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str] = mapped_column(String(200), default="")
    province: Mapped[str | None] = mapped_column(String(20), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[DonationStatus] = mapped_column(
        enum_column(DonationStatus), default=DonationStatus.PENDING
    )
    payment_intent_id: Mapped[str] = mapped_column(
        ForeignKey("payment_intents.id"), unique=True
    )
    channel: Mapped[str] = mapped_column(String(20), default="web")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[dt.datetime | None]
    refunded_at: Mapped[dt.datetime | None]
