"""Pydantic shapes of the complaints API."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from shanju.complaints.models import ComplaintStatus
from shanju.core.db import DbId
from shanju.core.text import MultiLine


class ComplaintCreate(BaseModel):
    """A report about an organization or one of its projects (anonymous visitors may file)."""

    organization_id: DbId | None = Field(
        None, description="The organization reported; taken from the project when omitted."
    )
    project_id: DbId | None = None
    category: str = Field(
        description="fraud, false_information, misuse_of_funds, commercial_ads or other."
    )
    content: str = Field(description="What happened: 10 to 2000 characters.")
    contact: str = Field("", description="How the platform can reach the reporter (optional).")


class ComplaintReceipt(BaseModel):
    """What the reporter gets back: a number to quote and the answer deadline."""

    id: int
    number: str
    status: ComplaintStatus
    due_on: dt.date = Field(description="The platform answers by this date (5 working days).")


class ComplaintAnswer(BaseModel):
    """A reviewer's answer."""

    answer: MultiLine = Field(max_length=20_000)


class ComplaintRead(BaseModel):
    """A complaint as reviewers see it."""

    id: int
    number: str
    organization_id: int
    organization_name: str
    project_id: int | None
    category: str
    content: str
    reporter_id: int | None
    reporter_contact: str | None
    status: ComplaintStatus
    due_on: dt.date
    overdue: bool
    days_remaining: int = Field(description="Calendar days until the due date (negative: late).")
    answer: str | None
    answered_by_id: int | None
    answered_at: dt.datetime | None
    created_at: dt.datetime


class ComplaintPage(BaseModel):
    """One page of complaints, open ones first by due date."""

    items: list[ComplaintRead]
    total: int
    page: int
    per_page: int
