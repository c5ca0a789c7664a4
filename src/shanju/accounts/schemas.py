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
    email: str
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
