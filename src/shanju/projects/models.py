"""Fundraising projects, their progress updates and fund-usage disclosures."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, enum_column


class ProjectStatus(enum.StrEnum):
    """A project's lifecycle (see ``service.TRANSITIONS`` for the allowed moves)."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    FUNDRAISING = "fundraising"
    PAUSED = "paused"
    ENDED = "ended"
    EXECUTING = "executing"
    COMPLETED = "completed"
    TAKEN_DOWN = "taken_down"


class GoalPolicy(enum.StrEnum):
    """What happens once a project has raised its goal (see ``projects/goals.py``).

    continue: it keeps taking gifts, and donors are told before they pay that the goal is
    reached; stop: it takes no more gifts; stretch: it raises toward ``stretch_goal_fen``
    (a new, higher goal, the original still shown), then stops there.
    """

    CONTINUE = "continue"
    STOP = "stop"
    STRETCH = "stretch"


class Project(Base):
    """A fundraising project published by an organization."""

    __tablename__ = "projects"
    __table_args__ = (
        CheckConstraint("goal_fen > 0", name="goal_positive"),
        CheckConstraint("stretch_goal_fen IS NULL OR stretch_goal_fen > goal_fen",
                        name="stretch_goal_above_goal"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    # The organization that receives the funds: the publisher itself when it holds a
    # public-fundraising qualification, otherwise a qualified partner (Charity Law Art. 26).
    recipient_org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    title: Mapped[str] = mapped_column(String(80))
    summary: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # A beneficiary's story in the organization's words (shown in its own block; see
    # docs/projects.md "Pictures and stories" on consent).
    story: Mapped[str] = mapped_column(Text, default="", server_default="")
    category: Mapped[str] = mapped_column(String(30), default="other")
    province: Mapped[str] = mapped_column(String(20), index=True)
    cover_image_id: Mapped[int | None] = mapped_column(ForeignKey("attachments.id"))
    goal_fen: Mapped[int] = mapped_column(BigInteger)
    # What the organization chose for when the goal is reached (its project settings).
    goal_policy: Mapped[GoalPolicy] = mapped_column(
        enum_column(GoalPolicy), default=GoalPolicy.CONTINUE,
        server_default=GoalPolicy.CONTINUE.value)
    stretch_goal_fen: Mapped[int | None] = mapped_column(BigInteger)
    fundraising_plan: Mapped[str] = mapped_column(Text, default="")
    filing_number: Mapped[str | None] = mapped_column(String(60))  # 备案号
    filing_valid_from: Mapped[dt.date | None]
    filing_valid_until: Mapped[dt.date | None]
    starts_on: Mapped[dt.date | None]
    ends_on: Mapped[dt.date | None]
    status: Mapped[ProjectStatus] = mapped_column(
        enum_column(ProjectStatus), default=ProjectStatus.DRAFT, index=True
    )
    # Where a paused project returns to when it is resumed.
    status_before_pause: Mapped[ProjectStatus | None] = mapped_column(enum_column(ProjectStatus))
    review_note: Mapped[str | None] = mapped_column(Text)
    featured: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[dt.datetime | None]
    reviewed_at: Mapped[dt.datetime | None]


class ProjectUpdate(Base):
    """A progress update posted by the organization (with photos as attachments)."""

    __tablename__ = "project_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FundUsage(Base):
    """A fund-usage disclosure: money released from the project fund and what it paid for.

    Each one moves ``amount_fen`` out of the project's fund through the ledger, so the sum
    of disclosures can never exceed what was raised and not refunded.
    """

    __tablename__ = "fund_usages"
    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    purpose: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    spent_on: Mapped[dt.date]
    journal_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
