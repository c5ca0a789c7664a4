"""Pydantic shapes of the organizations API.

Input fields are plain strings on purpose: the service validates them (USCC, province, type,
lengths) and answers with a stable error ``code`` and ``field``, the same for the API and the
HTML forms.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from shanju.core.text import MultiLine
from shanju.organizations.models import OrgStatus, OrgType, RouteProvider, RouteStatus


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


class PaymentRouteSubmit(BaseModel):
    """A payment account for the organization at one provider, submitted for review."""

    provider: str = Field(max_length=40, description="wechatpay or alipay.")
    merchant_id: str = Field(
        max_length=200,
        description="WeChat Pay: the sub-merchant number (sub_mchid, 8-10 digits). Alipay: "
                    "the merchant's PID (2088 followed by 12 digits).",
    )
    sub_appid: str = Field(
        "", max_length=200,
        description="WeChat Pay only, optional: the AppID of the organization's own official "
                    "account or mini program (wx + 16 hexadecimal characters).",
    )
    app_auth_token: str = Field(
        "", max_length=200,
        description="Alipay only: the app_auth_token the merchant granted the platform's "
                    "application. Write-only: stored encrypted, never returned. Empty keeps "
                    "the token on file for the same PID.",
    )


class PaymentRouteRead(BaseModel):
    """A payment account as its organization's staff and reviewers see it (never the token)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    organization_id: int
    provider: RouteProvider
    merchant_id: str
    sub_appid: str | None
    app_auth_token_set: bool = Field(description="Whether an app_auth_token is stored "
                                                 "(Alipay); the token itself is never shown.")
    status: RouteStatus
    submitted_by_id: int | None
    submitted_at: dt.datetime
    reviewed_by_id: int | None
    reviewed_at: dt.datetime | None
    review_note: str | None
    ended_by_id: int | None
    ended_at: dt.datetime | None
    end_reason: str | None


class PaymentRoutePage(BaseModel):
    """One page of payment accounts for reviewers."""

    items: list[PaymentRouteRead]
    total: int
    page: int
    per_page: int
