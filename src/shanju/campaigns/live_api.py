"""JSON API of a giving day's live figures (under /api/v1): stats, leaderboards, and a
project's match status. Public, read-only; the same numbers as the live dashboard."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from shanju.campaigns import live
from shanju.core.db import DbId
from shanju.core.deps import DbSession, Viewer
from shanju.projects import service as projects

router = APIRouter(tags=["campaigns"])


class TotalsRead(BaseModel):
    """A campaign's totals (fen)."""

    gifts: int
    raised_fen: int
    matched_fen: int
    total_fen: int


class PoolRead(BaseModel):
    """A sponsor's pool and what is left of it."""

    pool_id: int
    name: str
    sponsor_id: int
    sponsor_name: str
    kind: str
    status: str
    committed_fen: int
    remaining_fen: int
    percent_left: int
    exhausted_at: dt.datetime | None
    matched_fen: int
    gifts: int


class MinuteRead(BaseModel):
    """Gifts and money raised in one minute (China time)."""

    minute: str
    label: str
    gifts: int
    raised_fen: int


class CampaignStatsRead(BaseModel):
    """A campaign's live figures."""

    campaign_id: int
    slug: str
    name: str
    name_en: str
    status: str
    open_now: bool
    totals: TotalsRead
    pools: list[PoolRead]
    per_minute: list[MinuteRead]
    gifts_last_minute: int
    as_of: dt.datetime


class BoardEntryRead(BaseModel):
    """One row of a leaderboard (sponsors: ``raised_fen`` is what they committed)."""

    rank: int
    key: str
    name: str
    name_en: str
    url: str | None
    gifts: int
    raised_fen: int
    matched_fen: int


class LeaderboardsRead(BaseModel):
    """The four leaderboards of a campaign."""

    campaign_id: int
    projects: list[BoardEntryRead]
    organizations: list[BoardEntryRead]
    provinces: list[BoardEntryRead]
    sponsors: list[BoardEntryRead]


class PoolCapRead(BaseModel):
    """A pool's per-project daily cap for the project (``None``: the pool has none)."""

    pool_id: int
    pool_name: str
    sponsor_name: str
    cap_fen: int | None
    used_fen: int
    left_fen: int | None
    pool_remaining_fen: int


class ProjectMatchRead(BaseModel):
    """A project's matching in one live or scheduled campaign."""

    campaign_id: int
    campaign_slug: str
    enrolled: bool
    enrolment_status: str
    frozen: bool
    open_now: bool
    day: dt.date
    matched_today_fen: int
    cap_left_today_fen: int | None
    raised_fen: int
    matched_fen: int
    gifts: int
    caps: list[PoolCapRead]


@router.get("/campaigns/{campaign_id}/stats", response_model=CampaignStatsRead)
def campaign_stats(campaign_id: DbId, request: Request,
                   session: DbSession) -> CampaignStatsRead:
    """A published campaign's totals (raised by the public, matched by sponsors, gifts), what
    is left of each sponsor's pool, and gifts per minute over the last 30 minutes (China
    time). The live dashboard's Server-Sent Events (`/campaigns/{slug}/live`) carry the same
    figures."""
    campaign = live.get_public_campaign(session=session, campaign_id=campaign_id)
    data = live.snapshot_cache(request.app.state).get(session=session, campaign=campaign).to_json()
    data.pop("boards")
    return CampaignStatsRead.model_validate(data)


@router.get("/campaigns/{campaign_id}/leaderboards", response_model=LeaderboardsRead)
def campaign_leaderboards(
    campaign_id: DbId, request: Request, session: DbSession,
    limit: Annotated[int, Query(ge=1, le=live.MAX_BOARD_SIZE)] = live.BOARD_SIZE,
) -> LeaderboardsRead:
    """A published campaign's leaderboards: projects, organizations and provinces by money
    raised, sponsors by money matched (top `limit` of each)."""
    campaign = live.get_public_campaign(session=session, campaign_id=campaign_id)
    if limit == live.BOARD_SIZE:  # the dashboard's: shared with it for a second
        boards = live.snapshot_cache(request.app.state).get(
            session=session, campaign=campaign).boards
    else:
        boards = live.leaderboards(session=session, campaign_id=campaign.id, limit=limit)
    return LeaderboardsRead.model_validate({
        "campaign_id": campaign.id,
        **{name: [live.board_entry_json(e) for e in entries] for name, entries in boards.items()},
    })


@router.get("/projects/{project_id}/campaign-match", response_model=list[ProjectMatchRead])
def project_campaign_match(project_id: DbId, session: DbSession,
                           viewer: Viewer) -> list[ProjectMatchRead]:
    """A project's match status in each live or scheduled giving day it takes part in:
    enrolled, frozen, matched today, and what is left today of each pool's per-project daily
    cap."""
    project = projects.get_visible_project(session=session, project_id=project_id,
                                           viewer=viewer)
    return [ProjectMatchRead(
        campaign_id=m.campaign.id, campaign_slug=m.campaign.slug, enrolled=m.enrolled,
        enrolment_status=m.enrolment_status, frozen=m.frozen, open_now=m.open_now, day=m.day,
        matched_today_fen=m.matched_today_fen, cap_left_today_fen=m.cap_left_fen,
        raised_fen=m.raised_fen, matched_fen=m.matched_fen, gifts=m.gifts,
        caps=[PoolCapRead.model_validate(c, from_attributes=True) for c in m.caps],
    ) for m in live.project_match_status(session=session, project_id=project.id)]
