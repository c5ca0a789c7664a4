"""Public pages of giving days: the list, a campaign's live dashboard and its event stream.

The dashboard is complete without JavaScript (and refreshes itself every 30 s then); with it,
``static/js/campaign-live.js`` listens to ``/campaigns/{slug}/live`` (Server-Sent Events) and
updates the figures in place. Every viewer of a campaign is fed by the same snapshot, read once
a second by the process's one :class:`~shanju.campaigns.live.Broadcaster`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from shanju.campaigns import live
from shanju.core.db import Database
from shanju.core.deps import DbSession, Viewer
from shanju.core.errors import NotFound
from shanju.core.web import render

router = APIRouter()

SLUG_MAX = 40  # Campaign.slug's length
Slug = Annotated[str, Path(min_length=1, max_length=SLUG_MAX)]
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
                   "ends_on": live.last_day(campaign),
                   "time_left": live.campaign_time_left(campaign)})


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


class LiveStreamLane:
    """``GET /campaigns/{slug}/live`` as plain ASGI, in front of the application's middleware.

    A busy giving day keeps thousands of these streams open, and every snapshot is written to
    each of them: through the page middleware (locale and CSRF cookies, a response stream per
    request) that costs several times the write itself. Here a stream is the campaign's look-up
    (one query, in a worker thread), the response head, then the events — the same bytes the
    route below sends, which answers (e.g. a 404 page for an unknown slug) whenever the lane
    declines.
    """

    PREFIX = "/campaigns/"
    SUFFIX = "/live"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (scope["type"] != "http" or scope["method"] != "GET"
                or not path.startswith(self.PREFIX) or not path.endswith(self.SUFFIX)):
            await self.app(scope, receive, send)
            return
        slug = path[len(self.PREFIX):-len(self.SUFFIX)]
        state = scope["app"].state
        campaign_id = None
        if slug and "/" not in slug and len(slug) <= SLUG_MAX:
            campaign_id = await asyncio.to_thread(_public_campaign_id, state.db, slug)
        if campaign_id is None:
            await self.app(scope, receive, send)  # the route answers: not found
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-content-type-options", b"nosniff"),
        ]})
        disconnected = asyncio.ensure_future(_disconnect(receive))
        events = _events(live.broadcaster(state), campaign_id, stop=disconnected)
        gone = False
        try:
            async for chunk in events:
                await send({"type": "http.response.body", "body": chunk.encode(),
                            "more_body": True})
        except OSError:
            gone = True  # the client went away while we wrote
        finally:
            gone = gone or disconnected.done()
            disconnected.cancel()
            await events.aclose()
        if not gone:  # the stream's time is up: end it; the browser reconnects
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _public_campaign_id(database: Database, slug: str) -> int | None:
    with database.transaction(write=False) as session:
        try:
            return live.get_public_campaign(session=session, slug=slug).id
        except NotFound:
            return None


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _events(hub: live.Broadcaster, campaign_id: int,
                  stop: asyncio.Future[None] | None = None) -> AsyncGenerator[str, None]:
    """The stream's text: the retry delay, then each snapshot as it comes (a comment line
    when quiet), until ``STREAM_SECONDS`` have passed or ``stop`` is done."""
    yield f"retry: {RETRY_MS}\n\n"
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    async with hub.subscribe(campaign_id) as queue:
        while (left := ends - loop.time()) > 0 and not (stop is not None and stop.done()):
            getter = asyncio.ensure_future(queue.get())
            waiting: set[asyncio.Future[Any]] = {getter}
            if stop is not None:
                waiting.add(stop)
            await asyncio.wait(waiting, timeout=min(KEEPALIVE_SECONDS, left),
                               return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                if stop is None or not stop.done():
                    yield ": keep-alive\n\n"
                continue
            yield f"event: snapshot\ndata: {getter.result()}\n\n"
