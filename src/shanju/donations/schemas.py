"""Donation API shapes. Amounts are integer fen."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import annotated_types
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictInt

from shanju.core.db import MAX_ID
from shanju.core.text import MultiLine, SingleLine
from shanju.donations.models import DonationStatus
from shanju.payments.models import RefundStatus


class DonationCreate(BaseModel):
    """A donor's request to give to a project."""

    model_config = ConfigDict(extra="forbid")

    project_id: Annotated[StrictInt, annotated_types.Interval(ge=1, le=MAX_ID)]
    # Validated by the service (so an amount ≤ 0 or a non-integer gets its own error code).
    amount_fen: object = Field(description="Integer fen, > 0 (1 yuan = 100 fen)",
                               json_schema_extra={"type": "integer", "minimum": 1})
    # Lengths are checked by the service (each with its own error code); characters here.
    donor_name: SingleLine | None = Field(default=None, max_length=1000,
                                          description="Name to show; default: yours")
    anonymous: bool = False
    message: MultiLine | None = Field(default=None, max_length=2000)
    province: SingleLine | None = Field(
        default=None, max_length=20,
        description="A provincial-level division's short name (e.g. 浙江), or empty")
    confirm_past_goal: bool = Field(
        default=False, description="The donor was told the project is past its goal and "
        "still wants to give; without it such a gift is refused (409 past_goal_unconfirmed)")


class PaymentRead(BaseModel):
    """The payment behind a donation: where to pay and its state."""

    intent_id: str
    provider: str
    status: str
    checkout_url: str


class DonationRead(BaseModel):
    """A donation as its donor (or the receiving organization) sees it."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(validation_alias=AliasChoices("public_id", "id"))
    project_id: int
    recipient_org_id: int
    amount_fen: int
    donor_name: str
    anonymous: bool
    message: str = Field(description="The donor's message; empty if there is none or it was "
                                     "hidden (see message_status).")
    message_status: str = Field(
        default="none",
        description="none, shown (public), held (waits for the organization's review: only "
                    "its donor sees it) or hidden (by the organization: shown to nobody).")
    province: str | None
    status: DonationStatus
    created_at: dt.datetime
    paid_at: dt.datetime | None
    refunded_at: dt.datetime | None


class DonationCreated(DonationRead):
    """A created (or replayed) donation with its payment."""

    payment: PaymentRead


class DonationPage(BaseModel):
    """A page of donations."""

    items: list[DonationRead]
    total: int
    limit: int
    offset: int


class RefundCreate(BaseModel):
    """A refund request; without an amount the whole remaining gift is refunded."""

    model_config = ConfigDict(extra="forbid")

    amount_fen: StrictInt | None = None
    reason: SingleLine = Field(min_length=1, max_length=200)


class RefundRead(BaseModel):
    """A refund and its state."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    intent_id: str
    amount_fen: int
    status: RefundStatus
    reason: str
    created_at: dt.datetime
    completed_at: dt.datetime | None
