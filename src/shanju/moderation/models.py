"""Moderation of donors' messages: staff decisions and visitors' reports (docs/moderation.md).

A message is part of its gift (``donations.message`` or ``campaign_gifts.message``, read through
the ``gifts`` view); these tables never copy it and never change the gift. They are keyed by the
gift's public id (``d_…`` or a giving-day order's id), unique across both kinds of gift.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class Decision(enum.StrEnum):
    """What the organization (or a reviewer) decided about a message.

    hidden: shown nowhere (the gift stays); shown: published, even if the word list would hold
    it (a held message released, or a hidden one shown again). No row: the word list decides.
    """

    HIDDEN = "hidden"
    SHOWN = "shown"


class MessageDecision(Base):
    """The latest decision about one gift's message (each change is in the audit log too)."""

    __tablename__ = "gift_message_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    gift_id: Mapped[str] = mapped_column(String(40), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    decision: Mapped[Decision] = mapped_column(enum_column(Decision))
    reason: Mapped[str] = mapped_column(String(200), default="")
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReportReason(enum.StrEnum):
    """Why a visitor reports a message."""

    ABUSE = "abuse"  # insults, obscenity, hate
    ADVERTISING = "advertising"  # ads, scams, contact details to lure people
    PRIVACY = "privacy"  # someone's personal data
    OTHER = "other"


class Resolution(enum.StrEnum):
    """How a report was closed: the message was hidden, or staff kept it."""

    HIDDEN = "hidden"
    KEPT = "kept"


class MessageReport(Base):
    """One reporter's report of one message; a second report by the same reporter is the same
    row (``reporter_key``: ``u<user id>``, or a keyed hash of a visitor's address)."""

    __tablename__ = "gift_message_reports"
    __table_args__ = (
        UniqueConstraint("gift_id", "reporter_key", name="uq_gift_message_reports_reporter"),
        Index("ix_gift_message_reports_project_open", "project_id", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    gift_id: Mapped[str] = mapped_column(String(40), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    reporter_key: Mapped[str] = mapped_column(String(40))
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[ReportReason] = mapped_column(enum_column(ReportReason))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None]
    resolution: Mapped[Resolution | None] = mapped_column(enum_column(Resolution))
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
