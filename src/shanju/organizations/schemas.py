"""Pydantic shapes of the organizations API.

Input fields are plain strings on purpose: the service validates them (USCC, province, type,
lengths) and answers with a stable error ``code`` and ``field``, the same for the API and the
HTML forms.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from shanju.core.text import MultiLine
from shanju.organizations.models import OrgStatus, OrgType


class OrganizationCreate(BaseModel):
    """What an organization registers with."""

    name: str = Field(description="Full registered name, as on the registration certificate.")
    short_name: str = ""
    uscc: str = Field(description="Unified Social Credit Code (18 characters, GB 32100-2015).")
    org_type: str = Field(description="foundation, social_group or social_service.")
    registering_authority: str = Field(
        description="The civil affairs department it registered with."
    )
    province: str = Field(description="A provincial-level division, e.g. 北京 or 广东.")
    city: str = ""
    address: str = ""
    contact_name: str = ""
    contact_phone: str
    contact_email: str = ""
    website: str = ""
    description: str = ""
    fundraising_cert_no: str = Field(
        "", description="Public-fundraising qualification certificate number, if it holds one."
    )
    fundraising_valid_from: dt.date | None = None
    fundraising_valid_until: dt.date | None = None


class OrganizationUpdate(OrganizationCreate):
    """A full replacement of the organization's details by its staff.

    Changing a legal field (name, USCC, type, registering authority or the qualification) sends
    the organization back to review.
    """


class ReviewDecision(BaseModel):
    """A reviewer's reason (required to reject or suspend)."""

    reason: MultiLine = Field(default="", max_length=10_000)


class OrganizationRead(BaseModel):
    """An organization's public profile: what the Charity Law and MZ/T 088-2017 require."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    short_name: str | None
    uscc: str
    org_type: OrgType
    registering_authority: str
    province: str
    city: str | None
    address: str | None
    contact_name: str | None
    contact_phone: str
    contact_email: str | None
    website: str | None
    description: str
    fundraising_cert_no: str | None
    fundraising_valid_from: dt.date | None
    fundraising_valid_until: dt.date | None
    publicly_qualified: bool = Field(
        description="Whether it holds a valid public-fundraising qualification today."
    )
    status: OrgStatus


class OrganizationReviewRead(OrganizationRead):
    """An organization as reviewers and its own staff see it, with review details."""

    uscc_warning: str | None
    review_warnings: list[str]
    review_note: str | None
    created_at: dt.datetime
    reviewed_at: dt.datetime | None


class OrganizationPage(BaseModel):
    """One page of approved organizations."""

    items: list[OrganizationRead]
    total: int
    page: int
    per_page: int
