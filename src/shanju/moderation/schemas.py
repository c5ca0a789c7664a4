"""Pydantic shapes of the moderation API (``/api/v1/gift-messages``)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from shanju.core.text import SingleLine
from shanju.moderation.models import ReportReason, Resolution
from shanju.moderation.service import MessageStatus


class ReportCreate(BaseModel):
    """Why a visitor reports a message."""

    reason: ReportReason


class ReportRead(BaseModel):
    """A report as its reporter sees it (a second report by the same reporter returns the
    first, with 200 instead of 201)."""

    id: int
    gift_id: str
    reason: ReportReason
    created_at: dt.datetime
    resolution: Resolution | None


class DecisionCreate(BaseModel):
    """Why staff hide (required) or show (optional) a message; kept in the audit log."""

    reason: SingleLine | None = Field(default=None, max_length=1000)


class MessageRead(BaseModel):
    """A message as the organization's staff review it."""

    gift_id: str
    project_id: int
    project_title: str
    donor: str = Field(description="The masked display name, or 爱心人士 for anonymous gifts.")
    amount_fen: int
    paid_at: dt.datetime | None
    message: str = Field(description="The message itself, whatever its status.")
    status: MessageStatus
    held_for: list[str] = Field(description="What the word list found: its terms, and "
                                            "'a mobile number', 'an ID card number', 'a link'.")
    reports: int = Field(description="Open reports.")
    reasons: dict[str, int] = Field(description="Open reports by reason.")
    hidden_reason: str


class ModerationQueue(BaseModel):
    """The organization's review queue."""

    reported: list[MessageRead]
    held: list[MessageRead]
    hidden: list[MessageRead]


class DecisionRead(BaseModel):
    """A message's status after a decision, and how many open reports it closed."""

    gift_id: str
    status: MessageStatus
    reports_closed: int
