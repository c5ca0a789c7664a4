"""Charity organizations and their public-fundraising qualification."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, String, Text
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
