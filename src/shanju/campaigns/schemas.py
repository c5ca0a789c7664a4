"""Pydantic schemas of the campaigns API (money in integer fen, dates as YYYY-MM-DD, times as
HH:MM China time). Rule parameters are :class:`shanju.campaigns.rules.RuleParams`."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from shanju.campaigns.models import (
    CampaignStatus,
    EnrolmentStatus,
    PoolKind,
    PoolStatus,
    SponsorKind,
)
from shanju.campaigns.rules import RuleParams
from shanju.core.db import DbId

# Bounds here are generous: the service gives the precise, coded refusal; these only keep
# absurd values (a 10 MB string, a 40-digit integer) out of it.


class CampaignCreate(BaseModel):
    """A new draft campaign."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(max_length=200, examples=["99-giving-day"],
                      description="Lowercase letters, digits and hyphens; used in its URL.")
    name: str = Field(max_length=400, examples=["99公益日"])
    name_en: str = Field(default="", max_length=400, examples=["99 Giving Day"])
    summary: str = Field(default="", max_length=10_000)
    starts_on: dt.date = Field(description="The first day (China time).")
    days: int = Field(default=3, ge=-1_000_000, le=1_000_000, description="1–31 days.")
    opens_at: str = Field(default="10:00", max_length=20,
                          description="Daily opening, HH:MM China time.")
    closes_at: str = Field(default="23:59", max_length=20,
                           description="Daily closing, HH:MM China time.")
    org_quota: int = Field(default=3, ge=-1_000_000, le=1_000_000,
                           description="Projects one organization may enrol (applied or "
                                       "approved).")
    hold_days: int = Field(default=7, ge=-1_000_000, le=1_000_000,
                           description="Public notice period (公示期) for held matches, days.")


class CampaignUpdate(BaseModel):
    """A partial change (fields left out stay as they are; a live campaign's schedule is
    locked)."""

    model_config = ConfigDict(extra="forbid")

    slug: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=400)
    name_en: str | None = Field(default=None, max_length=400)
    summary: str | None = Field(default=None, max_length=10_000)
    starts_on: dt.date | None = None
    days: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    opens_at: str | None = Field(default=None, max_length=20)
    closes_at: str | None = Field(default=None, max_length=20)
    org_quota: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    hold_days: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)


class SponsorCreate(BaseModel):
    """A sponsor: an enterprise or the platform."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=400, examples=["腾讯公益"])
    kind: SponsorKind = SponsorKind.ENTERPRISE
    organization_id: DbId | None = None


class SponsorRead(BaseModel):
    """A sponsor of a campaign."""

    id: int
    campaign_id: int
    name: str
    kind: SponsorKind
    organization_id: int | None


class PoolCreate(BaseModel):
    """A sponsor's pool, committed with ``budget_fen`` through the ledger; ``rule`` is version
    1 of its rule."""

    model_config = ConfigDict(extra="forbid")

    sponsor_id: DbId
    name: str = Field(max_length=400, examples=["一比一配捐"])
    kind: PoolKind = PoolKind.MATCHING
    priority: int = Field(default=100, ge=-1_000_000, le=1_000_000,
                          description="Lower matches first (0–10000).")
    budget_fen: int = Field(ge=-(2**62), le=2**62,
                            description="The initial commitment in fen (1 yuan = 100 fen).")
    rule: RuleParams = Field(default_factory=RuleParams)


class PoolUpdate(BaseModel):
    """Rename a pool or change its priority."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=400)
    priority: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)


class TopUp(BaseModel):
    """Money a sponsor adds to a pool, in fen."""

    model_config = ConfigDict(extra="forbid")

    amount_fen: int = Field(ge=-(2**62), le=2**62)


class RuleRead(BaseModel):
    """One version of a pool's rule."""

    version: int
    params: RuleParams = Field(description="A random ratio's seed is shown to reviewers only.")
    created_at: dt.datetime


class PoolRead(BaseModel):
    """A pool: what was committed, what remains, and the rule in force."""

    id: int
    campaign_id: int
    sponsor_id: int
    sponsor_name: str
    name: str
    kind: PoolKind
    status: PoolStatus
    priority: int
    committed_fen: int
    remaining_fen: int
    rule_version: int
    rule: RuleParams = Field(description="The rule in force (a random ratio's seed is shown "
                                         "to reviewers only; 0 for others).")
    exhausted_at: dt.datetime | None


class CampaignRead(BaseModel):
    """A campaign with its sponsors and pools."""

    id: int
    slug: str
    name: str
    name_en: str
    summary: str
    status: CampaignStatus
    starts_on: dt.date
    ends_on: dt.date
    days: int
    opens_at: str
    closes_at: str
    org_quota: int
    hold_days: int
    committed_fen: int = Field(description="All pools' commitments.")
    remaining_fen: int = Field(description="What all pools have left to match.")
    sponsors: list[SponsorRead]
    pools: list[PoolRead]


class CampaignBrief(BaseModel):
    """A campaign in a list."""

    id: int
    slug: str
    name: str
    name_en: str
    status: CampaignStatus
    starts_on: dt.date
    ends_on: dt.date
    opens_at: str
    closes_at: str


class CampaignPage(BaseModel):
    """A page of campaigns."""

    items: list[CampaignBrief]
    total: int
    limit: int
    offset: int


class CampaignAction(BaseModel):
    """No body is needed to publish, unpublish, start or end a campaign."""

    model_config = ConfigDict(extra="forbid")


class EnrolmentCreate(BaseModel):
    """Apply with one of the organization's fundraising projects."""

    model_config = ConfigDict(extra="forbid")

    project_id: DbId


class EnrolmentRead(BaseModel):
    """A project's enrolment in a campaign."""

    id: int
    campaign_id: int
    project_id: int
    project_title: str
    organization_id: int
    organization_name: str
    status: EnrolmentStatus
    matching_frozen: bool
    frozen_reason: str
    note: str
    applied_at: dt.datetime
    decided_at: dt.datetime | None


class EnrolmentList(BaseModel):
    """A campaign's enrolments."""

    items: list[EnrolmentRead]


class Decision(BaseModel):
    """A reviewer's note (required to reject)."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)


class FreezeRequest(BaseModel):
    """Why a project's matching is frozen (required to freeze)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


class QuadraticShareRead(BaseModel):
    """A project's share of a distributed quadratic-funding round."""

    project_id: int
    project_title: str
    contributors: int
    contributed_fen: int
    share_fen: int


class DistributionRead(BaseModel):
    """A distributed quadratic-funding round: the shares sum to ``distributed_fen``."""

    pool_id: int
    distributed_fen: int
    shares: list[QuadraticShareRead]
