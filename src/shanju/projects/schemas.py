"""Pydantic schemas of the projects API (money in integer fen, dates as YYYY-MM-DD)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from shanju.core.db import DbId
from shanju.core.text import MultiLine, SingleLine
from shanju.projects.goals import GoalState
from shanju.projects.models import GoalPolicy, ProjectStatus


class ProjectCreate(BaseModel):
    """A new draft project; ``recipient_org_id`` names the partner of an unqualified org."""

    model_config = ConfigDict(extra="forbid")

    # Characters and a cap here; the service checks the exact lengths, each with its own code.
    title: SingleLine = Field(max_length=200, examples=["乡村学校冬季温暖包"])
    summary: SingleLine = Field(max_length=400)
    description: MultiLine = Field(default="", max_length=40_000)
    category: SingleLine = Field(default="other", max_length=40)
    province: SingleLine = Field(max_length=20, examples=["云南"])
    goal_fen: int = Field(description="Fundraising goal in fen (1 yuan = 100 fen).")
    fundraising_plan: MultiLine = Field(max_length=10_000)
    filing_number: SingleLine | None = Field(default=None, max_length=200, description="备案号")
    filing_valid_from: dt.date | None = None
    filing_valid_until: dt.date | None = None
    starts_on: dt.date | None = None
    ends_on: dt.date | None = None
    recipient_org_id: DbId | None = None
    story: MultiLine = Field(default="", max_length=6_000,
                             description="A beneficiary's story, in the organization's words "
                                         "(at most 3,000 characters).")


class ProjectUpdate(BaseModel):
    """A partial change to a draft or rejected project (fields left out stay as they are)."""

    model_config = ConfigDict(extra="forbid")

    title: SingleLine | None = Field(default=None, max_length=200)
    summary: SingleLine | None = Field(default=None, max_length=400)
    description: MultiLine | None = Field(default=None, max_length=40_000)
    category: SingleLine | None = Field(default=None, max_length=40)
    province: SingleLine | None = Field(default=None, max_length=20)
    goal_fen: int | None = None
    fundraising_plan: MultiLine | None = Field(default=None, max_length=10_000)
    filing_number: SingleLine | None = Field(default=None, max_length=200)
    filing_valid_from: dt.date | None = None
    filing_valid_until: dt.date | None = None
    starts_on: dt.date | None = None
    ends_on: dt.date | None = None
    recipient_org_id: DbId | None = None
    story: MultiLine | None = Field(default=None, max_length=6_000)


class GoalSetting(BaseModel):
    """What happens when the project's goal is reached (the organization's choice)."""

    model_config = ConfigDict(extra="forbid")

    goal_policy: GoalPolicy = Field(description="continue | stop | stretch")
    stretch_goal_fen: int | None = Field(
        default=None, description="Required for stretch: above the goal and what is raised")


class TransitionRequest(BaseModel):
    """The reason for a move (required to reject, pause and take down)."""

    model_config = ConfigDict(extra="forbid")

    reason: MultiLine = Field(default="", max_length=4_000)


class OrgBrief(BaseModel):
    """The public facts of an organization shown with a project."""

    id: int
    name: str
    uscc: str
    fundraising_cert_no: str | None
    fundraising_valid_from: dt.date | None
    fundraising_valid_until: dt.date | None
    contact_phone: str


class PictureRead(BaseModel):
    """A picture stored resized (WebP, metadata stripped): one address per width."""

    id: int
    url: str = Field(description="The largest width.")
    alt: str = Field(description="The organization's description of the picture.")
    width: int = Field(description="Of the largest width, in pixels (0 if unknown).")
    height: int
    widths: list[int] = Field(description="Stored widths; each at ``url?w=<width>``.")
    srcset: str = Field(description="An HTML srcset value listing every width.")


class ProjectRead(BaseModel):
    """A project with what it has raised."""

    id: int
    title: str
    summary: str
    description: str
    story: str = ""
    category: str
    province: str
    status: ProjectStatus
    goal_fen: int = Field(description="The goal as filed (never changed by a stretch goal).")
    raised_fen: int
    donations: int = Field(description="Paid gifts (person-times).")
    goal_policy: GoalPolicy = Field(
        description="What happens at the goal: continue (keeps taking gifts; donors confirm), "
        "stop, or stretch (raises toward stretch_goal_fen, then stops)")
    stretch_goal_fen: int | None = None
    goal_state: GoalState = Field(
        description="open (below the goal); reached (已筹满, still taking gifts: a gift needs "
        "confirm_past_goal); stretch (past the goal, raising a stretch goal: a gift needs "
        "confirm_past_goal); closed (已筹满, no more gifts)")
    target_fen: int = Field(description="The goal in force: the stretch goal once the goal "
                            "is reached, else goal_fen")
    fundraising_ends_at: dt.datetime | None = Field(
        default=None, description="End of the fundraising period (the end of ends_on, China "
        "time)")
    seconds_left: int | None = Field(
        default=None, description="Seconds until fundraising_ends_at (0 once over); null "
        "without an end date or when not fundraising")
    disclosed_fen: int | None = None
    fundraising_plan: str
    filing_number: str | None
    filing_valid_from: dt.date | None
    filing_valid_until: dt.date | None
    starts_on: dt.date | None
    ends_on: dt.date | None
    organization_id: int
    recipient_org_id: int
    cover_url: str | None
    cover: PictureRead | None = None
    gallery: list[PictureRead] | None = Field(
        default=None, description="The project's photos (on a single project, not in lists).")
    url: str
    organization: OrgBrief | None = None
    recipient_organization: OrgBrief | None = None


class ProjectPage(BaseModel):
    """One page of projects."""

    items: list[ProjectRead]
    total: int
    limit: int
    offset: int


class AttachmentRead(BaseModel):
    """An uploaded file."""

    id: int
    filename: str
    content_type: str
    size: int
    url: str
    picture: PictureRead | None = Field(default=None,
                                        description="For a picture: its widths and alt text.")


class ProgressUpdateRead(BaseModel):
    """A progress update."""

    id: int
    project_id: int
    title: str
    body: str
    created_at: dt.datetime
    photos: list[AttachmentRead]


class FundUsageRead(BaseModel):
    """A fund-usage disclosure."""

    id: int
    project_id: int
    amount_fen: int
    purpose: str
    description: str
    spent_on: dt.date
    journal_entry_id: int | None
    created_at: dt.datetime
    attachments: list[AttachmentRead]


class PublicDonationRead(BaseModel):
    """A paid gift as the public sees it: the name masked, no contact details."""

    gift_id: str = Field(description="The gift's public id (to report its message).")
    donor: str = Field(description="Masked display name, or 爱心人士 for anonymous gifts.")
    amount_fen: int
    message: str = Field(description="The donor's message; empty when there is none, or "
                                     "while it waits for review, or when it was hidden.")
    paid_at: dt.datetime | None


class PublicDonationPage(BaseModel):
    """One page of a project's paid gifts."""

    items: list[PublicDonationRead]
    total: int
    limit: int
    offset: int
