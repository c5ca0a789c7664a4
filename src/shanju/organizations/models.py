"""Charity organizations, their public-fundraising qualification and their payment routes."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class OrgType(enum.StrEnum):
    """The three kinds of charitable organization registered with civil affairs."""

    FOUNDATION = "foundation"  # 基金会
    SOCIAL_GROUP = "social_group"  # 社会团体
    SOCIAL_SERVICE = "social_service"  # 社会服务机构 (民办非企业单位)


class OrgStatus(enum.StrEnum):
    """Where an organization stands with the platform's reviewers."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUSPENDED = "suspended"


class Organization(Base):
    """A registered charity with its legally required public details."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))  # full registered name
    short_name: Mapped[str | None] = mapped_column(String(40))
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    uscc_warning: Mapped[str | None] = mapped_column(String(200))
    org_type: Mapped[OrgType] = mapped_column(enum_column(OrgType))
    registering_authority: Mapped[str] = mapped_column(String(120))
    province: Mapped[str] = mapped_column(String(20), index=True)
    city: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(String(200))
    contact_name: Mapped[str | None] = mapped_column(String(60))
    contact_phone: Mapped[str] = mapped_column(String(40))
    contact_email: Mapped[str | None] = mapped_column(String(254))
    website: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # Public-fundraising qualification (公开募捐资格证书), Charity Law Art. 22.
    fundraising_cert_no: Mapped[str | None] = mapped_column(String(60))
    fundraising_valid_from: Mapped[dt.date | None]
    fundraising_valid_until: Mapped[dt.date | None]
    status: Mapped[OrgStatus] = mapped_column(
        enum_column(OrgStatus), default=OrgStatus.PENDING, index=True
    )
    review_note: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reviewed_at: Mapped[dt.datetime | None]

    def is_qualified_on(self, day: dt.date) -> bool:
        """Whether the organization holds a valid public-fundraising qualification on ``day``."""
        return bool(
            self.fundraising_cert_no
            and self.fundraising_valid_from
            and self.fundraising_valid_from <= day
            and (self.fundraising_valid_until is None or day <= self.fundraising_valid_until)
        )


class RouteProvider(enum.StrEnum):
    """A real payment provider an organization settles through (the gateways' names)."""

    WECHATPAY = "wechatpay"  # WeChat Pay API v3, service-provider mode: a sub_mchid
    ALIPAY = "alipay"        # Alipay, third-party application (ISV): the merchant's PID


class RouteStatus(enum.StrEnum):
    """Where one submitted payment route stands."""

    PENDING = "pending"        # submitted by the organization's staff, waiting for a reviewer
    APPROVED = "approved"      # in force: donations settle to this merchant account
    REJECTED = "rejected"      # a reviewer refused the submission (with a reason)
    REVOKED = "revoked"        # taken out of force by a reviewer or the organization (reason)
    SUPERSEDED = "superseded"  # replaced: by a newer approved route (or newer submission)


def _one_per_status(status: RouteStatus) -> Index:
    # At most one route of each (organization, provider) in this status: a partial unique
    # index (SQLite and PostgreSQL both have them), so a race between two submissions or two
    # approvals ends in a refused insert, never in two accounts in force.
    where = text(f"status = '{status.value}'")
    return Index(f"uq_payment_routes_one_{status.value}", "organization_id", "provider",
                 unique=True, sqlite_where=where, postgresql_where=where)


class PaymentRoute(Base):
    """One submission of where an organization's money settles at one provider.

    The platform is the provider's service provider (WeChat Pay 服务商 / Alipay ISV) and each
    organization a sub-merchant: ``merchant_id`` is the WeChat ``sub_mchid`` or the Alipay PID.
    A change is a new row (pending) while the approved one stays in force; approving it
    supersedes the old one. Alipay's ``app_auth_token`` is a credential and is stored only
    sealed (AES-256-GCM, see ``organizations.payment_routes``), never in clear.
    """

    __tablename__ = "payment_routes"
    __table_args__ = (
        _one_per_status(RouteStatus.APPROVED),
        _one_per_status(RouteStatus.PENDING),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    provider: Mapped[RouteProvider] = mapped_column(enum_column(RouteProvider))
    merchant_id: Mapped[str] = mapped_column(String(32))
    sub_appid: Mapped[str | None] = mapped_column(String(32))
    auth_token_sealed: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[RouteStatus] = mapped_column(
        enum_column(RouteStatus), default=RouteStatus.PENDING, index=True)
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[dt.datetime | None]
    review_note: Mapped[str | None] = mapped_column(Text)
    # Revoked or superseded: when, by whom, and (revoked) why.
    ended_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ended_at: Mapped[dt.datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
