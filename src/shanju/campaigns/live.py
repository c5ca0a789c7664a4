"""Live numbers of a giving day: totals, sponsors' pools, gifts per minute, leaderboards, a
project's match status — and the broadcaster that pushes them to the live pages.

Everything here only reads. The figures come from :class:`~shanju.campaigns.models.CampaignStat`
(running aggregates written by every engine batch in its own transaction, so a reader sees
whole batches), the pools' rows (``remaining_fen`` mirrors the pool's ledger balance) and the
counters behind the caps. None of it scans the gifts table except a project's match status
(one indexed sum over that project's gifts of the day).

The broadcaster (:class:`Broadcaster`) is the one background task of a process that reads a
campaign's snapshot — at most about once a second, and only while someone is listening — and
hands it to every subscriber of that campaign: a thousand viewers cost one read a second, not a
thousand. A subscriber's queue holds one snapshot; a slow one skips to the latest. With several
server processes and Redis as the live data's broker, the snapshot is read once a second for
all of them (:class:`SharedSnapshots`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shanju.campaigns import rules
from shanju.campaigns import service as campaigns
from shanju.campaigns.models import (
    Campaign,
    CampaignCounter,
    CampaignGift,
    CampaignStat,
    CampaignStatus,
    Enrolment,
    EnrolmentStatus,
    MatchPool,
    MatchStatus,
    PoolKind,
    PoolRule,
    PoolStatus,
    QuadraticShare,
    Sponsor,
)
from shanju.campaigns.rules import RuleParams
from shanju.core import regions
from shanju.core.clock import CHINA_TZ, TimeLeft, time_left, utcnow
from shanju.core.db import Database
from shanju.core.errors import NotFound
from shanju.core.i18n import N_
from shanju.organizations.models import Organization
from shanju.projects.models import Project

log = structlog.get_logger(__name__)

# The campaigns the public sees (a draft is the organizers' own).
PUBLIC_STATUSES = (CampaignStatus.LIVE, CampaignStatus.SCHEDULED, CampaignStatus.ENDED)
CHART_MINUTES = 30
BOARD_SIZE = 10
MAX_BOARD_SIZE = 100
BOARDS = ("projects", "organizations", "provinces", "sponsors")
# CampaignStat.dim of each leaderboard that is read straight from the stats.
_BOARD_DIMS = {"projects": "project", "organizations": "org", "provinces": "province"}
MINUTE_FORMAT = "%Y-%m-%dT%H:%M"  # the keys of dim "minute", China time


# --- what the pages and the API show ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Totals:
    """Raised (gifts' money), matched (sponsors' money) and gifts of a campaign."""

    gifts: int = 0
    raised_fen: int = 0
    matched_fen: int = 0

    @property
    def total_fen(self) -> int:
        """What the projects receive: the gifts and their matches."""
        return self.raised_fen + self.matched_fen


@dataclass(frozen=True, slots=True)
class PoolLive:
    """A sponsor's pool as the public sees it: how much is left."""

    pool_id: int
    name: str
    sponsor_id: int
    sponsor_name: str
    kind: str
    status: str
    committed_fen: int
    remaining_fen: int
    percent_left: int  # 0–100, rounded down (100 only when nothing was spent)
    exhausted_at: dt.datetime | None
    matched_fen: int  # matched from this pool (its "pool" stat)
    gifts: int  # gifts matched from it


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """Gifts and money of one minute (China time, ``HH:MM``)."""

    minute: str  # "YYYY-MM-DDTHH:MM"
    label: str  # "HH:MM"
    gifts: int
    raised_fen: int


@dataclass(frozen=True, slots=True)
class BoardEntry:
    """One row of a leaderboard."""

    rank: int
    key: str
    name: str
    name_en: str  # the English name where there is one (provinces), else the name
    url: str | None
    gifts: int
    raised_fen: int
    matched_fen: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the live dashboard shows, read in one transaction."""

    campaign_id: int
    slug: str
    name: str
    name_en: str
    status: str
    open_now: bool
    totals: Totals
    pools: list[PoolLive]
    per_minute: list[MinuteCount]
    gifts_last_minute: int
    boards: dict[str, list[BoardEntry]]
    as_of: dt.datetime

    def to_json(self) -> dict[str, Any]:
        """Return the snapshot as JSON-ready data (the SSE payload and the API's body)."""
        data: dict[str, Any] = _plain(dataclasses.asdict(self))
        data["totals"]["total_fen"] = self.totals.total_fen
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        """The snapshot of :meth:`to_json`'s data (another process's, see
        :class:`SharedSnapshots`)."""
        totals = {k: v for k, v in data["totals"].items() if k != "total_fen"}
        return cls(
            campaign_id=data["campaign_id"], slug=data["slug"], name=data["name"],
            name_en=data["name_en"], status=data["status"], open_now=data["open_now"],
            totals=Totals(**totals),
            pools=[PoolLive(**{**p, "exhausted_at": _when(p["exhausted_at"])})
                   for p in data["pools"]],
            per_minute=[MinuteCount(**m) for m in data["per_minute"]],
            gifts_last_minute=data["gifts_last_minute"],
            boards={name: [BoardEntry(**e) for e in entries]
                    for name, entries in data["boards"].items()},
            as_of=_when(data["as_of"]) or utcnow())


def _when(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def board_entry_json(entry: BoardEntry) -> dict[str, Any]:
    """Return a leaderboard row as JSON-ready data."""
    data: dict[str, Any] = dataclasses.asdict(entry)
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value


# --- campaigns -------------------------------------------------------------------------------


def get_public_campaign(*, session: Session, slug: str | None = None,
                        campaign_id: int | None = None) -> Campaign:
    """Return a published (not draft) campaign by slug or id, or NotFound."""
    if slug is not None:
        return campaigns.get_campaign_by_slug(session=session, slug=slug)
    if campaign_id is not None:
        campaign = campaigns.get_campaign(session=session, campaign_id=campaign_id)
        if campaigns.can_see(campaign, None):
            return campaign
    raise NotFound(N_("This campaign does not exist."), code="campaign_not_found")


@dataclass(frozen=True, slots=True)
class CampaignListing:
    """A campaign in the public list, with its totals."""

    campaign: Campaign
    totals: Totals
    open_now: bool

    @property
    def ends_on(self) -> dt.date:
        """The campaign's last day."""
        return last_day(self.campaign)


def list_public_campaigns(*, session: Session, now: dt.datetime | None = None
                          ) -> list[CampaignListing]:
    """Return published campaigns, live first, then scheduled (soonest first), then ended."""
    now = now or utcnow()
    campaigns = list(session.scalars(
        select(Campaign).where(Campaign.status.in_(PUBLIC_STATUSES))
        .order_by(Campaign.starts_on.desc(), Campaign.id.desc())))
    totals = _totals_by_campaign(session, [c.id for c in campaigns])
    order = {CampaignStatus.LIVE: 0, CampaignStatus.SCHEDULED: 1, CampaignStatus.ENDED: 2}

    def key(c: Campaign) -> tuple[int, int]:
        day = c.starts_on.toordinal()
        return (order[c.status], day if c.status == CampaignStatus.SCHEDULED else -day)

    return [CampaignListing(campaign=c, totals=totals.get(c.id, Totals()),
                            open_now=is_open(c, now))
            for c in sorted(campaigns, key=key)]


def live_campaigns(*, session: Session, now: dt.datetime | None = None
                   ) -> list[CampaignListing]:
    """Return the campaigns that are live now (for the home page's banner), with totals."""
    now = now or utcnow()
    campaigns = list(session.scalars(
        select(Campaign).where(Campaign.status == CampaignStatus.LIVE)
        .order_by(Campaign.starts_on, Campaign.id)))
    totals = _totals_by_campaign(session, [c.id for c in campaigns])
    return [CampaignListing(campaign=c, totals=totals.get(c.id, Totals()),
                            open_now=is_open(c, now)) for c in campaigns]


def last_day(campaign: Campaign) -> dt.date:
    """Return the campaign's last day (China time)."""
    return campaign.starts_on + dt.timedelta(days=max(campaign.days, 1) - 1)


def ends_at(campaign: Campaign) -> dt.datetime:
    """When the giving day ends: the closing minute of its last day has passed (China time)."""
    day = last_day(campaign)
    hour, minute = (int(part) for part in campaign.closes_at.split(":"))
    closing = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=CHINA_TZ)
    return closing + dt.timedelta(minutes=1)


def campaign_time_left(campaign: Campaign, now: dt.datetime | None = None) -> TimeLeft | None:
    """How long the giving day still runs (None unless it is live): its countdown."""
    if campaign.status != CampaignStatus.LIVE:
        return None
    return time_left(ends_at(campaign), now or utcnow())


def is_open(campaign: Campaign, now: dt.datetime) -> bool:
    """Whether the campaign is live and inside today's opening hours (China time)."""
    if campaign.status != CampaignStatus.LIVE:
        return False
    local = now.astimezone(CHINA_TZ)
    if not campaign.starts_on <= local.date() <= last_day(campaign):
        return False
    return campaign.opens_at <= local.strftime("%H:%M") <= campaign.closes_at


# --- the read functions ----------------------------------------------------------------------


def _totals_by_campaign(session: Session, ids: Sequence[int]) -> dict[int, Totals]:
    if not ids:
        return {}
    rows = session.execute(
        select(CampaignStat.campaign_id, func.sum(CampaignStat.gifts),
               func.sum(CampaignStat.raised_fen), func.sum(CampaignStat.matched_fen))
        .where(CampaignStat.campaign_id.in_(ids), CampaignStat.dim == "total")
        .group_by(CampaignStat.campaign_id))
    return {cid: Totals(int(g or 0), int(r or 0), int(m or 0)) for cid, g, r, m in rows}


def totals(*, session: Session, campaign_id: int) -> Totals:
    """Return the campaign's total raised, matched and gifts."""
    return _totals_by_campaign(session, [campaign_id]).get(campaign_id, Totals())


def pools(*, session: Session, campaign_id: int) -> list[PoolLive]:
    """Return the campaign's pools with what is left of each (by priority, then id)."""
    rows = session.execute(
        select(MatchPool, Sponsor.name)
        .join(Sponsor, Sponsor.id == MatchPool.sponsor_id)
        .where(MatchPool.campaign_id == campaign_id)
        .order_by(MatchPool.priority, MatchPool.id)).all()
    stats = {s.key: s for s in session.scalars(
        select(CampaignStat).where(CampaignStat.campaign_id == campaign_id,
                                   CampaignStat.dim == "pool"))}
    # A quadratic round matches nothing gift by gift; what it shared out is in its shares.
    quadratic = [pool.id for pool, _ in rows if pool.kind == PoolKind.QUADRATIC]
    shared: dict[int, tuple[int, int]] = {}
    if quadratic:
        shared = {pid: (int(total or 0), int(n or 0)) for pid, total, n in session.execute(
            select(QuadraticShare.pool_id, func.sum(QuadraticShare.share_fen),
                   func.count(QuadraticShare.id))
            .where(QuadraticShare.pool_id.in_(quadratic)).group_by(QuadraticShare.pool_id))}
    result = []
    for pool, sponsor_name in rows:
        stat = stats.get(str(pool.id))
        matched, gifts = shared.get(pool.id) or ((stat.matched_fen, stat.gifts) if stat
                                                 else (0, 0))
        result.append(PoolLive(
            pool_id=pool.id, name=pool.name, sponsor_id=pool.sponsor_id,
            sponsor_name=sponsor_name, kind=pool.kind.value, status=pool.status.value,
            committed_fen=pool.committed_fen, remaining_fen=pool.remaining_fen,
            percent_left=_percent(pool.remaining_fen, pool.committed_fen),
            exhausted_at=pool.exhausted_at,
            matched_fen=matched, gifts=gifts,
        ))
    return result


def _percent(part: int, whole: int) -> int:
    if whole <= 0:
        return 0
    return max(0, min(100, part * 100 // whole))


def minute_key(moment: dt.datetime) -> str:
    """Return the ``minute`` stat key of a moment: ``YYYY-MM-DDTHH:MM``, China time."""
    return moment.astimezone(CHINA_TZ).strftime(MINUTE_FORMAT)


def gifts_per_minute(*, session: Session, campaign_id: int, now: dt.datetime | None = None,
                     minutes: int = CHART_MINUTES) -> list[MinuteCount]:
    """Return gifts and money per minute for the ``minutes`` minutes up to ``now`` (oldest
    first, every minute present; the last one is the minute still running)."""
    end = (now or utcnow()).astimezone(CHINA_TZ).replace(second=0, microsecond=0)
    keys = [(end - dt.timedelta(minutes=i)) for i in range(minutes - 1, -1, -1)]
    first, last = keys[0].strftime(MINUTE_FORMAT), keys[-1].strftime(MINUTE_FORMAT)
    found = {s.key: s for s in session.scalars(
        select(CampaignStat).where(
            CampaignStat.campaign_id == campaign_id, CampaignStat.dim == "minute",
            CampaignStat.key >= first, CampaignStat.key <= last))}
    result = []
    for moment in keys:
        key = moment.strftime(MINUTE_FORMAT)
        stat = found.get(key)
        result.append(MinuteCount(minute=key, label=moment.strftime("%H:%M"),
                                  gifts=stat.gifts if stat else 0,
                                  raised_fen=stat.raised_fen if stat else 0))
    return result


def _last_active_moment(session: Session, campaign_id: int) -> dt.datetime | None:
    key = session.scalar(select(func.max(CampaignStat.key)).where(
        CampaignStat.campaign_id == campaign_id, CampaignStat.dim == "minute"))
    if not key:
        return None
    try:
        return dt.datetime.strptime(key, MINUTE_FORMAT).replace(tzinfo=CHINA_TZ)
    except ValueError:
        return None


def leaderboard(*, session: Session, campaign_id: int, board: str,
                limit: int = BOARD_SIZE) -> list[BoardEntry]:
    """Return the top ``limit`` of a leaderboard: projects, organizations and provinces by
    money raised, sponsors by money matched."""
    limit = max(1, min(limit, MAX_BOARD_SIZE))
    if board == "sponsors":
        return _sponsor_board(session, campaign_id, limit)
    dim = _BOARD_DIMS[board]
    stats = list(session.scalars(
        select(CampaignStat)
        .where(CampaignStat.campaign_id == campaign_id, CampaignStat.dim == dim)
        .order_by(CampaignStat.raised_fen.desc(), CampaignStat.gifts.desc(), CampaignStat.key)
        .limit(limit)))
    names = _names(session, board, [s.key for s in stats])
    entries = []
    for rank, s in enumerate(stats, start=1):
        name, name_en, url = names.get(s.key, (s.key, s.key, None))
        entries.append(BoardEntry(rank=rank, key=s.key, name=name, name_en=name_en, url=url,
                                  gifts=s.gifts, raised_fen=s.raised_fen,
                                  matched_fen=s.matched_fen))
    return entries


def _ids(keys: Iterable[str]) -> list[int]:
    return [int(k) for k in keys if k.isdigit()]


def _names(session: Session, board: str, keys: list[str]
           ) -> dict[str, tuple[str, str, str | None]]:
    if board == "projects":
        rows = session.execute(select(Project.id, Project.title)
                               .where(Project.id.in_(_ids(keys))))
        return {str(i): (t, t, f"/projects/{i}") for i, t in rows}
    if board == "organizations":
        rows = session.execute(select(Organization.id, Organization.name)
                               .where(Organization.id.in_(_ids(keys))))
        return {str(i): (n, n, f"/organizations/{i}") for i, n in rows}
    # Provinces are stored by their short Chinese name; a gift without one has key "".
    return {k: (k or "—", regions.display_name(k, "en") if k else "—", None) for k in keys}


def _sponsor_board(session: Session, campaign_id: int, limit: int) -> list[BoardEntry]:
    by_sponsor: dict[int, list[PoolLive]] = {}
    for pool in pools(session=session, campaign_id=campaign_id):
        by_sponsor.setdefault(pool.sponsor_id, []).append(pool)
    rows = []
    for sponsor_id, its in by_sponsor.items():
        rows.append((sum(p.matched_fen for p in its), sum(p.committed_fen for p in its),
                     sum(p.gifts for p in its), sponsor_id, its[0].sponsor_name))
    rows.sort(key=lambda r: (-r[0], -r[1], r[3]))
    return [BoardEntry(rank=rank, key=str(sid), name=name, name_en=name, url=None,
                       gifts=gifts, raised_fen=committed, matched_fen=matched)
            for rank, (matched, committed, gifts, sid, name) in enumerate(rows[:limit], 1)]


def leaderboards(*, session: Session, campaign_id: int, limit: int = BOARD_SIZE
                 ) -> dict[str, list[BoardEntry]]:
    """Return all four leaderboards (see :func:`leaderboard`)."""
    return {b: leaderboard(session=session, campaign_id=campaign_id, board=b, limit=limit)
            for b in BOARDS}


def snapshot(*, session: Session, campaign: Campaign, now: dt.datetime | None = None,
             limit: int = BOARD_SIZE) -> Snapshot:
    """Return everything the dashboard shows, read in the caller's (one) transaction."""
    now = now or utcnow()
    # An ended (or not yet open) campaign's chart shows its last active half hour.
    chart_end = now
    if not is_open(campaign, now):
        last = _last_active_moment(session, campaign.id)
        if last is not None and last < now:
            chart_end = last
    per_minute = gifts_per_minute(session=session, campaign_id=campaign.id, now=chart_end)
    # The last complete minute: the running one is still filling up.
    last_minute = per_minute[-2].gifts if chart_end == now else per_minute[-1].gifts
    return Snapshot(
        campaign_id=campaign.id, slug=campaign.slug, name=campaign.name,
        name_en=campaign.name_en or campaign.name, status=campaign.status.value,
        open_now=is_open(campaign, now),
        totals=totals(session=session, campaign_id=campaign.id),
        pools=pools(session=session, campaign_id=campaign.id),
        per_minute=per_minute, gifts_last_minute=last_minute,
        boards=leaderboards(session=session, campaign_id=campaign.id, limit=limit),
        as_of=now,
    )


class SharedSnapshots:
    """Campaigns' snapshots shared by every server process through Redis: read once per tick
    for all of them (``shanju serve --workers N``, several machines; ADR 0037).

    Per campaign, one key holds the latest snapshot (its JSON and when it was read) and a
    second, short-lived key is the claim to read the next one: the process whose
    ``SET … NX PX`` wins reads the database and stores the snapshot; the others take the
    stored one (at most one tick older) — a tick costs each process one ``GET``, not a read
    of the database. Redis away: each process reads for itself (logged), as without it.
    """

    def __init__(self, url: str, *, namespace: str) -> None:
        import redis

        # The broker's URL may carry ``?namespace=NAME`` (deployments sharing one Redis,
        # summit/broker.py): not a connection parameter, so taken off the URL (redis-py would
        # refuse every command) and put in the keys, before the database's own namespace.
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        deployment = "".join(v for k, v in query if k == "namespace")
        url = urlunsplit(parts._replace(query=urlencode(
            [(k, v) for k, v in query if k != "namespace"])))
        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        # Deployments (and test databases) sharing one Redis never read each other's.
        self.PREFIX = (f"shanju:{deployment + ':' if deployment else ''}{namespace}"
                       ":live:snapshot:")

    def latest(self, campaign_id: int) -> tuple[float, Snapshot] | None:
        """The stored snapshot and when it was read (``time.time()``), or None."""
        raw = self.client.get(f"{self.PREFIX}{campaign_id}")
        if raw is None:
            return None
        stored = json.loads(raw)
        return float(stored["at"]), Snapshot.from_json(stored["snapshot"])

    def claim(self, campaign_id: int, ttl: float) -> bool:
        """Whether this process reads the next snapshot (for ``ttl`` seconds no other does)."""
        return bool(self.client.set(f"{self.PREFIX}{campaign_id}:claim", b"1", nx=True,
                                    px=max(1, int(ttl * 1000))))

    def store(self, campaign_id: int, snap: Snapshot) -> None:
        """Store a snapshot just read (kept a minute: an idle campaign's goes away)."""
        payload = json.dumps({"at": time.time(), "snapshot": snap.to_json()},
                             ensure_ascii=False, separators=(",", ":"))
        self.client.set(f"{self.PREFIX}{campaign_id}", payload, px=60_000)


class SnapshotCache:
    """Snapshots of the process, each reused for ``ttl`` seconds: page views, API calls and
    the broadcaster of a busy campaign share one read a second instead of one each. With
    ``shared`` (Redis), one read a second for all processes (:class:`SharedSnapshots`).

    A snapshot holds plain values only (no rows of a session), so threads may share it.
    """

    def __init__(self, *, ttl: float = 1.0, shared: SharedSnapshots | None = None) -> None:
        self.ttl = ttl
        self.shared = shared
        self._lock = threading.Lock()
        self._items: dict[int, tuple[float, Snapshot]] = {}
        self.reads = 0  # how many snapshots this process read (for tests and metrics)

    def get(self, *, session: Session, campaign: Campaign) -> Snapshot:
        """Return the campaign's snapshot: the cached one while fresh, else the shared one
        while fresh, else read it now."""
        with self._lock:
            hit = self._items.get(campaign.id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        if self.shared is not None:
            try:
                return self._get_shared(session, campaign, stale=hit)
            except Exception as exc:  # noqa: BLE001 - Redis away: read here, as without it
                log.warning("campaigns.live.shared_unavailable", error=type(exc).__name__)
        return self._read(session, campaign)

    def _read(self, session: Session, campaign: Campaign) -> Snapshot:
        snap = snapshot(session=session, campaign=campaign)
        with self._lock:
            self._items[campaign.id] = (time.monotonic(), snap)
            self.reads += 1
        return snap

    def _keep(self, campaign_id: int, snap: Snapshot, age: float) -> Snapshot:
        with self._lock:
            self._items[campaign_id] = (time.monotonic() - max(0.0, age), snap)
        return snap

    def _get_shared(self, session: Session, campaign: Campaign,
                    stale: tuple[float, Snapshot] | None) -> Snapshot:
        assert self.shared is not None  # noqa: S101 - the caller checks
        stored = self.shared.latest(campaign.id)
        if stored is not None and time.time() - stored[0] < self.ttl:
            return self._keep(campaign.id, stored[1], time.time() - stored[0])
        if self.shared.claim(campaign.id, self.ttl):
            snap = self._read(session, campaign)
            self.shared.store(campaign.id, snap)
            return snap
        # Another process is reading this tick's: the one before, a tick older at most.
        if stored is not None:
            return self._keep(campaign.id, stored[1], time.time() - stored[0])
        return stale[1] if stale is not None else self._read(session, campaign)


def read_snapshot_json(database: Database, campaign_id: int, cache: SnapshotCache) -> str:
    """Read a campaign's snapshot (through ``cache``) in a read transaction of its own; return
    it as JSON text."""
    with database.transaction(write=False) as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise NotFound(N_("This campaign does not exist."), code="campaign_not_found")
        data = cache.get(session=session, campaign=campaign).to_json()
    # Without the moment it was read, an unchanged campaign reads the same text each time, so
    # the broadcaster pushes only what changed.
    data.pop("as_of", None)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


# --- a project's match status ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolCap:
    """A pool's per-project daily cap for one project: the cap and what is left of it today."""

    pool_id: int
    pool_name: str
    sponsor_name: str
    cap_fen: int | None  # None: the pool has no per-project daily cap
    used_fen: int
    left_fen: int | None  # None: no cap; else max(0, cap - used), never above the pool
    pool_remaining_fen: int


@dataclass(frozen=True, slots=True)
class ProjectMatch:
    """A project's matching in one campaign, for its page."""

    campaign: Campaign
    enrolled: bool  # approved
    enrolment_status: str
    frozen: bool
    open_now: bool
    day: dt.date
    matched_today_fen: int
    raised_fen: int  # in the campaign so far
    matched_fen: int
    gifts: int
    caps: list[PoolCap] = field(default_factory=list)

    @property
    def cap_left_fen(self) -> int | None:
        """What is left today of the pools' per-project daily caps (None: no pool caps it)."""
        capped = [c.left_fen for c in self.caps if c.left_fen is not None]
        return sum(capped) if capped else None


_PROJECT_CAP_ONLY = RuleParams(per_project_daily_cap_fen=1)


def project_day_counter_key(pool_id: int, project_id: int, day: dt.date) -> str:
    """Return the counter key behind a pool's per-project daily cap, as the rules name it
    (asked of ``rules.counter_keys`` so the two never disagree)."""
    context = rules.GiftContext(order_id="", amount_fen=1, donor_key="", project_id=project_id,
                                organization_id=0, day=day.isoformat(), hhmm="00:00")
    (key,) = rules.counter_keys(_PROJECT_CAP_ONLY, pool_id, context)
    return key


def _project_day_used(session: Session, campaign_id: int, pool_ids: Sequence[int],
                      project_id: int, day: dt.date) -> dict[int, int]:
    # The one place that knows how the engine counts a project's matches per pool and day.
    keys = {project_day_counter_key(p, project_id, day): p for p in pool_ids}
    if not keys:
        return {}
    rows = session.execute(select(CampaignCounter.key, CampaignCounter.value).where(
        CampaignCounter.campaign_id == campaign_id, CampaignCounter.key.in_(list(keys))))
    return {keys[k]: int(v) for k, v in rows}


def project_match_status(*, session: Session, project_id: int,
                         now: dt.datetime | None = None) -> list[ProjectMatch]:
    """Return the project's match status in each live or scheduled campaign it applied to."""
    now = now or utcnow()
    day = now.astimezone(CHINA_TZ).date()
    rows = session.execute(
        select(Enrolment, Campaign).join(Campaign, Campaign.id == Enrolment.campaign_id)
        .where(Enrolment.project_id == project_id,
               Campaign.status.in_((CampaignStatus.LIVE, CampaignStatus.SCHEDULED)),
               Enrolment.status.in_((EnrolmentStatus.APPROVED, EnrolmentStatus.APPLIED)))
        .order_by(Campaign.starts_on, Campaign.id)).all()
    result = []
    for enrolment, campaign in rows:
        enrolled = enrolment.status == EnrolmentStatus.APPROVED
        stat = session.get(CampaignStat, (campaign.id, "project", str(project_id)))
        matched_today = 0
        caps: list[PoolCap] = []
        if enrolled:
            matched_today = int(session.scalar(
                select(func.coalesce(func.sum(CampaignGift.matched_fen), 0)).where(
                    CampaignGift.campaign_id == campaign.id,
                    CampaignGift.project_id == project_id, CampaignGift.day == day,
                    CampaignGift.match_status.in_((MatchStatus.MATCHED, MatchStatus.HELD)),
                )) or 0)
            caps = _caps(session, campaign.id, project_id, day)
        result.append(ProjectMatch(
            campaign=campaign, enrolled=enrolled, enrolment_status=enrolment.status.value,
            frozen=enrolment.matching_frozen, open_now=is_open(campaign, now), day=day,
            matched_today_fen=matched_today,
            raised_fen=stat.raised_fen if stat else 0,
            matched_fen=stat.matched_fen if stat else 0, gifts=stat.gifts if stat else 0,
            caps=caps,
        ))
    return result


def _caps(session: Session, campaign_id: int, project_id: int, day: dt.date) -> list[PoolCap]:
    rows = session.execute(
        select(MatchPool, Sponsor.name, PoolRule.params)
        .join(Sponsor, Sponsor.id == MatchPool.sponsor_id)
        .join(PoolRule, (PoolRule.pool_id == MatchPool.id)
              & (PoolRule.version == MatchPool.rule_version))
        .where(MatchPool.campaign_id == campaign_id, MatchPool.kind == PoolKind.MATCHING,
               MatchPool.status == PoolStatus.ACTIVE)
        .order_by(MatchPool.priority, MatchPool.id)).all()
    used = _project_day_used(session, campaign_id, [p.id for p, _, _ in rows], project_id, day)
    caps = []
    for pool, sponsor_name, params in rows:
        cap = RuleParams.model_validate(params).per_project_daily_cap_fen
        spent = used.get(pool.id, 0)
        left = None if cap is None else min(max(0, cap - spent), pool.remaining_fen)
        caps.append(PoolCap(pool_id=pool.id, pool_name=pool.name, sponsor_name=sponsor_name,
                            cap_fen=cap, used_fen=spent, left_fen=left,
                            pool_remaining_fen=pool.remaining_fen))
    return caps


# --- the broadcaster -------------------------------------------------------------------------


class Broadcaster:
    """One background task that reads each watched campaign's snapshot at most once per
    ``interval`` seconds and pushes it, when it changed, to that campaign's subscribers.

    ``read(campaign_id)`` returns the snapshot as text; it runs in a worker thread (it queries
    the database). The task runs only while someone is subscribed, on the event loop of the
    subscribers; a subscriber's queue holds one snapshot, and a newer one replaces it.
    """

    def __init__(self, read: Callable[[int], str], *, interval: float = 1.0) -> None:
        self._read = read
        self.interval = interval
        self._subscribers: dict[int, set[asyncio.Queue[str]]] = {}
        self._latest: dict[int, tuple[float, str]] = {}  # campaign → (read at, snapshot)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.reads = 0  # how many snapshots were read (for tests and metrics)

    @property
    def running(self) -> bool:
        """Whether the background task is running (it stops when nobody listens)."""
        return self._task is not None and not self._task.done()

    def subscribers(self, campaign_id: int) -> int:
        """How many listen to a campaign."""
        return len(self._subscribers.get(campaign_id, ()))

    @asynccontextmanager
    async def subscribe(self, campaign_id: int) -> AsyncIterator[asyncio.Queue[str]]:
        """Listen to a campaign: a queue that receives its snapshots (the latest at once,
        when one is known)."""
        self._ensure_running()
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        latest = self._latest.get(campaign_id)
        if latest is not None and latest[1]:
            queue.put_nowait(latest[1])
        self._subscribers.setdefault(campaign_id, set()).add(queue)
        if (latest is None or not latest[1]) and self._wake is not None:
            self._wake.set()
        try:
            yield queue
        finally:
            subs = self._subscribers.get(campaign_id)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self._subscribers[campaign_id]
                    self._latest.pop(campaign_id, None)
                    if not self._subscribers and self._wake is not None:
                        self._wake.set()  # nobody left: let the task end now

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (e.g. a test client's): what belonged to the old one is gone.
            self._subscribers.clear()
            self._latest.clear()
            self._task = None
            self._loop = loop
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="campaign-live-broadcaster")

    async def _run(self) -> None:
        assert self._wake is not None  # noqa: S101 - set by _ensure_running before the task
        wake = self._wake
        # Let the subscriber that started us register before the first look.
        await asyncio.sleep(0)
        while self._subscribers:
            wake.clear()
            for campaign_id in list(self._subscribers):
                latest = self._latest.get(campaign_id)
                if latest is not None and time.monotonic() - latest[0] < self.interval:
                    continue
                await self._refresh(campaign_id, latest)
            due = [t for t, _ in self._latest.values()]
            pause = self.interval - (time.monotonic() - min(due)) if due else self.interval
            try:
                await asyncio.wait_for(wake.wait(), timeout=max(0.05, pause))
            except TimeoutError:
                pass

    async def _refresh(self, campaign_id: int, latest: tuple[float, str] | None) -> None:
        try:
            payload = await asyncio.to_thread(self._read, campaign_id)
        except Exception:  # noqa: BLE001 - one failed read must not end every stream
            log.exception("campaigns.live.read_failed", campaign_id=campaign_id)
            self._latest[campaign_id] = (time.monotonic(), latest[1] if latest else "")
            return
        self.reads += 1
        subs = self._subscribers.get(campaign_id)
        if subs is None:
            return  # everyone left while we read
        self._latest[campaign_id] = (time.monotonic(), payload)
        if latest is not None and latest[1] == payload:
            return
        for queue in subs:
            offer_latest(queue, payload)


def snapshot_cache(state: Any) -> SnapshotCache:
    """Return the application's snapshot cache (``app.state``; one per process), shared
    through Redis when the live data's broker (``SHANJU_SUMMIT_BROKER_URL``) is Redis."""
    found: SnapshotCache | None = getattr(state, "campaign_snapshots", None)
    if found is None:
        settings = getattr(state, "settings", None)
        url = getattr(settings, "summit_broker_url", "") or ""
        shared = None
        if url.startswith(("redis://", "rediss://")):
            # One namespace per database: the deployment's processes share their snapshots.
            database_url = str(getattr(settings, "database_url", ""))
            shared = SharedSnapshots(url, namespace=hashlib.sha256(
                database_url.encode()).hexdigest()[:16])
        found = state.campaign_snapshots = SnapshotCache(shared=shared)
    return found


def broadcaster(state: Any) -> Broadcaster:
    """Return the application's broadcaster (``app.state``, whose ``db`` it reads; one per
    process), created on first use."""
    found: Broadcaster | None = getattr(state, "campaign_broadcaster", None)
    if found is None:
        database: Database = state.db
        cache = snapshot_cache(state)
        found = Broadcaster(lambda cid: read_snapshot_json(database, cid, cache))
        state.campaign_broadcaster = found
    return found


def offer_latest(queue: asyncio.Queue[str], item: str) -> None:
    """Put ``item`` into a one-slot queue, replacing what a slow reader has not taken yet."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)
