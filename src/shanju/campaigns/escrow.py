"""Escrow leases: several giving-day writers without the campaign lock (``docs/locking.md``).

A writer process opens one **lease** (a ``campaign_leases`` row; its id is the fencing token)
and, before each batch, **reserves** in a short transaction of its own the headroom the batch
may need (:meth:`EscrowLeases.prepare`): on every cap counter the batch's gifts can touch
(``p<pool>:d:…`` per donor and day, ``:j:`` per project and day, ``:o:`` per organization,
``:t:`` the daily pot) and on every pool's budget. A reservation adds to the shared counter
(or takes from the pool's ``remaining_fen`` and moves the money ``pool:<id>`` →
``match_escrow:<lease>:<pool>`` in the ledger) and records the same amount in the lease's
**slice** (``campaign_lease_slices``). The batch itself (``engine.apply_batch(...,
escrow=view)``) then decides against its slices only — no shared cap row, pool row or
campaign row is locked or written — and spends a slice only after fencing its lease.
Unused headroom goes back when the next batch needs less, when the writer is idle
(:meth:`EscrowLeases.trim`), or, if the writer died, when its lease is revoked and swept
(:func:`reap`, :func:`sweep`).

Invariants (the argument is in ``docs/locking.md``): for every cap key,
``counter = standing matches + Σ slices`` and ``counter ≤ cap``; for every pool,
``committed = remaining + Σ escrow balances + standing matches``, and each escrow account
holds exactly its lease's budget slice.

Lock order: campaign rows (ascending; ``FOR NO KEY UPDATE`` here, ``FOR KEY SHARE`` in a batch,
``FOR UPDATE`` in flows) → lease rows (ascending) → counter rows (ascending key) → pool rows
(ascending id) → ledger accounts (ascending id). On SQLite the one writer holds the database:
the same code runs with K = 1 and every lock is the write lock.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

from shanju.campaigns import rules
from shanju.campaigns.models import Campaign
from shanju.campaigns.rawsql import RawSql
from shanju.campaigns.rules import GiftContext, RuleParams
from shanju.core.clock import utcnow
from shanju.ledger import service as ledger

if TYPE_CHECKING:
    from shanju.core.db import Database

log = logging.getLogger(__name__)

#: A lease not renewed for this long may be revoked (its holder is dead or stalled).
LEASE_TTL_S = 10.0
#: PostgreSQL advisory lock class of lease holders (held by a live writer on its own
#: connection: a reaper that can take it knows the holder is gone, before the expiry).
HOLDER_LOCK_CLASS = 0x5E5C

_CAP_KEY = re.compile(r"^p(\d+):([djot]):")
_CHINA_OFFSET_S = 8 * 3600
_EPOCH = dt.date(1970, 1, 1)
_UNLIMITED = 1 << 62


class PaidGift(Protocol):
    """What a reservation reads of a gift (``engine.PaidGift``; this module sits below the
    engine and does not import it)."""

    @property
    def order_id(self) -> str: ...
    @property
    def campaign_id(self) -> int: ...
    @property
    def project_id(self) -> int: ...
    @property
    def donor_id(self) -> int | None: ...
    @property
    def payer_hash(self) -> str: ...
    @property
    def amount_fen(self) -> int: ...
    @property
    def paid_at(self) -> dt.datetime: ...


class LeaseLost(RuntimeError):
    """The lease was revoked (or released): open a new one and try the batch again."""


class NeedsRebuild(RuntimeError):
    """A pool's counters were built for another rule version: rebuild under the campaign
    lock (``engine.ensure_counters``) before reserving against them."""

    def __init__(self, campaign_pools: list[tuple[int, int]]) -> None:
        super().__init__(f"counters to rebuild: {campaign_pools}")
        self.campaign_pools = campaign_pools


def budget_key(pool_id: int) -> str:
    """The slice key of a pool's budget (money in ``match_escrow:<lease>:<pool>``)."""
    return f"p{pool_id}:b"


def is_cap_key(key: str) -> bool:
    """True for the key of a cap counter (as opposed to anti-fraud ``f:`` keys)."""
    return _CAP_KEY.match(key) is not None


class _Sql(RawSql):
    def in_list(self, column: str, values: Iterable[Any]) -> tuple[str, Any]:
        if self.pg:
            return f"{column} = ANY(?)", list(values)
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(values))  # noqa: S608

    def stamp(self, value: dt.datetime) -> Any:
        return value if self.pg else value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(
            " ", "microseconds")

    def lock(self, mode: str) -> str:
        return f" FOR {mode}" if self.pg else ""


# --- the batch's view (the engine's seam) ----------------------------------------------------


@dataclass
class EscrowView:
    """What an escrow batch sees instead of the campaign lock: its lease's slices."""

    lease_id: int
    ttl_s: float = LEASE_TTL_S
    reserved: dict[tuple[int, str], int] = field(default_factory=dict)

    def fence(self, session: Session, campaign_ids: Sequence[int]) -> dict[int, Campaign]:
        """Start the batch: the campaigns ``FOR KEY SHARE`` (flows that change matching
        state wait for the batch, batches do not wait for each other), then the lease's row —
        ``LeaseLost`` unless it is still active — then the lease's slices; return the
        campaigns (read, not locked for update)."""
        sql = _Sql(session)
        ids = sorted(set(campaign_ids))
        where, arg = sql.in_list("id", ids)
        sql.rows(f"SELECT id FROM campaigns WHERE {where} ORDER BY id"  # noqa: S608
                 + sql.lock("KEY SHARE"), (arg,))
        _fence(sql, self.lease_id, utcnow(), self.ttl_s)
        campaigns = {c.id: c for c in session.query(Campaign).filter(Campaign.id.in_(ids))}
        where_c, arg_c = sql.in_list("campaign_id", ids)
        self.reserved = {
            (int(c), str(k)): int(v) for c, k, v in sql.rows(
                "SELECT campaign_id, key, reserved_fen FROM campaign_lease_slices "  # noqa: S608
                f"WHERE lease_id = ? AND {where_c}", (self.lease_id, arg_c))}
        return campaigns

    def remaining(self, campaign_id: int, pool_id: int) -> int:
        """What this batch may match from a pool: its budget slice."""
        return self.reserved.get((campaign_id, budget_key(pool_id)), 0)

    def counters(self, session: Session, campaign_id: int, keys: Sequence[str],
                 caps: dict[int, RuleParams]) -> dict[str, int]:
        """The counters the batch's decisions read. A cap key reads ``cap − slice`` (so the
        rule sees exactly the headroom this lease holds); an anti-fraud key is locked (rows
        in ascending key order, created first if missing) and read as it is."""
        sql = _Sql(session)
        out: dict[str, int] = {}
        fraud_keys = sorted(k for k in keys if not is_cap_key(k))
        for key in keys:
            m = _CAP_KEY.match(key)
            if m is None:
                continue
            params = caps.get(int(m.group(1)))
            cap = _cap_of(params, m.group(2)) if params is not None else None
            if cap is not None:
                out[key] = cap - self.reserved.get((campaign_id, key), 0)
        if fraud_keys:
            if sql.pg:
                sql.execute(
                    "INSERT INTO campaign_counters (campaign_id, key, value) "
                    "SELECT ?, k, 0 FROM unnest(?::text[]) AS k ORDER BY k "
                    "ON CONFLICT (campaign_id, key) DO NOTHING", (campaign_id, fraud_keys))
            where, arg = sql.in_list("key", fraud_keys)
            out.update({str(k): int(v) for k, v in sql.rows(
                f"SELECT key, value FROM campaign_counters WHERE campaign_id = ? AND {where} "  # noqa: S608
                "ORDER BY key" + sql.lock("UPDATE"), (campaign_id, arg))})
        return out

    def spend(self, session: Session, campaign_id: int, before: dict[str, int],
              after: dict[str, int], pool_spent: dict[int, int]) -> list[tuple[str, int]]:
        """Write what the batch used: each cap key's and pool's slice goes down by it
        (guarded: never below zero). Returns the changed anti-fraud counters (absolute
        values) for the engine's usual upsert; cap counters are not written (they already
        count the slices)."""
        sql = _Sql(session)
        used: list[tuple[int, int, str, int, int]] = []
        fraud_changed: list[tuple[str, int]] = []
        for key, value in after.items():
            delta = value - before.get(key, 0)
            if not delta:
                continue
            if is_cap_key(key):
                used.append((delta, self.lease_id, key, campaign_id, delta))
            else:
                fraud_changed.append((key, value))
        for pool_id, spent in pool_spent.items():
            if spent:
                used.append((spent, self.lease_id, budget_key(pool_id), campaign_id, spent))
        if used:
            changed = sql.executemany(
                "UPDATE campaign_lease_slices SET reserved_fen = reserved_fen - ? "
                "WHERE lease_id = ? AND key = ? AND campaign_id = ? AND reserved_fen >= ?", used)
            if changed != len(used):  # pragma: no cover - the decisions stay within slices
                raise RuntimeError("a batch spent more than its lease holds")
        return fraud_changed

    def pool_account(self, pool_id: int) -> str:
        """The ledger account the batch's matches from ``pool_id`` leave."""
        return ledger.match_escrow(self.lease_id, pool_id)


def _cap_of(params: RuleParams, tag: str) -> int | None:
    for cap, t, _ in rules.active_caps(params):
        if t == tag:
            return cap
    return None


def _fence(sql: _Sql, lease_id: int, now: dt.datetime, ttl_s: float = LEASE_TTL_S) -> None:
    if sql.execute("UPDATE campaign_leases SET expires_at = ? WHERE id = ? AND state = 'active'",
                   (sql.stamp(now + dt.timedelta(seconds=ttl_s)), lease_id)) != 1:
        raise LeaseLost(f"lease {lease_id} is no longer active")


# --- reserving and returning ------------------------------------------------------------------


@dataclass(slots=True)
class _PoolRow:
    id: int
    campaign_id: int
    remaining: int
    version: int
    params: RuleParams
    built: int


def _gift_context(g: PaidGift, org_id: int) -> GiftContext:
    minute_ix = (int(g.paid_at.timestamp()) + _CHINA_OFFSET_S) // 60
    day = _EPOCH + dt.timedelta(days=minute_ix // 1440)
    mins = minute_ix % 1440
    donor = f"u{g.donor_id}" if g.donor_id is not None else f"x{g.payer_hash or g.order_id}"
    return GiftContext(g.order_id, g.amount_fen, donor, g.project_id, org_id, day.isoformat(),
                       f"{mins // 60:02d}:{mins % 60:02d}")


def needs_of(session: Session, gifts: Sequence[PaidGift],
             pools: dict[int, list[_PoolRow]]) -> dict[tuple[int, str], int]:
    """An upper bound of what the gifts may take from each cap key and pool budget: for each
    gift and each active pool of its campaign, the match the rule gives it with every cap
    still empty (window, minimum, ratio, per-gift maximum and the cap itself applied)."""
    sql = _Sql(session)
    pairs = sorted({(g.campaign_id, g.project_id) for g in gifts})
    if not pairs:
        return {}
    where_p, arg_p = sql.in_list("project_id", sorted({p for _, p in pairs}))
    orgs = {(int(c), int(p)): int(o) for c, p, o in sql.rows(
        "SELECT campaign_id, project_id, organization_id FROM campaign_enrolments "  # noqa: S608
        f"WHERE {where_p}", (arg_p,))}
    need: dict[tuple[int, str], int] = defaultdict(int)
    seen: set[str] = set()
    for g in gifts:
        if g.order_id in seen or not pools.get(g.campaign_id):
            continue
        seen.add(g.order_id)
        org = orgs.get((g.campaign_id, g.project_id))
        if org is None:
            continue  # not enrolled: never matched
        ctx = _gift_context(g, org)
        for pool in pools[g.campaign_id]:
            want = rules.decide(pool.params, pool_id=pool.id, gift=ctx, counters={},
                                remaining_fen=_UNLIMITED).matched_fen
            if want <= 0:
                continue
            need[(g.campaign_id, budget_key(pool.id))] += want
            for key in rules.counter_keys(pool.params, pool.id, ctx):
                need[(g.campaign_id, key)] += want
    return dict(need)


def adjust(session: Session, lease_id: int, campaign_ids: Iterable[int],
           gifts: Sequence[PaidGift] = (), *, fence: bool = True,
           ttl_s: float = LEASE_TTL_S) -> dict[tuple[int, str], int]:
    """Set the lease's slices in ``campaign_ids`` to what ``gifts`` may need (none: return
    everything), as far as the caps and pools allow; caller's transaction. Returns the new
    slices. ``fence=False``: the caller already holds the (revoked) lease's row."""
    sql = _Sql(session)
    now = utcnow()
    cids = sorted(set(campaign_ids))
    if not cids:
        return {}
    where_c, arg_c = sql.in_list("id", cids)
    # FOR NO KEY UPDATE: reservations of one campaign run one at a time (they lock its pool
    # rows and shared cap counters anyway) while batches (FOR KEY SHARE) go on; and each one
    # moves the campaign's lock_version, so a classic writer's memory of counters from before
    # it is not trusted (docs/locking.md, "Escrow and the writer's memory").
    sql.rows(f"SELECT id FROM campaigns WHERE {where_c} ORDER BY id"  # noqa: S608
             + sql.lock("NO KEY UPDATE"), (arg_c,))
    sql.execute(f"UPDATE campaigns SET lock_version = lock_version + 1 WHERE {where_c}",  # noqa: S608
                (arg_c,))
    if fence:
        _fence(sql, lease_id, now, ttl_s)
    else:
        sql.rows("SELECT id FROM campaign_leases WHERE id = ?"  # noqa: S608
                 + sql.lock("UPDATE"), (lease_id,))
    where_cc, arg_cc = sql.in_list("p.campaign_id", cids)
    pools: dict[int, list[_PoolRow]] = {cid: [] for cid in cids}
    by_id: dict[int, _PoolRow] = {}
    stale: list[tuple[int, int]] = []
    for pid, cid, remaining, version, raw, built in sql.rows(
        "SELECT p.id, p.campaign_id, p.remaining_fen, p.rule_version, r.params, c.value "  # noqa: S608
        "FROM match_pools p JOIN match_pool_rules r "
        "ON r.pool_id = p.id AND r.version = p.rule_version "
        "LEFT JOIN campaign_counters c ON c.campaign_id = p.campaign_id "
        "AND c.key = 'p' || p.id || ':v' "
        f"WHERE {where_cc} AND p.kind = 'matching' AND p.status = 'active' ORDER BY p.id",
        (arg_cc,),
    ):
        params = RuleParams.model_validate(raw if isinstance(raw, dict) else json.loads(raw))
        row = _PoolRow(int(pid), int(cid), int(remaining), int(version), params,
                       int(built or 1))
        if row.built != row.version:
            stale.append((row.campaign_id, row.id))
        pools[row.campaign_id].append(row)
        by_id[row.id] = row
    if stale and gifts:
        raise NeedsRebuild(stale)
    need = needs_of(session, gifts, pools) if gifts and not stale else {}
    where_l, arg_l = sql.in_list("campaign_id", cids)
    mine = {(int(c), str(k)): int(v) for c, k, v in sql.rows(
        "SELECT campaign_id, key, reserved_fen FROM campaign_lease_slices "  # noqa: S608
        f"WHERE lease_id = ? AND {where_l}", (lease_id, arg_l))}
    keys = sorted(set(need) | {k for k, v in mine.items() if v})
    target: dict[tuple[int, str], int] = {}

    # Cap counters: lock the rows (ascending key), then grant what is left under each cap.
    cap_keys = [ck for ck in keys if is_cap_key(ck[1])]
    counter_delta: list[tuple[int, int, str]] = []
    for cid in cids:
        wanted = sorted(k for c, k in cap_keys if c == cid)
        if not wanted:
            continue
        if sql.pg:
            sql.execute("INSERT INTO campaign_counters (campaign_id, key, value) "
                        "SELECT ?, k, 0 FROM unnest(?::text[]) AS k ORDER BY k "
                        "ON CONFLICT (campaign_id, key) DO NOTHING", (cid, wanted))
        else:
            sql.executemany("INSERT INTO campaign_counters (campaign_id, key, value) "
                            "VALUES (?, ?, 0) ON CONFLICT (campaign_id, key) DO NOTHING",
                            [(cid, k) for k in wanted])
        where_k, arg_k = sql.in_list("key", wanted)
        values = {str(k): int(v) for k, v in sql.rows(
            f"SELECT key, value FROM campaign_counters WHERE campaign_id = ? AND {where_k} "  # noqa: S608
            "ORDER BY key" + sql.lock("UPDATE"), (cid, arg_k))}
        for key in wanted:
            m = _CAP_KEY.match(key)
            assert m is not None  # noqa: S101 - a cap key
            pool = by_id.get(int(m.group(1)))
            cap = _cap_of(pool.params, m.group(2)) if pool is not None else None
            held = mine.get((cid, key), 0)
            want = need.get((cid, key), 0)
            if cap is None:
                # The cap is not in force (any more): no headroom to hold under it.
                got = 0
            else:
                got = max(0, min(want, cap - values[key] + held))
            target[(cid, key)] = got
            if got != held:
                counter_delta.append((got - held, cid, key))

    # Pool budgets: lock the rows (ascending id), take from / give back to remaining_fen.
    pool_delta: list[tuple[int, int]] = []  # (pool id, fen moved into escrow; < 0: back)
    budget = sorted((ck for ck in keys if not is_cap_key(ck[1])),
                    key=lambda ck: int(ck[1][1:].split(":")[0]))
    if budget:
        where_b, arg_b = sql.in_list("id", [int(k[1:].split(":")[0]) for _, k in budget])
        remaining = {int(p): int(r) for p, r in sql.rows(
            f"SELECT id, remaining_fen FROM match_pools WHERE {where_b} ORDER BY id"  # noqa: S608
            + sql.lock("UPDATE"), (arg_b,))}
        for cid, key in budget:
            pid = int(key[1:].split(":")[0])
            held = mine.get((cid, key), 0)
            want = need.get((cid, key), 0) if pid in by_id else 0
            got = max(0, min(want, remaining.get(pid, 0) + held))
            target[(cid, key)] = got
            if got != held:
                pool_delta.append((pid, got - held))

    if counter_delta:
        sql.executemany("UPDATE campaign_counters SET value = value + ? "
                        "WHERE campaign_id = ? AND key = ?", counter_delta)
    for pid, moved in pool_delta:
        if sql.execute("UPDATE match_pools SET remaining_fen = remaining_fen - ? "
                       "WHERE id = ? AND remaining_fen >= ?", (moved, pid, moved)) != 1:
            raise RuntimeError(f"pool {pid} has less left than the lease takes")  # pragma: no cover
    changed = [(v, lease_id, cid, k) for (cid, k), v in target.items()
               if v != mine.get((cid, k), 0)]
    if changed:
        if sql.pg:
            sql.execute(
                "INSERT INTO campaign_lease_slices (lease_id, campaign_id, key, reserved_fen) "
                "SELECT ?, c, k, v FROM unnest(?::int[], ?::text[], ?::bigint[]) AS t(c, k, v) "
                "ON CONFLICT (lease_id, campaign_id, key) DO UPDATE "
                "SET reserved_fen = excluded.reserved_fen",
                (lease_id, [c[2] for c in changed], [c[3] for c in changed],
                 [c[0] for c in changed]))
        else:
            sql.executemany(
                "INSERT INTO campaign_lease_slices (reserved_fen, lease_id, campaign_id, key) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (lease_id, campaign_id, key) DO UPDATE "
                "SET reserved_fen = excluded.reserved_fen", changed)
    if pool_delta:
        campaign_of = {int(k[1:].split(":")[0]): c for c, k in budget}
        specs = []
        for pid, moved in sorted(pool_delta):
            pool_acc, escrow_acc = ledger.match_pool(pid), ledger.match_escrow(lease_id, pid)
            kind = "campaign.escrowed" if moved > 0 else "campaign.escrow_returned"
            specs.append(ledger.transfer(
                kind, source=pool_acc if moved > 0 else escrow_acc,
                destination=escrow_acc if moved > 0 else pool_acc, amount_fen=abs(moved),
                memo=f"lease {lease_id}",
                detail=ledger.LogDetail(ref=f"pool:{pid}", public={
                    "campaign": campaign_of[pid], "pool": pid, "lease": lease_id})))
        ledger.post_many(session, specs, queue_log=True)
    return {k: v for k, v in target.items() if v}


# --- leases: opening, revoking, sweeping --------------------------------------------------------


def open_lease(session: Session, holder: str, *, ttl_s: float = LEASE_TTL_S) -> int:
    """Insert an active lease for ``holder`` (caller's transaction); return its id."""
    sql = _Sql(session)
    now = utcnow()
    return int(sql.rows(
        "INSERT INTO campaign_leases (holder, state, expires_at, created_at) "
        "VALUES (?, 'active', ?, ?) RETURNING id",
        (holder[:60], sql.stamp(now + dt.timedelta(seconds=ttl_s)), sql.stamp(now)))[0][0])


def revoke(session: Session, lease_id: int, *, state: str = "revoked",
           only_expired: bool = False) -> bool:
    """End a lease (the row lock, then ``state``): True if it was active. With
    ``only_expired``, only if its expiry has passed (re-checked under the row lock, so a
    holder whose batch renewed it meanwhile keeps it)."""
    sql = _Sql(session)
    now = utcnow()
    cond = " AND expires_at < ?" if only_expired else ""
    params: tuple[Any, ...] = (state, sql.stamp(now), lease_id)
    if only_expired:
        params += (sql.stamp(now),)
    return sql.execute("UPDATE campaign_leases SET state = ?, ended_at = ? "  # noqa: S608
                       f"WHERE id = ? AND state = 'active'{cond}", params) == 1


def revoke_campaign(session: Session, campaign_id: int) -> int:
    """Revoke every active lease holding headroom in a campaign and return that campaign's
    slices (caller holds the campaign ``FOR UPDATE`` — a flow about to change its matching
    state, e.g. a new rule version). Slices of other campaigns are swept later."""
    sql = _Sql(session)
    leases = [int(r[0]) for r in sql.rows(
        "SELECT DISTINCT s.lease_id FROM campaign_lease_slices s JOIN campaign_leases l "
        "ON l.id = s.lease_id WHERE s.campaign_id = ? AND s.reserved_fen > 0 "
        "ORDER BY s.lease_id", (campaign_id,))]
    for lease_id in leases:
        revoke(session, lease_id)
        adjust(session, lease_id, [campaign_id], fence=False)
    return len(leases)


def any_active(session: Session) -> bool:
    """Whether any escrow lease is active (a classic writer then keeps no memory of
    counters: ``engine.apply_batch``, ``docs/locking.md``)."""
    return bool(_Sql(session).rows(
        "SELECT 1 FROM campaign_leases WHERE state = 'active' LIMIT 1"))


def holder_alive(session: Session, lease_id: int) -> bool:
    """PostgreSQL: whether the lease's holder still holds its advisory lock (SQLite: True,
    only the expiry tells)."""
    sql = _Sql(session)
    if not sql.pg:
        return True
    got = sql.rows("SELECT pg_try_advisory_xact_lock(?, ?)", (HOLDER_LOCK_CLASS, lease_id))
    return not bool(got[0][0])


def reap(database: Database) -> int:
    """Revoke leases whose holder is gone (expired, or on PostgreSQL its advisory lock
    free), then :func:`sweep`. Safe to run anywhere, any time, concurrently."""
    revoked = 0
    with database.transaction() as session:
        sql = _Sql(session)
        candidates = [(int(r[0]), r[1]) for r in sql.rows(
            "SELECT id, expires_at FROM campaign_leases WHERE state = 'active' ORDER BY id")]
    now = utcnow()
    for lease_id, expires in candidates:
        expired = _aware(expires) < now
        with database.transaction() as session:
            if expired:
                revoked += revoke(session, lease_id, only_expired=True)
            elif not holder_alive(session, lease_id):
                revoked += revoke(session, lease_id)
    sweep(database)
    return revoked


def sweep(database: Database) -> int:
    """Return the headroom still held by ended leases, campaign by campaign."""
    with database.transaction(write=False) as session:
        pairs = [(int(r[0]), int(r[1])) for r in _Sql(session).rows(
            "SELECT DISTINCT s.lease_id, s.campaign_id FROM campaign_lease_slices s "
            "JOIN campaign_leases l ON l.id = s.lease_id "
            "WHERE l.state <> 'active' AND s.reserved_fen > 0 ORDER BY 1, 2")]
    for lease_id, cid in pairs:
        with database.transaction() as session:
            adjust(session, lease_id, [cid], fence=False)
    return len(pairs)


def _aware(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)  # noqa: S101
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


# --- one writer's leases ------------------------------------------------------------------------


class EscrowLeases:
    """A writer process's lease: opened lazily, its slices set before each batch, trimmed
    when idle, released on close. On PostgreSQL a dedicated connection holds the holder's
    advisory lock for as long as the lease (so a reaper sees a killed writer at once)."""

    def __init__(self, database: Database, holder: str, *, ttl_s: float = LEASE_TTL_S,
                 reap_every_s: float = 1.0) -> None:
        self.database = database
        self.holder = holder
        self.ttl_s = ttl_s
        self.reap_every_s = reap_every_s
        self.lease_id: int | None = None
        self._campaigns: set[int] = set()
        self._holder_conn: Any = None
        self._last_reap = 0.0

    def _open(self) -> int:
        if self.lease_id is not None:
            return self.lease_id
        with self.database.transaction() as session:
            lease_id = open_lease(session, self.holder, ttl_s=self.ttl_s)
            if session.get_bind().dialect.name == "postgresql":
                # Before the lease is visible: its holder's lock is already held.
                conn = self.database.engine.connect()
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({HOLDER_LOCK_CLASS}, {lease_id})")
                conn.commit()
                self._holder_conn = conn
        self.lease_id = lease_id
        self._campaigns = set()
        return lease_id

    def _drop_holder(self) -> None:
        if self._holder_conn is not None:
            try:
                self._holder_conn.close()
            except Exception:  # noqa: BLE001 - the connection may be gone already
                log.debug("closing a lease holder's connection failed", exc_info=True)
            self._holder_conn = None

    def lost(self) -> None:
        """Forget a revoked lease (the next batch opens a new one)."""
        self.lease_id = None
        self._drop_holder()

    def maybe_reap(self) -> None:
        """Reap dead writers' leases every ``reap_every_s``."""
        now = time.monotonic()
        if now - self._last_reap >= self.reap_every_s:
            self._last_reap = now
            reap(self.database)

    def prepare(self, gifts: Sequence[PaidGift]) -> EscrowView:
        """Reserve what ``gifts`` may need (one short transaction); return the batch's view."""
        self.maybe_reap()
        lease_id = self._open()
        cids = {g.campaign_id for g in gifts}
        with self.database.transaction() as session:
            adjust(session, lease_id, cids | self._campaigns, gifts, ttl_s=self.ttl_s)
        self._campaigns |= cids
        return EscrowView(lease_id, self.ttl_s)

    def trim(self) -> None:
        """Give back every slice (the writer is idle); the lease stays open."""
        if self.lease_id is None or not self._campaigns:
            return
        with self.database.transaction() as session:
            adjust(session, self.lease_id, self._campaigns, ttl_s=self.ttl_s)

    def close(self) -> None:
        """Give everything back and end the lease."""
        if self.lease_id is None:
            return
        try:
            with self.database.transaction() as session:
                sql = _Sql(session)
                cids = [int(r[0]) for r in sql.rows(
                    "SELECT DISTINCT campaign_id FROM campaign_lease_slices WHERE lease_id = ?",
                    (self.lease_id,))]
                adjust(session, self.lease_id, cids)
                revoke(session, self.lease_id, state="released")
        except LeaseLost:
            pass
        self.lost()
