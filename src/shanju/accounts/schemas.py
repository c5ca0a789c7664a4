"""Pydantic schemas of the accounts API: what goes in and what comes out.

Nothing here carries a password hash, a token hash or another person's email.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shanju.accounts.models import Role
from shanju.core.text import SingleLine


class UserCreate(BaseModel):
    """Sign up through the API (reviewers and admins are never self-service)."""

    email: SingleLine = Field(max_length=254, examples=["li.na@example.org"])
    password: str = Field(
        max_length=256,
        description="At least 8 characters, not a common password, not the email or name.")
    display_name: SingleLine = Field(max_length=60, examples=["李娜"])
    role: Literal["donor", "org_staff", "enterprise_staff"] = "donor"
    province: SingleLine | None = Field(default=None, max_length=20, examples=["浙江"])


class SignupAccepted(BaseModel):
    """A sign-up was received: the address has been emailed (whether or not it has an account)."""

    email: str
    status: Literal["confirmation_sent"] = "confirmation_sent"


class SignupConfirm(BaseModel):
    """The token of an emailed sign-up link."""

    token: str = Field(max_length=100)


class UserRead(BaseModel):
    """The signed-in person's own account."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str | None = Field(description="None for an account made by signing in with a "
                                            "phone that has not added an email yet.")
    phone: str | None = Field(default=None, description="E.164, e.g. +8613800138000.")
    display_name: str
    role: Role
    province: str | None
    organization_id: int | None
    created_at: dt.datetime


class ApiTokenCreate(BaseModel):
    """Exchange an email and password for a personal API token."""

    email: SingleLine = Field(max_length=254)
    password: str = Field(max_length=256)
    name: SingleLine = Field(max_length=60, examples=["My reporting script"])


class ApiTokenRead(BaseModel):
    """A personal API token, without its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str = Field(description="The first characters of the token, to recognise it.")
    created_at: dt.datetime
    last_used_at: dt.datetime | None = Field(
        default=None, description="When the token was last used, to the minute.")
    revoked_at: dt.datetime | None


class ApiTokenCreated(ApiTokenRead):
    """A new token: ``token`` is returned this once and never again."""

    token: str = Field(description="Send as `Authorization: Bearer <token>`.")


class NotificationRead(BaseModel):
    """A message to the signed-in person."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    title: str
    body: str
    link: str | None
    created_at: dt.datetime
    read_at: dt.datetime | None


class NotificationPage(BaseModel):
    """The newest notifications and how many are unread."""

    items: list[NotificationRead]
    unread: int


class PasswordResetRequest(BaseModel):
    """Ask for a password reset link by email."""

    email: SingleLine = Field(max_length=254, examples=["li.na@example.org"])


class PasswordResetSent(BaseModel):
    """The address was emailed: a link if it has an account, a notice if not."""

    email: str
    status: Literal["reset_link_sent"] = "reset_link_sent"


class PasswordResetConfirm(BaseModel):
    """The token of an emailed reset link and the new password."""

    token: str = Field(max_length=100)
    password: str = Field(max_length=256)


class SmsCodeRequest(BaseModel):
    """Send a sign-in code by SMS to a mainland mobile number."""

    phone: SingleLine = Field(max_length=30, examples=["13800138000"])


class SmsCodeSent(BaseModel):
    """A code was sent (whether or not the number has an account)."""

    phone: str = Field(description="The number, masked: 138****8000.")
    expires_in: int = Field(description="Seconds the code works for.")


class PhoneTokenCreate(BaseModel):
    """Exchange a phone number and the SMS code sent to it for a personal API token; a number
    without an account gets a new donor account."""

    phone: SingleLine = Field(max_length=30)
    code: str = Field(max_length=10)
    name: SingleLine = Field(max_length=60, examples=["My phone"])


class ProfileUpdate(BaseModel):
    """Change the account's display name."""

    display_name: SingleLine = Field(max_length=60)


class AccountDelete(BaseModel):
    """Confirm deleting the account: its password, or (an account without one) the code sent
    with ``POST /me/delete/sms-code``."""

    password: str = Field(default="", max_length=256)
    code: str = Field(default="", max_length=10)
