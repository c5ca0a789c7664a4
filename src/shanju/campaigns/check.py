"""``shanju campaigns check``: the giving-day state recomputed from the gifts and the ledger.

What must hold (and what this recomputes):

- the ledger reconciles (``ledger.check``);
- every ``campaign.batch`` entry's legs are the exact sums of its gifts per account, as the
  gifts were decided (a gift with ``hold_until`` was held; settling, releasing and refunding
  are their own entries);
- every pool's ``remaining_fen`` is its ``pool:<id>`` ledger balance and never negative; for a
  matching pool, committed − remaining is the sum of its matches still standing (matched or
  held), and ``match_hold:<id>`` holds exactly its held matches;
- no cap was ever exceeded: walking each pool's standing matches in gift order, every
  per-donor-per-day, per-project-per-day, per-organization and daily-pot sum stays within the
  cap of the rule version the gift used, and no match exceeds the gift's per-gift maximum;
- the counters of the caps in force equal their recomputation (standing matches plus the
  headroom escrow leases hold on them); each lease's budget slice of a pool is exactly the
  balance of its ``match_escrow:<lease>:<pool>`` account, and a pool's spending is
  committed − remaining − what is in escrow;
- ``campaign_stats`` equal their recomputation from the gifts.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from shanju.campaigns.engine import stat_rows
from shanju.campaigns.models import (
    CampaignBatch,
    CampaignCounter,
    CampaignGift,
    CampaignStat,
    LeaseSlice,
    MatchPool,
    MatchStatus,
    PoolKind,
    PoolRule,
)
from shanju.campaigns.rules import RuleParams
from shanju.core.clock import CHINA_TZ
from shanju.ledger import service as ledger
from shanju.ledger.models import AccountKind, LedgerAccount, Posting

STANDING = (MatchStatus.MATCHED, MatchStatus.HELD)


@dataclass
class CampaignsReport:
    """What the check found; ``ok`` when nothing."""

    gifts: int = 0
    batches: int = 0
    pools: int = 0
    ledger_ok: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every invariant holds."""
        return self.ledger_ok and not self.problems


def donor_key(donor_id: int | None, payer_hash: str, order_id: str) -> str:
    """The donor part of a per-donor counter key (as the engine builds it)."""
    return f"u{donor_id}" if donor_id is not None else f"x{payer_hash or order_id}"


def minute_key(paid_at: dt.datetime) -> str:
    """The ``minute`` stats key of a payment time: ``YYYY-MM-DDTHH:MM`` China time."""
    return paid_at.astimezone(CHINA_TZ).strftime("%Y-%m-%dT%H:%M")


def check(session: Session) -> CampaignsReport:
    """Recompute the giving-day state and report every difference."""
    report = CampaignsReport()
    report.ledger_ok = ledger.check(session).ok
    problems = report.problems

    gifts = list(session.execute(select(
        CampaignGift.id, CampaignGift.order_id, CampaignGift.campaign_id,
        CampaignGift.project_id, CampaignGift.organization_id, CampaignGift.donor_id,
        CampaignGift.payer_hash, CampaignGift.province, CampaignGift.amount_fen,
        CampaignGift.provider, CampaignGift.day, CampaignGift.status, CampaignGift.pool_id,
        CampaignGift.rule_version, CampaignGift.matched_fen, CampaignGift.match_status,
        CampaignGift.hold_until, CampaignGift.batch_id, CampaignGift.paid_at,
    ).order_by(CampaignGift.id)))
    report.gifts = len(gifts)

    # Batch entries: legs = sums of the batch's gifts as decided (an escrow batch's matches
    # leave its lease's escrow account).
    leases = {b.id: b.lease_id for b in session.scalars(select(CampaignBatch))}
    expected: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for g in gifts:
        legs = expected[g.batch_id]
        legs[ledger.donor_clearing(g.provider)] -= g.amount_fen
        held = g.hold_until is not None and g.matched_fen > 0
        legs[ledger.project_fund(g.project_id)] += g.amount_fen + (0 if held else g.matched_fen)
        if g.matched_fen and g.pool_id is not None:
            lease = leases.get(g.batch_id)
            legs[ledger.match_pool(g.pool_id) if lease is None
                 else ledger.match_escrow(lease, g.pool_id)] -= g.matched_fen
            if held:
                legs[ledger.match_hold(g.pool_id)] += g.matched_fen
    batches = {b.id: b.entry_id for b in session.scalars(select(CampaignBatch))}
    report.batches = len(batches)
    entry_ids = [e for e in batches.values() if e is not None]
    actual: dict[int, dict[str, int]] = defaultdict(dict)
    if entry_ids:
        for entry_id, code, amount in session.execute(
            select(Posting.entry_id, LedgerAccount.code, Posting.amount_fen)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(Posting.entry_id.in_(entry_ids))
        ):
            actual[entry_id][code] = actual[entry_id].get(code, 0) + amount
    for batch_id, batch_entry in sorted(batches.items()):
        want = {k: v for k, v in expected.get(batch_id, {}).items() if v}
        if batch_entry is None:
            if want:
                problems.append(f"batch {batch_id} has gifts but no journal entry")
            continue
        if actual.get(batch_entry, {}) != want:
            problems.append(f"batch {batch_id}: entry {batch_entry} legs differ from its gifts")

    # Pools: row == ledger, spending == standing matches, hold == held matches.
    pools = list(session.scalars(select(MatchPool).order_by(MatchPool.id)))
    report.pools = len(pools)
    balances = ledger.balances(session, [ledger.match_pool(p.id) for p in pools]
                               + [ledger.match_hold(p.id) for p in pools])
    standing: dict[int, int] = defaultdict(int)
    holding: dict[int, int] = defaultdict(int)
    for g in gifts:
        if g.pool_id is not None and g.match_status in STANDING:
            standing[g.pool_id] += g.matched_fen
            if g.match_status == MatchStatus.HELD:
                holding[g.pool_id] += g.matched_fen
    # Escrow: each lease's budget slice is exactly its escrow account's balance, and what
    # is in escrow is neither remaining nor spent.
    slices = [(sl.lease_id, sl.campaign_id, sl.key, sl.reserved_fen)
              for sl in session.scalars(select(LeaseSlice))]
    escrowed: dict[int, int] = defaultdict(int)
    escrow_accounts = {str(code): int(bal) for code, bal in session.execute(
        select(LedgerAccount.code, LedgerAccount.balance_fen)
        .where(LedgerAccount.kind == AccountKind.MATCH_ESCROW))}
    budget_slices: dict[str, int] = {}
    for lease_id, _, key, reserved in slices:
        if key.endswith(":b"):
            pool_id = int(key[1:].split(":")[0])
            budget_slices[ledger.match_escrow(lease_id, pool_id)] = reserved
    for code in set(escrow_accounts) | set(budget_slices):
        balance, sliced = escrow_accounts.get(code, 0), budget_slices.get(code, 0)
        if balance != sliced:
            problems.append(f"escrow {code}: balance {balance} != lease slice {sliced}")
        escrowed[int(code.rsplit(":", 1)[1])] += balance
    for p in pools:
        if p.remaining_fen < 0:
            problems.append(f"pool {p.id}: remaining {p.remaining_fen} is negative")
        if p.remaining_fen != balances[ledger.match_pool(p.id)]:
            problems.append(f"pool {p.id}: remaining {p.remaining_fen} != ledger "
                            f"{balances[ledger.match_pool(p.id)]}")
        if p.kind == PoolKind.MATCHING:
            spent = p.committed_fen - p.remaining_fen - escrowed[p.id]
            if spent != standing[p.id]:
                problems.append(f"pool {p.id}: spent {spent} (in escrow {escrowed[p.id]}) != "
                                f"standing matches {standing[p.id]}")
            if balances[ledger.match_hold(p.id)] != holding[p.id]:
                problems.append(f"pool {p.id}: hold account {balances[ledger.match_hold(p.id)]}"
                                f" != held matches {holding[p.id]}")

    # Caps: prefix sums of standing matches, against each gift's own rule version.
    versions = {(r.pool_id, r.version): RuleParams.model_validate(r.params)
                for r in session.scalars(select(PoolRule))}
    running: dict[str, int] = defaultdict(int)
    for g in gifts:
        if g.pool_id is None or g.match_status not in STANDING:
            continue
        params = versions.get((g.pool_id, g.rule_version or 0))
        if params is None:
            problems.append(f"gift {g.id}: rule version {g.rule_version} of pool {g.pool_id} "
                            "does not exist")
            continue
        if (params.max_match_per_gift_fen is not None
                and g.matched_fen > params.max_match_per_gift_fen):
            problems.append(f"gift {g.id}: match above the per-gift maximum")
        day = g.day.isoformat()
        for cap, key in _cap_keys(params, g.pool_id, donor_key(g.donor_id, g.payer_hash,
                                  g.order_id), g.project_id, g.organization_id, day):
            running[key] += g.matched_fen
            if cap is not None and running[key] > cap:
                problems.append(f"gift {g.id}: {key} reached {running[key]} > cap {cap}")

    # Counters of the caps in force == recomputation.
    stored = {(c.campaign_id, c.key): c.value for c in session.scalars(
        select(CampaignCounter).where(CampaignCounter.key.like("p%")))}
    # A pool whose rule version changed without its counters being rebuilt yet (the next
    # batch or flow under the lock rebuilds them) has nothing to compare.
    in_force = {p.id: versions.get((p.id, p.rule_version)) for p in pools
                if stored.get((p.campaign_id, f"p{p.id}:v"), 1) == p.rule_version}
    wanted: dict[tuple[int, str], int] = defaultdict(int)
    for g in gifts:
        if g.pool_id is None or g.match_status not in STANDING:
            continue
        params = in_force.get(g.pool_id)
        if params is None:
            continue
        for cap, key in _cap_keys(params, g.pool_id, donor_key(g.donor_id, g.payer_hash,
                                  g.order_id), g.project_id, g.organization_id,
                                  g.day.isoformat()):
            if cap is not None:
                wanted[(g.campaign_id, key)] += g.matched_fen
    # A counter also counts the headroom escrow leases hold on it (campaigns/escrow.py).
    for _, slice_campaign, slice_key, reserved in slices:
        if not slice_key.endswith(":b") and reserved:
            wanted[(slice_campaign, slice_key)] += reserved
    kept_prefixes = {
        f"p{pid}:{tag}:" for pid, params in in_force.items() if params is not None
        for tag, cap in (("d", params.per_donor_daily_cap_fen),
                         ("j", params.per_project_daily_cap_fen),
                         ("o", params.per_org_cap_fen), ("t", params.daily_pot_fen))
        if cap is not None
    }
    for ck in set(stored) | set(wanted):
        key = ck[1]
        if not any(key.startswith(prefix) for prefix in kept_prefixes):
            continue
        if stored.get(ck, 0) != wanted.get(ck, 0):
            problems.append(f"counter {key} of campaign {ck[0]} is {stored.get(ck, 0)}, "
                            f"recomputed {wanted.get(ck, 0)}")

    # Stats == recomputation.
    recomputed = stat_rows([
        (g.campaign_id, g.project_id, g.organization_id, g.province, minute_key(g.paid_at),
         g.pool_id if g.match_status in STANDING else None, 1, g.amount_fen,
         g.matched_fen if g.match_status in STANDING else 0)
        for g in gifts if g.status == "paid"
    ])
    stats = {(s.campaign_id, s.dim, s.key): [s.gifts, s.raised_fen, s.matched_fen]
             for s in session.scalars(select(CampaignStat))}
    for stat_key in set(stats) | set(recomputed):
        have = stats.get(stat_key, [0, 0, 0])
        want_row = recomputed.get(stat_key, [0, 0, 0])
        if have != want_row:
            problems.append(f"stats {stat_key}: stored {have}, recomputed {want_row}")
    return report


def _cap_keys(params: RuleParams, pool_id: int, donor: str, project_id: int, org_id: int,
              day: str) -> list[tuple[int | None, str]]:
    return [
        (params.per_donor_daily_cap_fen, f"p{pool_id}:d:{donor}:{day}"),
        (params.per_project_daily_cap_fen, f"p{pool_id}:j:{project_id}:{day}"),
        (params.per_org_cap_fen, f"p{pool_id}:o:{org_id}"),
        (params.daily_pot_fen, f"p{pool_id}:t:{day}"),
    ]
