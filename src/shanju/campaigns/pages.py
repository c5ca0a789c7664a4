"""Public pages of giving days: the list, a campaign's live dashboard and its event stream.

The dashboard is complete without JavaScript (and refreshes itself every 30 s then); with it,
``static/js/campaign-live.js`` listens to ``/campaigns/{slug}/live`` (Server-Sent Events) and
updates the figures in place. Every viewer of a campaign is fed by the same snapshot, read once
a second by the process's one :class:`~shanju.campaigns.live.Broadcaster`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from shanju.campaigns import live
from shanju.core.deps import DbSession, Viewer
from shanju.core.web import render

router = APIRouter()

Slug = Annotated[str, Path(min_length=1, max_length=40)]
# A comment line now and then keeps proxies and phones from dropping a quiet stream.
KEEPALIVE_SECONDS = 15.0
# A stream ends after this long; the browser's EventSource reconnects by itself (after the
# "retry" delay), so a server restart or a moved load balancer never strands a viewer.
STREAM_SECONDS = 600.0
RETRY_MS = 3000


@router.get("/campaigns", response_class=HTMLResponse)
def campaign_list(request: Request, session: DbSession, viewer: Viewer) -> HTMLResponse:
    """Giving days: live now, coming up and ended."""
    del viewer  # loads the viewer for the layout
    items = live.list_public_campaigns(session=session)
    return render(request, "campaigns/public/list.html", {
        "live_items": [i for i in items if i.campaign.status.value == "live"],
        "scheduled_items": [i for i in items if i.campaign.status.value == "scheduled"],
        "ended_items": [i for i in items if i.campaign.status.value == "ended"],
    })


@router.get("/campaigns/{slug}", response_class=HTMLResponse)
def campaign_page(slug: Slug, request: Request, session: DbSession,
                  viewer: Viewer) -> HTMLResponse:
    """A giving day's live dashboard."""
    del viewer
    campaign = live.get_public_campaign(session=session, slug=slug)
    snap = live.snapshot_cache(request.app.state).get(session=session, campaign=campaign)
    return render(request, "campaigns/public/dashboard.html",
                  {"campaign": campaign, "snap": snap, "boards": live.BOARDS,
                   "ends_on": live.last_day(campaign)})


@router.get("/campaigns/{slug}/live")
def campaign_stream(slug: Slug, request: Request, session: DbSession) -> StreamingResponse:
    """The dashboard's figures as Server-Sent Events: a ``snapshot`` event (the JSON of
    ``/api/v1/campaigns/{id}/stats`` and its leaderboards) at once and whenever they change."""
    campaign = live.get_public_campaign(session=session, slug=slug)
    hub = live.broadcaster(request.app.state)
    return StreamingResponse(
        _events(hub, campaign.id), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(hub: live.Broadcaster, campaign_id: int) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    async with hub.subscribe(campaign_id) as queue:
        while (left := ends - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(queue.get(), timeout=min(KEEPALIVE_SECONDS, left))
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            yield f"event: snapshot\ndata: {data}\n\n"
