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
    email: Mapped[str] = mapped_column(String(254), unique=True)
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
