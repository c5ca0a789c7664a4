"""Complaints (举报) filed against organizations and projects, answered by reviewers."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class ComplaintStatus(enum.StrEnum):
    """Open until a reviewer answers it."""

    OPEN = "open"
    ANSWERED = "answered"


class Complaint(Base):
    """A report from the public; the platform must answer within 5 working days."""

    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    reporter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reporter_contact: Mapped[str | None] = mapped_column(String(120))
    category: Mapped[str] = mapped_column(String(40))
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[ComplaintStatus] = mapped_column(
        enum_column(ComplaintStatus), default=ComplaintStatus.OPEN, index=True
    )
    due_on: Mapped[dt.date]
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    answered_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
