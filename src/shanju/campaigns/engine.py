"""The group-commit engine: giving-day gifts and their matches, many per transaction.

A single writer per process gathers submitted gifts for a few milliseconds and commits them as
one transaction — gifts, matching decisions, counters, pools, one balanced journal entry and
the live aggregates — then answers every submitter once the batch is durable.
:func:`apply_batch` is that transaction's work (it never commits); :class:`GroupCommitEngine`
is the writer thread around it. Locking protocol: ``docs/locking.md``; the design and its
measurements: ``docs/campaigns/engine.md``.

Second generation (issue 15): the writer does only what needs the campaign's lock.

- **Submitters prepare.** Everything about a gift that needs no lock — its China-time day and
  minute, its anti-fraud keys, the columns of its row that do not depend on the decision, the
  parts of its transparency leaves (the donor's commitment included) — is worked out by
  :func:`prepare`, in the submitter's thread (:meth:`GroupCommitEngine.submit`), before the
  gift reaches the writer.
- **The writer remembers.** Between its batches a writer keeps its campaigns' counters in
  memory (:class:`WriterMemory`): read once, then written behind (the changed ones, in the
  batch's transaction). It trusts them only while the campaign's ``lock_version``, read under
  the lock, is the one its own last batch left — any other holder of the lock since (another
  process, a refund, a top-up, a new rule version) moved it, and the counters are read again.
- **Aggregated postings, per-gift detail.** A batch posts one journal entry whose legs are the
  exact sums per account; each gift keeps its row and its gift and match leaves in the log,
  rendered from the prepared parts (``EntrySpec.prebuilt``).
- **One answer per batch** to each event loop waiting on it (:meth:`submit_async`).

The hot path avoids per-gift ORM objects and per-gift SQL: a batch costs a fixed number of
statements (lock, the paid orders and their provider events, duplicates, enrolments, pools,
donors, counters not in memory, gift ids, the gifts in one ``executemany``/``COPY``, counters,
pools, one journal entry, stats), whatever its size.

A gift may carry the provider's notification that paid it (:class:`OrderNotice`, from the
gift pipeline's intake at a giving day's peak): the batch then also records the notification
once per ``(provider, event id)`` and moves the payment order to ``succeeded`` — the writes
that would otherwise cost one transaction per notification (``docs/locking.md``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import shanju.models  # noqa: F401 - every table mapped, so a bare writer process can flush
from shanju.campaigns import escrow as escrow_leases
from shanju.campaigns import fraud, locks, rules
from shanju.campaigns.escrow import EscrowView, LeaseLost
from shanju.campaigns.models import (
    CampaignCounter,
    CampaignGift,
    CampaignStatus,
    MatchPool,
    MatchStatus,
    PoolRule,
)
from shanju.campaigns.rawsql import RawSql
from shanju.campaigns.rules import GiftContext, RuleParams
from shanju.core.clock import utcnow
from shanju.core.config import get_settings
from shanju.core.db import Database
from shanju.core.errors import NotFound
from shanju.ledger import service as ledger
from shanju.transparency import leaves

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OrderNotice:
    """The provider's verified notification that paid a gift's payment order, for the batch to
    record: stored once per ``(provider, event_id)`` in ``provider_events``, and the order
    (``payment_intents`` row ``order_id``) moved to ``succeeded`` with the gift's
    ``provider_txn_id``, ``payer_hash`` and ``paid_at``."""

    event_id: str      # the provider's notification id (≤ 80 characters)
    event_type: str    # e.g. "payment.paid" (gifts.flows' event types)
    payload: str       # the notification's resource as JSON text, payer fields removed


@dataclass(frozen=True, slots=True)
class PaidGift:
    """A payment the provider confirmed for a giving-day order (the engine's input)."""

    order_id: str  # "o_...": unique per order; a repeat is a duplicate callback
    campaign_id: int
    project_id: int
    donor_id: int | None
    donor_name: str
    anonymous: bool
    message: str
    province: str | None
    amount_fen: int
    provider: str
    provider_txn_id: str
    payer_hash: str
    device_hash: str
    paid_at: dt.datetime
    # Set by the gift pipeline's peak intake: the batch records the notification and marks
    # the payment order paid (None: the order, if any, was marked by its own transaction).
    notice: OrderNotice | None = None


@dataclass(frozen=True, slots=True)
class GiftResult:
    """What became of one submitted gift."""

    order_id: str
    outcome: str  # "credited" | "duplicate"
    gift_id: int
    matched_fen: int
    match_status: str  # MatchStatus value
    reason: str  # reason code ("" when matched without remark)


# Reason codes the engine itself gives (rules.py and fraud.py give the others).
CAMPAIGN_NOT_LIVE = "campaign_not_live"
OUTSIDE_HOURS = "outside_hours"
NOT_ENROLLED = "not_enrolled"
MATCHING_FROZEN = "matching_frozen"

_CHINA_OFFSET_S = 8 * 3600
_EPOCH = dt.date(1970, 1, 1)
_NONE, _MATCHED, _HELD = MatchStatus.NONE.value, MatchStatus.MATCHED.value, MatchStatus.HELD.value

# Rule versions never change once written: parsed parameters are kept per process.
_rule_cache: dict[str, RuleParams] = {}

# A gift row: first the columns its submitter prepares, then those the batch decides.
_STATIC_COLUMNS = (
    "order_id", "campaign_id", "project_id", "donor_id", "donor_name", "anonymous", "message",
    "province", "amount_fen", "provider", "provider_txn_id", "payer_hash", "device_hash", "day",
    "status", "paid_at",
)
_DECIDED_COLUMNS = (
    "id", "organization_id", "pool_id", "rule_version", "matched_fen", "match_status", "reason",
    "reason_params", "hold_until", "batch_id",
)
_GIFT_COLUMNS = _STATIC_COLUMNS + _DECIDED_COLUMNS

# The holes of a gift's two leaves (``leaves.encode_parts``, in sorted key order).
_GIFT_HOLES = ("entry", "organization", "time")
_MATCH_HOLES = ("amount", "entry", "from", "organization", "pool", "time", "to")
_GIFT_KIND = "campaign.gift"
_MATCH_KIND = "campaign.match"


# --- what a submitter prepares ---------------------------------------------------------------


@dataclass(slots=True)
class Prepared:
    """A gift and everything about it that needs no lock (:func:`prepare`)."""

    gift: PaidGift
    minute_ix: int        # minutes since 1970-01-01 00:00 China time
    day: dt.date          # the China-time day
    iso: str              # that day, ISO
    hhmm: str             # the China-time "HH:MM"
    minute: str           # "YYYY-MM-DDTHH:MM" (the stats' minute)
    donor_key: str        # the rules' donor key: "u<id>", or "x<payer hash or order id>"
    fraud_keys: fraud.Keys
    row: tuple[Any, ...]  # the row's _STATIC_COLUMNS, as the driver takes them
    gift_leaf: tuple[bytes, ...]   # holes: _GIFT_HOLES
    match_leaf: tuple[bytes, ...]  # holes: _MATCH_HOLES


# Local time of a minute (China time), shared by every submitter: (day, iso, hhmm, minute).
_minutes: dict[int, tuple[dt.date, str, str, str]] = {}


def _local(minute_ix: int) -> tuple[dt.date, str, str, str]:
    local = _minutes.get(minute_ix)
    if local is None:
        day = _EPOCH + dt.timedelta(days=minute_ix // 1440)
        mins = minute_ix % 1440
        hhmm = f"{mins // 60:02d}:{mins % 60:02d}"
        iso = day.isoformat()
        local = (day, iso, hhmm, f"{iso}T{hhmm}")
        if len(_minutes) > 100_000:
            _minutes.clear()
        _minutes[minute_ix] = local
    return local


def prepare(gift: PaidGift, *, pg: bool, secret: str | None = None) -> Prepared:
    """Work out what ``gift`` needs no lock for: its local time, anti-fraud keys, the static
    columns of its row (for PostgreSQL's ``COPY`` if ``pg``, else SQLite's) and the parts of
    its gift and match leaves (``secret``: the log's salt key; default: the settings').

    Raises ``ValueError`` for a gift no batch could write (an amount that is not a positive
    integer of fen): its submitter is told at once.
    """
    amount = gift.amount_fen
    if type(amount) is not int or amount <= 0:
        raise ValueError("a gift's amount must be a positive integer of fen")
    if secret is None:
        secret = get_settings().salt_key
    seconds = fraud.unix_seconds(gift.paid_at)
    minute_ix = (seconds + _CHINA_OFFSET_S) // 60
    day, iso, hhmm, minute = _local(minute_ix)
    donor_id = gift.donor_id
    donor_key = (f"u{donor_id}" if donor_id is not None
                 else f"x{gift.payer_hash or gift.order_id}")
    keys = fraud.keys_of(donor_id=donor_id, payer_hash=gift.payer_hash,
                         device_hash=gift.device_hash, seconds=seconds,
                         project_id=gift.project_id)
    if pg:
        row: tuple[Any, ...] = (
            gift.order_id, gift.campaign_id, gift.project_id, donor_id, gift.donor_name,
            gift.anonymous, gift.message, gift.province, amount, gift.provider,
            gift.provider_txn_id, gift.payer_hash, gift.device_hash, day, "paid", gift.paid_at)
    else:
        row = (
            gift.order_id, gift.campaign_id, gift.project_id, donor_id, gift.donor_name,
            1 if gift.anonymous else 0, gift.message, gift.province, amount, gift.provider,
            gift.provider_txn_id, gift.payer_hash, gift.device_hash, iso, "paid",
            _sqlite_dt(gift.paid_at))
    gift_leaf, match_leaf = _leaf_parts(gift, secret)
    return Prepared(gift, minute_ix, day, iso, hhmm, minute, donor_key, keys, row, gift_leaf,
                    match_leaf)


# Account codes and their JSON text, by provider and by project (a gift needs both).
_clearing: dict[str, tuple[str, str]] = {}
_funds: dict[int, tuple[str, str]] = {}
_K = TypeVar("_K", str, int)


def _account_of(cache: dict[_K, tuple[str, str]], key: _K, code_of: Callable[[_K], str],
                limit: int) -> tuple[str, str]:
    """``key``'s account code and its JSON text, kept in ``cache`` (emptied past ``limit``)."""
    found = cache.get(key)
    if found is None:
        code = code_of(key)
        if len(cache) > limit:
            cache.clear()
        found = cache[key] = (code, leaves.json_text(code))
    return found


def _clearing_of(provider: str) -> tuple[str, str]:
    return _account_of(_clearing, provider, ledger.donor_clearing, 10_000)


def _fund_of(project_id: int) -> tuple[str, str]:
    return _account_of(_funds, project_id, ledger.project_fund, 100_000)


def _leaf_parts(gift: PaidGift, secret: str) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The parts of a gift's two leaves, cut where the batch fills in (``_GIFT_HOLES``,
    ``_MATCH_HOLES``): byte for byte the canonical encoding (``leaves.build``) of the details
    a batch posts — keys in sorted order, no spaces, strings as ``leaves.json_text`` writes
    them (``tests/campaigns/test_engine_leaves.py`` compares the two)."""
    text = leaves.json_text
    ref = text(f"gift:{gift.order_id}")
    project = gift.project_id
    campaign = gift.campaign_id
    donor = ""
    if gift.donor_id is not None:
        salt = leaves.donor_salt(secret, f"gift:{gift.order_id}")
        donor = f'"donor":"{leaves.donor_commitment(salt, f"user:{gift.donor_id}")}",'
    gift_leaf = (
        f'{{"amount":{gift.amount_fen},"campaign":{campaign},{donor}"entry":'.encode(),
        f',"from":{_clearing_of(gift.provider)[1]},"kind":"{_GIFT_KIND}",'
        f'"organization":'.encode(),
        f',"project":{project},"ref":{ref},"time":'.encode(),
        f',"to":{_fund_of(project)[1]},"v":{leaves.LEAF_VERSION}}}'.encode(),
    )
    match_leaf = (
        b'{"amount":',
        f',"campaign":{campaign},"entry":'.encode(),
        b',"from":',
        f',"kind":"{_MATCH_KIND}","organization":'.encode(),
        b',"pool":',
        f',"project":{project},"ref":{ref},"time":'.encode(),
        b',"to":',
        f',"v":{leaves.LEAF_VERSION}}}'.encode(),
    )
    return gift_leaf, match_leaf


# --- the writer's memory ---------------------------------------------------------------------


@dataclass(slots=True)
class _Remembered:
    version: int  # the campaign's lock_version as this writer's last committed batch left it
    counters: dict[str, int] = field(default_factory=dict)  # a key absent here: not known


class WriterMemory:
    """What one writer keeps of its campaigns between batches: their counters.

    :func:`apply_batch` reads from it the counters it holds for a campaign if — and only if —
    the campaign's ``lock_version`` under the lock is the one the writer's last batch left;
    otherwise it forgets the campaign and reads the counters from the database. What a batch
    changed is staged, and becomes memory only once the batch committed (:meth:`adopt`); a
    failed batch forgets everything (:meth:`forget`).
    """

    #: Counters kept per campaign at most (a giving day's donors × a few keys); past this the
    #: campaign's memory starts again empty.
    MAX_KEYS = 2_000_000

    def __init__(self) -> None:
        self._campaigns: dict[int, _Remembered] = {}
        self._staged: list[tuple[int, int, dict[str, int]]] = []
        self.hits = 0     # counters found in memory
        self.misses = 0   # counters read from the database
        self.reloads = 0  # campaigns whose memory was found out of date

    def _get(self, campaign_id: int, version: int) -> dict[str, int]:
        """The counters known for a campaign locked at ``version`` (after the increment)."""
        known = self._campaigns.get(campaign_id)
        if known is None or known.version != version - 1:
            if known is not None:
                self.reloads += 1
            known = self._campaigns[campaign_id] = _Remembered(version - 1)
        return known.counters

    def _stage(self, campaign_id: int, version: int, counters: dict[str, int]) -> None:
        self._staged.append((campaign_id, version, counters))

    def adopt(self) -> None:
        """The batch committed: what it staged is now what the writer knows."""
        for campaign_id, version, counters in self._staged:
            known = self._campaigns.get(campaign_id)
            if known is None or known.version != version - 1:
                known = self._campaigns[campaign_id] = _Remembered(version)
            known.version = version
            if len(known.counters) + len(counters) > self.MAX_KEYS:
                known.counters = {}
            known.counters.update(counters)
        self._staged.clear()

    def forget(self) -> None:
        """The batch failed (or its outcome is unknown): remember nothing."""
        self._campaigns.clear()
        self._staged.clear()


class _Sql(RawSql):
    """Raw DBAPI access in the session's transaction (SQLite ``?`` or psycopg ``%s``)."""

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """A one-parameter ``column IN (values)``: ``= ANY(%s::type[])`` (an array literal,
        :func:`pg_array`) or ``IN json_each(?)``."""
        if self.pg:
            kind = "bigint" if values and isinstance(values[0], int) else "text"
            return f"{column} = ANY(?::{kind}[])", pg_array(values)
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(values))  # noqa: S608


def pg_array(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal of ints or texts (every text quoted and escaped), for one
    ``?::type[]`` parameter: a batch's arrays hold thousands of elements, and the driver's
    list adaptation cost several times more than this join."""
    if values and isinstance(values[0], int):
        return "{" + ",".join(["NULL" if v is None else str(int(v)) for v in values]) + "}"
    return "{" + ",".join([
        "NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        for v in values]) + "}"


def _sqlite_dt(value: dt.datetime) -> str:
    # The storage format of SQLAlchemy's SQLite DateTime (naive UTC, with microseconds).
    if value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _rule(raw: Any) -> RuleParams:
    """Parse a rule version's params (cached by their text: versions never change)."""
    text = raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True)
    params = _rule_cache.get(text)
    if params is None:
        params = RuleParams.model_validate(json.loads(text))
        if len(_rule_cache) > 10_000:
            _rule_cache.clear()
        _rule_cache[text] = params
    return params


def _in_hours(opens_at: str, closes_at: str, hhmm: str) -> bool:
    return opens_at <= hhmm <= closes_at


@dataclass(slots=True)
class _Pool:
    id: int
    campaign_id: int
    remaining: int
    version: int
    params: RuleParams
    spent: int = 0


@dataclass(slots=True)
class _Decided:
    prep: Prepared
    org_id: int
    pool_id: int | None
    rule_version: int | None
    matched: int
    status: str
    reason: str
    params: dict[str, Any] | None
    hold_until: dt.datetime | None
    gift_id: int = 0


def apply_batch(session: Session, gifts: Sequence[PaidGift], *, worker: str = "",
                prepared: Sequence[Prepared] | None = None,
                memory: WriterMemory | None = None,
                escrow: EscrowView | None = None) -> list[GiftResult]:
    """Credit a batch of paid gifts and decide their matches, in the caller's transaction.

    Every gift is credited (the money was paid); only its match may be refused. A gift whose
    order was already written (or that repeats an earlier gift of the batch) is answered
    ``duplicate`` with the first gift's data and changes nothing.

    ``prepared``: the gifts as their submitters prepared them (:func:`prepare`, same order);
    ``memory``: the writer's memory of its campaigns' counters (the caller adopts what the
    batch staged once it committed, or forgets it).

    ``escrow``: the batch spends its writer's escrow lease (``campaigns/escrow.py``) instead
    of locking the campaign rows, and queues its leaves for the log's sequencer (no memory:
    an escrow batch reads its counters under its fence).
    """
    if not gifts:
        return []
    # A batch allocates a few objects per gift and frees them all at the end: the cyclic
    # garbage collector would run hundreds of times over the whole heap meanwhile for
    # nothing (measured: about a quarter of the batch's CPU). It is off for the batch only.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _apply_batch(session, gifts, worker, prepared, memory, escrow)
    finally:
        if paused:
            gc.enable()


def _apply_batch(session: Session, gifts: Sequence[PaidGift], worker: str,
                 prepared: Sequence[Prepared] | None,
                 memory: WriterMemory | None,
                 escrow: EscrowView | None) -> list[GiftResult]:
    campaign_ids = sorted({g.campaign_id for g in gifts})
    # 1. The lock: campaign rows, ascending id. Everything below is read after it.
    # >>> escrow seam (issue 15): a lease's fence instead of the campaign lock.
    if escrow is not None:
        memory = None  # an escrow batch neither reads nor keeps a writer's memory
        campaigns = escrow.fence(session, campaign_ids)
    else:
        campaigns = locks.lock_campaigns(session, campaign_ids)
        if memory is not None and escrow_leases.any_active(session):
            # Escrow writers change counters without the campaign lock: while any lease is
            # active, this writer neither trusts nor keeps memory (docs/locking.md).
            memory.forget()
            memory = None
    # <<< escrow seam
    for cid in campaign_ids:
        if cid not in campaigns:
            raise NotFound("The campaign does not exist.", code="campaign_not_found")
    sql = _Sql(session)
    now = utcnow()

    # 2. The payment orders the batch's notifications paid, and the notifications: before the
    # duplicates, so that a repeated notification of a credited gift is recorded like any.
    if any(g.notice is not None for g in gifts):
        _record_notices(sql, gifts, now)

    # 3. Duplicates: orders already written, and repeats inside the batch.
    where, arg = sql.in_list("order_id", [g.order_id for g in gifts])
    earlier = {
        str(r[0]): GiftResult(str(r[0]), "duplicate", int(r[1]), int(r[2]), str(r[3]), str(r[4]))
        for r in sql.rows(
            "SELECT order_id, id, matched_fen, match_status, reason FROM campaign_gifts "  # noqa: S608
            f"WHERE {where}", (arg,))
    }
    if prepared is None:
        secret = get_settings().salt_key
        prepared = [prepare(g, pg=sql.pg, secret=secret) for g in gifts]
    fresh: list[Prepared] = []
    seen: set[str] = set()
    for p in prepared:
        order_id = p.gift.order_id
        if order_id in earlier or order_id in seen:
            continue
        seen.add(order_id)
        fresh.append(p)
    if not fresh:
        if memory is not None:  # nothing changed, but this batch moved the lock version
            for cid in campaign_ids:
                memory._stage(cid, campaigns[cid].lock_version, {})
        return [earlier[g.order_id] for g in gifts]

    # 4. What the decisions need: enrolments, pools and rule versions, donors' staff orgs.
    project_ids = sorted({p.gift.project_id for p in fresh})
    where_c, arg_c = sql.in_list("campaign_id", campaign_ids)
    where_p, arg_p = sql.in_list("project_id", project_ids)
    enrolments: dict[tuple[int, int], tuple[int, bool, bool, str]] = {}
    for cid, pid, oid, status, frozen, why in sql.rows(
        "SELECT campaign_id, project_id, organization_id, status, matching_frozen, "  # noqa: S608
        f"frozen_reason FROM campaign_enrolments WHERE {where_c} AND {where_p}", (arg_c, arg_p),
    ):
        enrolments[(int(cid), int(pid))] = (int(oid), status == "approved", bool(frozen),
                                            str(why or ""))
    missing = sorted({p.gift.project_id for p in fresh
                      if (p.gift.campaign_id, p.gift.project_id) not in enrolments})
    project_orgs: dict[int, int] = {}
    if missing:
        where_m, arg_m = sql.in_list("id", missing)
        project_orgs = {int(pid): int(oid) for pid, oid in sql.rows(
            f"SELECT id, recipient_org_id FROM projects WHERE {where_m}", (arg_m,))}  # noqa: S608
        for pid in missing:
            if pid not in project_orgs:
                raise NotFound("The project does not exist.", code="project_not_found")

    pools_by_campaign: dict[int, list[_Pool]] = {cid: [] for cid in campaign_ids}
    pools: dict[int, _Pool] = {}
    for pid, cid, remaining, version, raw_params, built in sql.rows(
        "SELECT p.id, p.campaign_id, p.remaining_fen, p.rule_version, r.params, c.value "  # noqa: S608
        "FROM match_pools p JOIN match_pool_rules r "
        "ON r.pool_id = p.id AND r.version = p.rule_version "
        "LEFT JOIN campaign_counters c "
        "ON c.campaign_id = p.campaign_id AND c.key = 'p' || p.id || ':v' "
        f"WHERE p.{where_c} AND p.kind = 'matching' AND p.status = 'active' "
        "ORDER BY p.priority, p.id", (arg_c,),
    ):
        pool = _Pool(int(pid), int(cid), int(remaining), int(version), _rule(raw_params))
        # >>> escrow seam: what the batch may match is its lease's budget slice.
        if escrow is not None:
            if int(built or 1) != pool.version:
                raise LeaseLost("a pool's counters need rebuilding under the campaign lock")
            pool.remaining = escrow.remaining(pool.campaign_id, pool.id)
        # <<< escrow seam
        if int(built or 1) != pool.version:
            # A rule version written without flows.add_rule_version: bring the pool's
            # counters up to its caps now, under the lock, before anything reads them (and
            # forget what the writer remembers of them).
            rebuild_counters(session, pool_id=pool.id, campaign_id=pool.campaign_id,
                             params=pool.params, version=pool.version)
            if memory is not None:
                memory.forget()
        pools_by_campaign[pool.campaign_id].append(pool)
        pools[pool.id] = pool

    donor_ids = sorted({p.gift.donor_id for p in fresh if p.gift.donor_id is not None})
    staff_of: dict[int, int] = {}
    if donor_ids:
        where_d, arg_d = sql.in_list("id", donor_ids)
        staff_of = {int(uid): int(oid) for uid, oid in sql.rows(
            f"SELECT id, organization_id FROM users WHERE {where_d} "  # noqa: S608
            "AND role = 'org_staff' AND organization_id IS NOT NULL", (arg_d,))}

    # 5. Per gift: eligibility and the counter keys its decision reads (the anti-fraud keys
    # came prepared); the counters known to the writer are taken from its memory.
    remembered: dict[int, dict[str, int]] = {
        cid: (memory._get(cid, campaigns[cid].lock_version) if memory is not None else {})
        for cid in campaign_ids}
    # (campaign, minute) → "" or why the campaign does not match then.
    open_at: dict[tuple[int, int], str] = {}
    todo: list[tuple[Prepared, int, str, GiftContext | None, list[list[str]]]] = []
    batch_counters: dict[int, dict[str, int]] = {cid: {} for cid in campaign_ids}
    unknown: dict[int, set[str]] = {cid: set() for cid in campaign_ids}
    # Per campaign, per pool: (key prefix, tag) of each cap, in the order the rule applies
    # them — a gift's key is the prefix and its donor, project or organization and day
    # (rules.cap_key's keys, built by concatenation).
    pool_caps = {cid: [[(f"p{p.id}:{tag}:", tag) for _, tag, _ in rules.active_caps(p.params)]
                       for p in ps]
                 for cid, ps in pools_by_campaign.items()}
    for p in fresh:
        g = p.gift
        cid = g.campaign_id
        reason = open_at.get((cid, p.minute_ix))
        if reason is None:
            campaign = campaigns[cid]
            if campaign.status != CampaignStatus.LIVE or not (
                0 <= (p.day - campaign.starts_on).days < campaign.days
            ):
                reason = CAMPAIGN_NOT_LIVE
            elif not _in_hours(campaign.opens_at, campaign.closes_at, p.hhmm):
                reason = OUTSIDE_HOURS
            else:
                reason = ""
            open_at[(cid, p.minute_ix)] = reason
        enrolment = enrolments.get((cid, g.project_id))
        org_id = enrolment[0] if enrolment is not None else project_orgs[g.project_id]
        if reason:
            pass
        elif enrolment is None or not enrolment[1]:
            reason = NOT_ENROLLED
        elif enrolment[2]:
            reason = MATCHING_FROZEN
        ctx: GiftContext | None = None
        pool_keys: list[list[str]] = []
        if not reason:
            ctx = GiftContext(g.order_id, g.amount_fen, p.donor_key, g.project_id, org_id,
                              p.iso, p.hhmm)
            known = remembered[cid]
            mine = batch_counters[cid]
            wanted = unknown[cid]
            fk = p.fraud_keys
            by_tag = {"d": f"{p.donor_key}:{p.iso}", "j": f"{g.project_id}:{p.iso}",
                      "o": str(org_id), "t": p.iso}
            pool_keys = [[prefix + by_tag[tag] for prefix, tag in caps]
                         for caps in pool_caps[cid]]
            for key in (fk[0], fk[2], fk[3], fk[4], *[k for ks in pool_keys for k in ks]):
                if key and key not in mine:
                    value = known.get(key)
                    if value is None:
                        wanted.add(key)
                    else:
                        mine[key] = value
        todo.append((p, org_id, reason, ctx, pool_keys))

    # 6. The counters the writer does not know, in one query per campaign, under the lock.
    for cid in campaign_ids:
        wanted_keys = list(unknown[cid])
        mine = batch_counters[cid]
        if memory is not None:
            memory.hits += len(mine)
            memory.misses += len(wanted_keys)
        if not wanted_keys:
            continue
        mine.update(dict.fromkeys(wanted_keys, 0))
        if escrow is not None:  # >>> escrow seam: caps read as cap − slice
            mine.update(escrow.counters(session, cid, wanted_keys, {
                p.id: p.params for p in pools_by_campaign[cid]}))
            continue
        where_k, arg_k = sql.in_list("key", wanted_keys)
        for k, v in sql.rows(
                f"SELECT key, value FROM campaign_counters WHERE campaign_id = ? AND {where_k}",  # noqa: S608
                (cid, arg_k)):
            mine[str(k)] = int(v)
    before = {cid: dict(c) for cid, c in batch_counters.items()}

    # 7. Decide, gift by gift, in order.
    decided: list[_Decided] = []
    withhold, hold = fraud.Action.WITHHOLD, fraud.Action.HOLD
    for p, org_id, reason, ctx, pool_keys in todo:
        g = p.gift
        pool_id: int | None = None
        rule_version: int | None = None
        matched = 0
        status = _NONE
        params: dict[str, Any] | None = None
        hold_until: dt.datetime | None = None
        if reason == OUTSIDE_HOURS:  # what the donor's explanation names
            opening = campaigns[g.campaign_id]
            params = {"opens_at": opening.opens_at, "closes_at": opening.closes_at}
        elif reason == MATCHING_FROZEN:
            params = {"frozen_reason": enrolments[(g.campaign_id, g.project_id)][3]}
        if ctx is not None:
            cc = batch_counters[g.campaign_id]
            donor_id = g.donor_id
            verdict = fraud.assess_keys(
                p.fraud_keys, cc, organization_id=org_id,
                donor_org_id=staff_of.get(donor_id) if donor_id is not None else None)
            if verdict.action == withhold:
                reason, params = verdict.reason, (verdict.params or None)
            else:
                campaign_pools = pools_by_campaign[g.campaign_id]
                if not campaign_pools:
                    reason = rules.NO_POOL
                first: rules.Decision | None = None
                for pool, pkeys in zip(campaign_pools, pool_keys, strict=True):
                    dec = rules.decide(pool.params, pool_id=pool.id, gift=ctx, counters=cc,
                                       remaining_fen=pool.remaining, keys=pkeys)
                    if dec.matched_fen > 0:
                        pool.remaining -= dec.matched_fen
                        pool.spent += dec.matched_fen
                        pool_id, rule_version, matched = pool.id, pool.version, dec.matched_fen
                        reason, params = dec.reason, dec.params
                        break
                    if first is None:
                        first = dec
                if matched == 0 and first is not None:
                    reason, params = first.reason, first.params
                if matched and verdict.action == hold:
                    status = _HELD
                    reason = verdict.reason
                    params = {**(params or {}), **verdict.params} or None
                    hold_until = g.paid_at + dt.timedelta(
                        days=campaigns[g.campaign_id].hold_days)
                elif matched:
                    status = _MATCHED
            fraud.record_keys(p.fraud_keys, cc, matched=matched > 0)
        decided.append(_Decided(p, org_id, pool_id, rule_version, matched, status, reason,
                                params, hold_until))

    # 8. Write: the batch, the gifts, counters, pools, one journal entry, stats.
    if sql.pg:
        batch_id = int(sql.rows(
            "INSERT INTO campaign_batches (gifts, worker, committed_at) VALUES (?, ?, ?) "
            "RETURNING id", (len(decided), worker[:60], now))[0][0])
        ids = [int(r[0]) for r in sql.rows(
            "SELECT nextval('campaign_gifts_id_seq') FROM generate_series(1, ?)",
            (len(decided),))]
    else:
        batch_id = int(sql.rows(
            "INSERT INTO campaign_batches (gifts, worker, committed_at) VALUES (?, ?, ?) "
            "RETURNING id", (len(decided), worker[:60], _sqlite_dt(now)))[0][0])
        # The writer holds SQLite's write lock: nobody else can take these ids meanwhile.
        top = int(sql.rows("SELECT coalesce(max(id), 0) FROM campaign_gifts")[0][0])
        ids = list(range(top + 1, top + 1 + len(decided)))
    for d, gift_id in zip(decided, ids, strict=True):
        d.gift_id = gift_id
    _insert_gifts(sql, decided, batch_id)

    # >>> escrow seam: the lease's slices pay for the matches; no shared cap or pool row.
    if escrow is not None:
        for cid, cc in batch_counters.items():
            fraud_changed = escrow.spend(session, cid, before[cid], cc, {
                p.id: p.spent for p in pools_by_campaign[cid]})
            _upsert_counters(sql, [(cid, k, v) for k, v in fraud_changed])
    # <<< escrow seam
    for cid, cc in batch_counters.items():
        if escrow is not None:
            break
        old = before[cid]
        changed = {k: v for k, v in cc.items() if old[k] != v}
        _upsert_counters(sql, [(cid, k, v) for k, v in changed.items()])
        if memory is not None:
            memory._stage(cid, campaigns[cid].lock_version, cc)

    for pool in pools.values():
        if pool.spent and escrow is None:
            updated = sql.execute(
                "UPDATE match_pools SET remaining_fen = remaining_fen - ?, exhausted_at = "
                "CASE WHEN remaining_fen - ? = 0 AND exhausted_at IS NULL THEN ? "
                "ELSE exhausted_at END WHERE id = ? AND remaining_fen >= ?",
                (pool.spent, pool.spent, now if sql.pg else _sqlite_dt(now), pool.id,
                 pool.spent),
            )
            if updated != 1:  # pragma: no cover - the campaign lock makes this impossible
                raise RuntimeError(f"pool {pool.id} has less left than the batch matched")

    # >>> escrow seam: matches leave the lease's escrow account; leaves go to the queue.
    entry = ledger.post(session, _batch_entry(decided, batch_id, escrow),
                        queue_log=escrow is not None)
    sql.execute("UPDATE campaign_batches SET entry_id = ?, lease_id = ? WHERE id = ?",
                (entry.id, None if escrow is None else escrow.lease_id, batch_id))
    # <<< escrow seam
    _upsert_stats(sql, decided)

    # 9. Answers, in the order submitted.
    results: dict[str, GiftResult] = dict(earlier)
    out: list[GiftResult] = []
    first_seen: set[str] = set()
    for d in decided:
        order_id = d.prep.gift.order_id
        results[order_id] = GiftResult(order_id, "credited", d.gift_id, d.matched, d.status,
                                       d.reason)
    for g in gifts:
        r = results[g.order_id]
        if r.outcome == "credited" and g.order_id not in first_seen:
            first_seen.add(g.order_id)
            out.append(r)
        else:
            out.append(GiftResult(r.order_id, "duplicate", r.gift_id, r.matched_fen,
                                  r.match_status, r.reason))
    return out


# What a notification did, as gifts.flows.apply_report records it (provider_events.outcome).
PAID_NOW = "to_engine"            # this notification paid the order
PAID_BEFORE = "already_applied"   # the order was paid before (another event, a query)
_PAYABLE = "('requires_payment', 'failed')"  # payments.service.do_mark_succeeded's guard


def _record_notices(sql: _Sql, gifts: Sequence[PaidGift], now: dt.datetime) -> None:
    """Mark the notified payment orders paid and store their notifications, two statements.

    The orders move to ``succeeded`` by one guarded UPDATE (only from ``requires_payment`` or
    ``failed``: exactly one transaction ever changes an order, as
    ``payments.service.do_mark_succeeded``); the first notification of an order the UPDATE
    changed is recorded ``to_engine``, every other ``already_applied``. The notifications are
    inserted with ``ON CONFLICT (provider, event_id) DO NOTHING``: one delivered before (or
    twice in this batch) stays as it was first recorded. A provider transaction id that
    already belongs to another order fails the batch on its unique index; the engine then
    retries gift by gift and the intake records that one through ``gifts.flows.apply_report``.
    """
    orders: dict[str, PaidGift] = {}
    events: dict[tuple[str, str], PaidGift] = {}
    for g in gifts:
        if g.notice is None:
            continue
        orders.setdefault(g.order_id, g)
        events.setdefault((g.provider, g.notice.event_id), g)
    if sql.pg:
        changed = {str(r[0]) for r in sql.rows(
            "UPDATE payment_intents AS p SET status = 'succeeded', "  # noqa: S608
            "provider_txn_id = NULLIF(v.txn, ''), payer_hash = v.ph, succeeded_at = v.at "
            "FROM unnest(?::text[], ?::text[], ?::text[], ?::timestamptz[]) AS v(k, txn, ph, at) "
            f"WHERE p.id = v.k AND p.status IN {_PAYABLE} RETURNING p.id",
            ([g.order_id for g in orders.values()], [g.provider_txn_id for g in orders.values()],
             [g.payer_hash for g in orders.values()], [g.paid_at for g in orders.values()]))}
    else:
        changed = {str(r[0]) for r in sql.rows(
            "UPDATE payment_intents SET status = 'succeeded', "  # noqa: S608
            "provider_txn_id = NULLIF(v.txn, ''), payer_hash = v.ph, succeeded_at = v.at "
            "FROM (SELECT json_extract(value, '$[0]') AS k, json_extract(value, '$[1]') AS txn, "
            "json_extract(value, '$[2]') AS ph, json_extract(value, '$[3]') AS at "
            "FROM json_each(?)) AS v "
            f"WHERE payment_intents.id = v.k AND payment_intents.status IN {_PAYABLE} "
            "RETURNING id",
            (json.dumps([[g.order_id, g.provider_txn_id, g.payer_hash, _sqlite_dt(g.paid_at)]
                         for g in orders.values()]),))}
    rows: list[tuple[str, str, str, str, str, str]] = []
    for (provider, event_id), g in events.items():
        notice = g.notice
        assert notice is not None  # noqa: S101 - only gifts with a notice are here
        paid_now = g.order_id in changed and orders[g.order_id] is g
        rows.append((provider, event_id[:80], notice.event_type, g.order_id, notice.payload,
                     PAID_NOW if paid_now else PAID_BEFORE))
    if sql.pg:
        sql.execute(
            "INSERT INTO provider_events (provider, event_id, event_type, intent_id, payload, "
            "outcome, received_at) SELECT v.p, v.e, v.t, v.i, v.d::json, v.o, ? "
            "FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[]) "
            "AS v(p, e, t, i, d, o) ON CONFLICT (provider, event_id) DO NOTHING",
            (now, *([r[i] for r in rows] for i in range(6))))
    else:
        at = _sqlite_dt(now)
        sql.executemany(
            "INSERT INTO provider_events (provider, event_id, event_type, intent_id, payload, "
            "outcome, received_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (provider, event_id) DO NOTHING", [(*r, at) for r in rows])


def version_key(pool_id: int) -> str:
    """The counter recording which rule version a pool's cap counters were built for."""
    return f"p{pool_id}:v"


def rebuild_counters(session: Session, *, pool_id: int, campaign_id: int, params: RuleParams,
                     version: int) -> None:
    """Recompute a pool's cap counters from its standing matches for the caps of ``params``
    (rule ``version``), under the campaign lock. A pool's counters with no version record
    were built for version 1 (a new pool has no matches). Escrow leases holding headroom in
    the campaign are revoked first (their slices returned): the counters rebuilt count only
    standing matches, and no writer spends headroom granted under the old caps."""
    escrow_leases.revoke_campaign(session, campaign_id)
    session.execute(
        delete(CampaignCounter).where(CampaignCounter.campaign_id == campaign_id,
                                      CampaignCounter.key.startswith(f"p{pool_id}:",
                                                                     autoescape=True))
        .execution_options(synchronize_session=False))
    sums: dict[str, int] = {version_key(pool_id): version}
    caps = rules.active_caps(params)
    if caps:
        for row in session.execute(
            select(CampaignGift.order_id, CampaignGift.amount_fen, CampaignGift.donor_id,
                   CampaignGift.payer_hash, CampaignGift.project_id,
                   CampaignGift.organization_id, CampaignGift.day, CampaignGift.matched_fen)
            .where(CampaignGift.pool_id == pool_id,
                   CampaignGift.match_status.in_((MatchStatus.MATCHED, MatchStatus.HELD)))
        ):
            donor = (f"u{row.donor_id}" if row.donor_id is not None
                     else f"x{row.payer_hash or row.order_id}")
            ctx = GiftContext(row.order_id, row.amount_fen, donor, row.project_id,
                              row.organization_id, row.day.isoformat(), "")
            for _, tag, _ in caps:
                key = rules.cap_key(pool_id, tag, ctx)
                sums[key] = sums.get(key, 0) + row.matched_fen
    session.execute(insert(CampaignCounter), [
        {"campaign_id": campaign_id, "key": k, "value": v} for k, v in sums.items()])


def ensure_counters(session: Session, *, pool_id: int) -> None:
    """Rebuild a pool's counters if its rule version changed since they were built (call
    under the campaign lock)."""
    row = session.execute(
        select(MatchPool.campaign_id, MatchPool.rule_version, PoolRule.params)
        .join(PoolRule, (PoolRule.pool_id == MatchPool.id)
              & (PoolRule.version == MatchPool.rule_version))
        .where(MatchPool.id == pool_id)).one_or_none()
    if row is None:
        return
    built = session.scalar(select(CampaignCounter.value).where(
        CampaignCounter.campaign_id == row.campaign_id,
        CampaignCounter.key == version_key(pool_id)))
    if int(built or 1) != row.rule_version:
        rebuild_counters(session, pool_id=pool_id, campaign_id=row.campaign_id,
                         params=_rule(row.params), version=row.rule_version)


def _insert_gifts(sql: _Sql, decided: list[_Decided], batch_id: int) -> None:
    columns = ", ".join(_GIFT_COLUMNS)
    if sql.pg:
        cur = sql.raw.cursor()
        try:
            with cur.copy(f"COPY campaign_gifts ({columns}) FROM STDIN") as cp:
                for d in decided:
                    cp.write_row(d.prep.row + (
                        d.gift_id, d.org_id, d.pool_id, d.rule_version, d.matched, d.status,
                        d.reason, None if d.params is None else json.dumps(d.params),
                        d.hold_until, batch_id))
        finally:
            cur.close()
        return
    rows = [
        d.prep.row + (d.gift_id, d.org_id, d.pool_id, d.rule_version, d.matched, d.status,
                      d.reason, None if d.params is None else json.dumps(d.params),
                      None if d.hold_until is None else _sqlite_dt(d.hold_until), batch_id)
        for d in decided
    ]
    marks = ", ".join("?" * len(_GIFT_COLUMNS))
    sql.executemany(f"INSERT INTO campaign_gifts ({columns}) VALUES ({marks})", rows)  # noqa: S608


def _upsert_counters(sql: _Sql, changed: list[tuple[int, str, int]]) -> None:
    if not changed:
        return
    if sql.pg:
        sql.execute(
            "INSERT INTO campaign_counters (campaign_id, key, value) "
            "SELECT * FROM unnest(?::int[], ?::text[], ?::bigint[]) "
            "ON CONFLICT (campaign_id, key) DO UPDATE SET value = excluded.value",
            tuple(pg_array([c[i] for c in changed]) for i in range(3)),
        )
    else:
        sql.executemany(
            "INSERT INTO campaign_counters (campaign_id, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (campaign_id, key) DO UPDATE SET value = excluded.value", changed)


class _BatchLeaves:
    """A batch's leaves in the log, rendered from the parts its gifts came prepared with: per
    gift a ``campaign.gift`` leaf (donor's clearing → project, with the donor's commitment)
    and, if matched, a ``campaign.match`` leaf (pool → project, or pool → hold while held),
    both with the gift's ref (``ledger.EntrySpec.prebuilt``)."""

    def __init__(self, decided: list[_Decided], pool_account: Any = ledger.match_pool) -> None:
        self.decided = decided
        self.pool_account = pool_account  # an escrow batch: its lease's match_escrow accounts

    def render(self, entry_id: int, time: str) -> tuple[list[tuple[str | None, bytes]],
                                                       dict[str, int]]:
        entry = str(entry_id).encode()
        at = leaves.json_text(time).encode()
        orgs: dict[int, bytes] = {}
        pools: dict[int, tuple[str, bytes, bytes]] = {}  # pool → (code, "from" text, id)
        texts: dict[str, bytes] = {}  # account code → its JSON text ("to")
        moved: dict[str, int] = {}
        out: list[tuple[str | None, bytes]] = []
        for d in self.decided:
            g = d.prep.gift
            ref = "gift:" + g.order_id
            org = orgs.get(d.org_id)
            if org is None:
                org = orgs[d.org_id] = str(d.org_id).encode()
            a = d.prep.gift_leaf
            out.append((ref, a[0] + entry + a[1] + org + a[2] + at + a[3]))
            source = _clearing_of(g.provider)[0]
            project = _fund_of(g.project_id)[0]
            moved[source] = moved.get(source, 0) - g.amount_fen
            moved[project] = moved.get(project, 0) + g.amount_fen
            if d.matched and d.pool_id is not None:
                pool = pools.get(d.pool_id)
                if pool is None:
                    code = self.pool_account(d.pool_id)
                    pool = pools[d.pool_id] = (code, leaves.json_text(code).encode(),
                                               str(d.pool_id).encode())
                to = project if d.status == _MATCHED else ledger.match_hold(d.pool_id)
                to_text = texts.get(to)
                if to_text is None:
                    to_text = texts[to] = leaves.json_text(to).encode()
                m = d.prep.match_leaf
                out.append((ref, m[0] + str(d.matched).encode() + m[1] + entry + m[2] + pool[1]
                            + m[3] + org + m[4] + pool[2] + m[5] + at + m[6] + to_text + m[7]))
                moved[pool[0]] = moved.get(pool[0], 0) - d.matched
                moved[to] = moved.get(to, 0) + d.matched
        return out, moved


def _batch_entry(decided: list[_Decided], batch_id: int,
                 escrow: EscrowView | None = None) -> ledger.EntrySpec:
    """The batch's journal entry: exact sums per account of its gifts (zero legs omitted),
    with a gift leaf and a match leaf per gift in the log (:class:`_BatchLeaves`). An escrow
    batch's matches leave its lease's ``match_escrow:<lease>:<pool>`` accounts."""
    pool_account = ledger.match_pool if escrow is None else escrow.pool_account
    clearing: dict[str, int] = {}
    projects: dict[int, int] = {}
    pools: dict[int, int] = {}
    holds: dict[int, int] = {}
    for d in decided:
        g = d.prep.gift
        clearing[g.provider] = clearing.get(g.provider, 0) + g.amount_fen
        to_project = g.amount_fen + (d.matched if d.status == _MATCHED else 0)
        projects[g.project_id] = projects.get(g.project_id, 0) + to_project
        if d.matched and d.pool_id is not None:
            pools[d.pool_id] = pools.get(d.pool_id, 0) + d.matched
            if d.status == _HELD:
                holds[d.pool_id] = holds.get(d.pool_id, 0) + d.matched
    legs = [ledger.Leg(ledger.donor_clearing(p), -v) for p, v in sorted(clearing.items()) if v]
    legs += [ledger.Leg(ledger.project_fund(p), v) for p, v in sorted(projects.items()) if v]
    legs += [ledger.Leg(pool_account(p), -v) for p, v in sorted(pools.items()) if v]
    legs += [ledger.Leg(ledger.match_hold(p), v) for p, v in sorted(holds.items()) if v]
    return ledger.EntrySpec(kind="campaign.batch", legs=legs,
                            memo=f"{len(decided)} giving-day gifts",
                            dedupe_key=f"campaign.batch:{batch_id}",
                            prebuilt=_BatchLeaves(decided, pool_account))


def stat_rows(decided: Sequence[tuple[int, int, int, str | None, str, int | None, int, int, int]]
              ) -> dict[tuple[int, str, str], list[int]]:
    """Aggregate gifts into ``campaign_stats`` deltas.

    Each gift is ``(campaign, project, org, province, minute, pool or None, count, amount,
    matched)``; ``matched`` is the match still standing (matched or held), and a gift counts
    in its pool's row only while its match stands. ``shanju campaigns check`` recomputes the
    stats with this same function.
    """
    out: dict[tuple[int, str, str], list[int]] = {}

    def add(key: tuple[int, str, str], n: int, amount: int, matched: int) -> None:
        row = out.get(key)
        if row is None:
            out[key] = [n, amount, matched]
        else:
            row[0] += n
            row[1] += amount
            row[2] += matched

    groups: dict[tuple[int, int, int, str | None, str, int | None], list[int]] = {}
    for cid, pid, oid, prov, minute, pool, n, amount, matched in decided:
        gk = (cid, pid, oid, prov, minute, pool if matched else None)
        row = groups.get(gk)
        if row is None:
            groups[gk] = [n, amount, matched]
        else:
            row[0] += n
            row[1] += amount
            row[2] += matched
    for (cid, pid, oid, prov, minute, pool), (n, amount, matched) in groups.items():
        add((cid, "total", "all"), n, amount, matched)
        add((cid, "project", str(pid)), n, amount, matched)
        add((cid, "org", str(oid)), n, amount, matched)
        if prov:
            add((cid, "province", prov), n, amount, matched)
        add((cid, "minute", minute), n, amount, matched)
        if pool is not None:
            add((cid, "pool", str(pool)), n, amount, matched)
    return out


def upsert_stats(sql: _Sql, deltas: dict[tuple[int, str, str], list[int]]) -> None:
    """Add ``deltas`` to ``campaign_stats`` (under the campaign lock)."""
    # In key order: two writers' batches (escrow leases) lock shared rows in one order.
    rows = [(cid, dim, key, v[0], v[1], v[2]) for (cid, dim, key), v in sorted(deltas.items())
            if v[0] or v[1] or v[2]]
    if not rows:
        return
    update = ("ON CONFLICT (campaign_id, dim, key) DO UPDATE SET "
              "gifts = campaign_stats.gifts + excluded.gifts, "
              "raised_fen = campaign_stats.raised_fen + excluded.raised_fen, "
              "matched_fen = campaign_stats.matched_fen + excluded.matched_fen")
    if sql.pg:
        sql.execute(
            "INSERT INTO campaign_stats (campaign_id, dim, key, gifts, raised_fen, matched_fen) "  # noqa: S608
            "SELECT * FROM unnest(?::int[], ?::text[], ?::text[], ?::bigint[], ?::bigint[], "
            f"?::bigint[]) {update}",
            tuple(pg_array([r[i] for r in rows]) for i in range(6)),
        )
    else:
        sql.executemany(
            "INSERT INTO campaign_stats (campaign_id, dim, key, gifts, raised_fen, matched_fen) "  # noqa: S608
            f"VALUES (?, ?, ?, ?, ?, ?) {update}", rows)


def add_stats(session: Session, deltas: dict[tuple[int, str, str], list[int]]) -> None:
    """Add ``deltas`` (from :func:`stat_rows`, possibly negative) to the live stats."""
    upsert_stats(_Sql(session), deltas)


def _upsert_stats(sql: _Sql, decided: list[_Decided]) -> None:
    upsert_stats(sql, stat_rows([
        (g.campaign_id, g.project_id, d.org_id, g.province, d.prep.minute, d.pool_id, 1,
         g.amount_fen, d.matched)
        for d in decided for g in (d.prep.gift,)
    ]))



# --- the writer ----------------------------------------------------------------------------


_STOP = object()

# A submission: the prepared gift, and who waits for it — a concurrent future (submit) or an
# asyncio future with its loop (submit_async).
_Waiter = Future[GiftResult] | tuple[asyncio.AbstractEventLoop, "asyncio.Future[GiftResult]"]


class GroupCommitEngine:
    """One writer thread per process: gather gifts for up to ``max_wait_ms`` (or
    ``max_batch`` of them), apply them in one transaction, answer each after the commit.

    Submitters prepare their gifts (:func:`prepare`) before queueing them; the writer keeps
    its campaigns' counters in memory between batches (:class:`WriterMemory`) and answers each
    event loop once per batch. If a batch fails, its gifts are retried one by one, so that one
    bad gift fails alone (its future gets the exception) and the others are credited.
    """

    def __init__(self, database: Database, *, max_wait_ms: float = 5, max_batch: int = 5000,
                 worker: str | None = None) -> None:
        self.database = database
        self.max_wait = max_wait_ms / 1000
        self.max_batch = max_batch
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._pg = not database.is_sqlite
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._accepting = False
        self._guard = threading.Lock()
        self.memory = WriterMemory()
        self.batches = 0
        self.gifts = 0

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._accepting

    def stats(self) -> dict[str, Any]:
        """Counts for tests and benchmarks."""
        return {"batches": self.batches, "gifts": self.gifts}

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        with self._guard:
            if self._thread is not None:
                return
            self._accepting = True
            # What is alive now (modules, mappers, caches) lives as long as the process: keep
            # it out of the collector's full passes, which otherwise walk it after each batch.
            gc.freeze()
            self._thread = threading.Thread(target=self._run, name="giving-day-writer",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting gifts, write every gift already submitted, end the thread."""
        with self._guard:
            thread = self._thread
            if thread is None:
                return
            self._accepting = False
            self._queue.put(_STOP)
        thread.join(timeout)
        with self._guard:
            self._thread = None

    def _enqueue(self, gift: PaidGift, waiter: _Waiter) -> None:
        prepared = prepare(gift, pg=self._pg)  # in the submitter's thread: no lock needed
        with self._guard:
            if not self._accepting:
                raise RuntimeError("the giving-day engine is not running")
            self._queue.put((prepared, waiter))

    def submit(self, gift: PaidGift) -> Future[GiftResult]:
        """Queue ``gift``; the future resolves once its batch is committed (or fails at once
        if the gift cannot be written: see :func:`prepare`)."""
        future: Future[GiftResult] = Future()
        try:
            self._enqueue(gift, future)
        except ValueError as exc:
            future.set_exception(exc)
        return future

    async def submit_async(self, gift: PaidGift) -> GiftResult:
        """Queue ``gift`` and wait (without blocking the event loop) until it is durable.

        The writer answers all of a batch's gifts waiting on one event loop with one wake-up
        of that loop, not one per gift."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[GiftResult] = loop.create_future()
        self._enqueue(gift, (loop, future))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                wait = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[tuple[Prepared, _Waiter]]) -> None:
        # No cyclic collection while the batch's objects are alive (apply_batch pauses it for
        # its own work; the commit, the memory and the answers allocate too).
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            self._write_batch(batch)
        finally:
            if paused:
                gc.enable()

    def _write_batch(self, batch: list[tuple[Prepared, _Waiter]]) -> None:
        prepared = [p for p, _ in batch]
        try:
            results = self._apply(prepared)
        except Exception as exc:  # noqa: BLE001 - answered below, gift by gift
            if len(batch) == 1:
                _answer_all([(batch[0][1], None, exc)])
                return
            log.warning("giving-day batch of %d failed (%s); retrying one by one",
                        len(batch), exc)
            answers: list[tuple[_Waiter, GiftResult | None, BaseException | None]] = []
            for one, waiter in batch:
                try:
                    answers.append((waiter, self._apply([one])[0], None))
                except Exception as failed:  # noqa: BLE001 - this gift's own failure
                    answers.append((waiter, None, failed))
            _answer_all(answers)
            return
        _answer_all([(waiter, result, None)
                     for (_, waiter), result in zip(batch, results, strict=True)])

    def _apply(self, prepared: list[Prepared]) -> list[GiftResult]:
        gifts = [p.gift for p in prepared]
        for attempt in range(3):
            try:
                with self.database.transaction() as session:
                    results = apply_batch(session, gifts, worker=self.worker,
                                          prepared=prepared, memory=self.memory)
            except OperationalError:
                # A deadlock, a serialization failure or a lost connection: nothing was
                # committed; try again (the unique order id keeps it exactly-once).
                self.memory.forget()
                if attempt == 2:
                    raise
                time.sleep(0.01 * (attempt + 1))
                continue
            except BaseException:
                self.memory.forget()
                raise
            self.memory.adopt()
            self.batches += 1
            self.gifts += len(gifts)
            return results
        raise AssertionError("unreachable")  # pragma: no cover


def _answer_all(answers: Sequence[tuple[_Waiter, GiftResult | None, BaseException | None]]
                ) -> None:
    """Answer a batch's submitters: concurrent futures one by one, and each event loop once
    with all of its gifts."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[GiftResult],
                                                        GiftResult | None,
                                                        BaseException | None]]] = {}
    for waiter, result, exc in answers:
        if isinstance(waiter, Future):
            if waiter.done():
                continue
            if exc is not None:
                waiter.set_exception(exc)
            elif result is not None:
                waiter.set_result(result)
        else:
            by_loop.setdefault(waiter[0], []).append((waiter[1], result, exc))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:  # the loop was closed: nobody is waiting any more
            continue


def _settle(items: list[tuple[asyncio.Future[GiftResult], GiftResult | None,
                              BaseException | None]]) -> None:
    for future, result, exc in items:
        if future.done():  # cancelled meanwhile
            continue
        if exc is not None:
            future.set_exception(exc)
        elif result is not None:
            future.set_result(result)
