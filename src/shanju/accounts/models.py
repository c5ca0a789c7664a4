"""Users, their browser sessions, personal API tokens and notifications."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class Role(enum.StrEnum):
    """What a user is on the platform; checked on every action."""

    DONOR = "donor"
    ORG_STAFF = "org_staff"
    ENTERPRISE_STAFF = "enterprise_staff"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class User(Base):
    """A person with an account."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # None for an account made by signing in with a phone that has not added an email yet,
    # and for a deleted account (its contact erased).
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    # A mainland mobile number in E.164 (``+8613800138000``), proven by an SMS code.
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    display_name: Mapped[str] = mapped_column(String(60))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(enum_column(Role), default=Role.DONOR)
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", use_alter=True), index=True
    )
    province: Mapped[str | None] = mapped_column(String(20))
    locale: Mapped[str | None] = mapped_column(String(10))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Set when the person deleted their account: the row stays, de-identified, so that the
    # records the law keeps (donations, the audit log) still name the same account
    # (docs/accounts.md, "Deleting an account").
    deleted_at: Mapped[dt.datetime | None]

    @property
    def is_reviewer(self) -> bool:
        """Reviewers and admins may review organizations, projects and complaints."""
        return self.role in (Role.REVIEWER, Role.ADMIN)


class WebSession(Base):
    """A signed-in browser; the cookie holds a random token, the table only its hash."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    # The last request seen with this session, to the minute (idle timeout, ADR 0022).
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A personal token for the JSON API (``Authorization: Bearer sj_...``)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    prefix: Mapped[str] = mapped_column(String(12))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class Notification(Base):
    """A message to one user, shown in their account (e.g. a project they gave to was paused).

    ``title`` and ``body`` are English msgids with ``%(name)s`` placeholders filled from
    ``params`` when shown, so each reader sees them in their own language (see
    ``accounts.service.render_notifications``).
    """

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(60))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    link: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    read_at: Mapped[dt.datetime | None]


class PendingSignup(Base):
    """A sign-up waiting for its email to be confirmed: the account is created only then.

    The emailed link carries a random token; the table keeps only its hash. Several pending
    sign-ups may name the same email (nobody can hold an address they cannot read); the first
    confirmed one creates the account.
    """

    __tablename__ = "pending_signups"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    display_name: Mapped[str] = mapped_column(String(60))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(enum_column(Role))
    province: Mapped[str | None] = mapped_column(String(20))
    locale: Mapped[str | None] = mapped_column(String(10))
    next_path: Mapped[str | None] = mapped_column(String(500))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    confirmed_at: Mapped[dt.datetime | None]


class PasswordReset(Base):
    """A password reset asked for by email: the link carries a random token, the table its
    hash. Used once; every reset of the account is spent when one of them is used."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class EmailChange(Base):
    """A new email address waiting for its owner to open the link sent to it."""

    __tablename__ = "email_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    new_email: Mapped[str] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    confirmed_at: Mapped[dt.datetime | None]


class CodePurpose(enum.StrEnum):
    """What an SMS code proves possession of the phone for."""

    SIGN_IN = "sign_in"
    LINK = "link"        # add the phone to the signed-in account
    DELETE = "delete"    # confirm deleting an account that has no password


class PhoneCode(Base):
    """A 6-digit code sent by SMS: only its keyed hash is kept; 5 minutes, 5 tries, once."""

    __tablename__ = "phone_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    purpose: Mapped[CodePurpose] = mapped_column(enum_column(CodePurpose))
    # The signed-in account a LINK or DELETE code was asked for (None for sign-in).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                                index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    spent_at: Mapped[dt.datetime | None]
