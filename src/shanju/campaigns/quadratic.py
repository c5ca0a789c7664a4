"""Quadratic funding: a sponsor's pool shared at round end in proportion to (Σ√cᵢ)² per project.

A quadratic pool (``MatchPool.kind == quadratic``) matches nothing gift by gift. When its
campaign has ended, :func:`distribute` shares its remaining money among the enrolled projects
by how many people gave to each, not how much: project *p*'s weight is ``(Σᵢ √cᵢ)²`` over its
donors *i*, where ``cᵢ`` is donor *i*'s total to *p* in fen (a donor's several gifts to one
project are one contribution, their sum). Many small gifts outweigh one large one.

**The exact rule** (:func:`allocate`, pure, integer arithmetic only — no floats anywhere):

1. *Weights.* √c is taken to :data:`SQRT_DIGITS` (12) decimal places, rounded down:
   ``r(c) = isqrt(c · 10²⁴)`` (an integer, √c · 10¹²). A project's weight is
   ``W = (Σᵢ r(cᵢ))²``, an integer. Perfect squares are exact (``r(400) = 20·10¹²``); for
   the rest the relative error of W is below 2·10⁻¹², under one fen of share for any pool
   below ¥1,000,000,000. Adding a donor or a fen never lowers a weight.
2. *Caps* (optional, the same for every project). With pool ``P`` and the uncapped projects'
   weights, a project whose exact share ``P·W/ΣW`` (a fraction, never rounded) is above the
   cap gets exactly the cap and leaves; the rest of the pool is shared again among the others,
   until no exact share is above the cap (water-filling: a project capped once stays capped,
   because what each remaining weight gets only grows). If every project with a positive
   weight is capped, each gets the cap and the rest of the pool stays in the pool.
3. *Fen.* The uncapped projects share what is left by largest remainder: each gets
   ``⌊P·W/ΣW⌋``, then the fen still unallocated (fewer than the number of projects) go one each
   to the largest remainders ``P·W mod ΣW``, ties to the lower project id. The shares then sum
   exactly to the pool (or to Σ caps), and no share is above the cap (a project that gets the
   extra fen had a fractional exact share below the cap, and the cap is whole fen).

Projects without a contribution (weight 0) get nothing.

**Which gifts count** (:func:`round_contributions`): the campaign's gifts still paid (refunded
ones do not count), to projects whose enrolment is approved and whose matching is not frozen,
except gifts whose match anti-fraud withheld because the donor is staff of the receiving
organization (reason ``staff_own_org``). Gifts are grouped by donor account; a gift without
one counts under its payer's hash, and a gift with neither counts for nobody.

**The ledger** (:func:`distribute`): under the campaign lock, one ``quadratic.distributed``
entry moves every share from ``pool:<id>`` to ``project:<p>``, the pool's ``remaining_fen``
goes down by the sum (guarded in SQL) and the pool is closed, so a round is distributed once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.campaigns import locks
from shanju.campaigns.models import (
    CampaignGift,
    CampaignStatus,
    Enrolment,
    EnrolmentStatus,
    GiftStatus,
    MatchPool,
    PoolKind,
    PoolRule,
    PoolStatus,
    QuadraticShare,
)
from shanju.campaigns.rules import RuleParams
from shanju.core import audit
from shanju.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shanju.ledger import service as ledger
from shanju.projects.models import Project

SQRT_DIGITS = 12
"""Decimal places of √c in a weight (rounded down): ``r(c) = isqrt(c · 10^(2·SQRT_DIGITS))``."""
_SQRT_FACTOR = 10 ** (2 * SQRT_DIGITS)

STAFF_OWN_ORG = "staff_own_org"  # the anti-fraud reason whose gifts do not count


# --- the pure rule -------------------------------------------------------------------------


def scaled_sqrt(contribution_fen: int) -> int:
    """Return √c · 10¹², rounded down (the rule's square root; exact for perfect squares)."""
    if type(contribution_fen) is not int or contribution_fen <= 0:
        raise ValueError(f"a contribution must be a positive integer of fen: {contribution_fen!r}")
    return math.isqrt(contribution_fen * _SQRT_FACTOR)


def weight(contributions_fen: Iterable[int]) -> int:
    """Return a project's weight ``(Σ r(cᵢ))²`` for its donors' totals ``cᵢ`` (see module doc)."""
    return sum(scaled_sqrt(c) for c in contributions_fen) ** 2


@dataclass(frozen=True, slots=True)
class Share:
    """One project's part of a round."""

    project_id: int
    contributors: int
    contributed_fen: int
    weight: int
    share_fen: int
    capped: bool


def allocate(
    pool_fen: int, contributions: Mapping[int, Sequence[int]], *, cap_fen: int | None = None
) -> dict[int, Share]:
    """Share ``pool_fen`` among projects by the rule in the module doc; exact to the fen.

    ``contributions`` maps a project id to its donors' totals in fen (one number per donor).
    Returns a :class:`Share` for every project given, in ascending id order. The shares sum to
    ``min(pool_fen, cap_fen × projects with a contribution)`` — the pool, unless every such
    project is capped.
    """
    if type(pool_fen) is not int or pool_fen < 0:
        raise ValueError(f"the pool must be a non-negative integer of fen: {pool_fen!r}")
    if cap_fen is not None and (type(cap_fen) is not int or cap_fen < 0):
        raise ValueError(f"the cap must be a non-negative integer of fen: {cap_fen!r}")
    weights = {p: weight(cs) for p, cs in contributions.items()}
    shares: dict[int, int] = dict.fromkeys(weights, 0)
    capped: set[int] = set()

    active = sorted(p for p, w in weights.items() if w > 0)
    left = pool_fen
    if cap_fen is not None:
        while active:
            total = sum(weights[p] for p in active)
            # Exact share P·W/ΣW > cap  ⇔  P·W > cap·ΣW (all integers).
            over = [p for p in active if left * weights[p] > cap_fen * total]
            if not over:
                break
            for p in over:
                shares[p] = cap_fen
                capped.add(p)
            left -= cap_fen * len(over)
            active = [p for p in active if p not in capped]

    if active and left:
        total = sum(weights[p] for p in active)
        remainders: list[tuple[int, int]] = []
        for p in active:
            whole, rest = divmod(left * weights[p], total)
            shares[p] = whole
            remainders.append((-rest, p))
        unallocated = left - sum(shares[p] for p in active)
        remainders.sort()  # largest remainder first, then the lower project id
        for _, p in remainders[:unallocated]:
            shares[p] += 1

    return {
        p: Share(
            project_id=p,
            contributors=len(contributions[p]),
            contributed_fen=sum(contributions[p]),
            weight=weights[p],
            share_fen=shares[p],
            capped=p in capped,
        )
        for p in sorted(contributions)
    }


def group_contributions(gifts: Iterable[tuple[int, object, int]]) -> dict[int, list[int]]:
    """Turn ``(project id, donor key, amount fen)`` gifts into each project's donor totals.

    A donor's several gifts to one project become one contribution, their sum. Donor totals
    are listed in ascending donor-key order (by ``str``), so the result is deterministic.
    """
    sums: dict[int, dict[object, int]] = defaultdict(lambda: defaultdict(int))
    for project_id, donor, amount in gifts:
        sums[project_id][donor] += amount
    return {
        p: [total for _, total in sorted(per_donor.items(), key=lambda kv: str(kv[0]))]
        for p, per_donor in sorted(sums.items())
    }


# --- the round in the database -------------------------------------------------------------


def round_contributions(session: Session, *, campaign_id: int) -> dict[int, list[int]]:
    """Return each eligible project's donor totals for the campaign's round (see module doc)."""
    eligible = (
        select(Enrolment.project_id)
        .where(
            Enrolment.campaign_id == campaign_id,
            Enrolment.status == EnrolmentStatus.APPROVED,
            Enrolment.matching_frozen.is_(False),
        )
    )
    rows = session.execute(
        select(
            CampaignGift.project_id, CampaignGift.donor_id, CampaignGift.payer_hash,
            CampaignGift.amount_fen,
        ).where(
            CampaignGift.campaign_id == campaign_id,
            CampaignGift.status == GiftStatus.PAID,
            CampaignGift.reason != STAFF_OWN_ORG,
            CampaignGift.project_id.in_(eligible),
        )
    )

    def gifts() -> Iterable[tuple[int, object, int]]:
        for project_id, donor_id, payer_hash, amount in rows:
            if donor_id is not None:
                yield int(project_id), f"u{donor_id}", int(amount)
            elif payer_hash:
                yield int(project_id), f"p{payer_hash}", int(amount)

    return group_contributions(gifts())


def pool_cap_fen(session: Session, pool: MatchPool) -> int | None:
    """Return the per-project cap of a quadratic pool: its rule's ``per_project_daily_cap_fen``.

    A round is shared once, so the rule's per-project cap ("daily" for a matching pool) reads
    "per round" here.
    """
    params = session.scalar(
        select(PoolRule.params).where(
            PoolRule.pool_id == pool.id, PoolRule.version == pool.rule_version
        )
    )
    if params is None:
        return None
    return RuleParams.model_validate(params).per_project_daily_cap_fen


def check_can_distribute(*, actor: User | None) -> None:
    """Only platform admins (or the system itself, ``actor=None``) distribute a round."""
    if actor is not None and actor.role != Role.ADMIN:
        raise PermissionDenied(
            "Only a platform administrator can distribute a quadratic-funding round.",
            code="quadratic_forbidden",
        )


def distribute(
    *, session: Session, actor: User | None, pool_id: int, cap_fen: int | None = None
) -> list[QuadraticShare]:
    """Share a quadratic pool's remaining money among its campaign's projects, once.

    Locks the campaign, reads the round's contributions, writes a :class:`QuadraticShare`
    per contributing project and one ``quadratic.distributed`` journal entry (pool → projects),
    lowers the pool's ``remaining_fen`` by the sum and closes the pool; audits it. ``cap_fen``
    overrides the rule's per-project cap (:func:`pool_cap_fen`). Never commits.
    """
    check_can_distribute(actor=actor)
    pool = session.get(MatchPool, pool_id)
    if pool is None:
        raise NotFound("There is no such matching pool.", code="pool_not_found")
    if pool.kind != PoolKind.QUADRATIC:
        raise InvalidInput(
            "Only a quadratic-funding pool is distributed at round end.", code="not_quadratic"
        )
    campaign = locks.lock_campaigns(session, [pool.campaign_id])[pool.campaign_id]
    # Decide only on values read under the lock.
    session.refresh(pool)
    if pool.status == PoolStatus.CLOSED:
        raise Conflict(
            "This quadratic-funding round has already been distributed.",
            code="quadratic_already_distributed",
        )
    if campaign.status != CampaignStatus.ENDED:
        raise Conflict(
            "A quadratic-funding round is distributed after its campaign has ended.",
            code="quadratic_round_not_ended",
        )
    if cap_fen is None:
        cap_fen = pool_cap_fen(session, pool)

    contributions = round_contributions(session, campaign_id=campaign.id)
    shares = allocate(pool.remaining_fen, contributions, cap_fen=cap_fen)
    paid = [s for s in shares.values() if s.share_fen > 0]
    total = sum(s.share_fen for s in paid)

    entry_id: int | None = None
    if total:
        entry = ledger.post(session, ledger.EntrySpec(
            kind="quadratic.distributed",
            legs=[ledger.Leg(ledger.match_pool(pool.id), -total)]
            + [ledger.Leg(ledger.project_fund(s.project_id), s.share_fen) for s in paid],
            memo=f"quadratic round of pool {pool.id}",
            dedupe_key=f"quadratic.distributed:{pool.id}",
            actor_id=actor.id if actor else None,
            no_overdraft=(ledger.match_pool(pool.id),),
            details=[ledger.LogDetail(
                ref=f"pool:{pool.id}", public={
                    "campaign": campaign.id, "pool": pool.id, "project": s.project_id},
                transfer=ledger.Transfer(ledger.match_pool(pool.id),
                                         ledger.project_fund(s.project_id), s.share_fen),
            ) for s in paid],
        ))
        entry_id = entry.id
    result = session.execute(
        update(MatchPool)
        .where(
            MatchPool.id == pool.id,
            MatchPool.remaining_fen >= total,
            MatchPool.status != PoolStatus.CLOSED,
        )
        .values(remaining_fen=MatchPool.remaining_fen - total, status=PoolStatus.CLOSED)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            "This quadratic-funding round has already been distributed.",
            code="quadratic_already_distributed",
        )
    session.expire(pool)

    rows = [
        QuadraticShare(
            pool_id=pool.id, project_id=s.project_id, contributors=s.contributors,
            contributed_fen=s.contributed_fen, share_fen=s.share_fen, entry_id=entry_id,
        )
        for s in shares.values()
        if s.contributors
    ]
    session.add_all(rows)
    audit.record(
        session, actor_id=actor.id if actor else None, action="campaigns.pool.distributed",
        object_type="match_pool", object_id=pool.id,
        data={
            "new": {"status": PoolStatus.CLOSED.value, "distributed_fen": total},
            "projects": len(rows),
            "cap_fen": cap_fen,
            "sqrt_digits": SQRT_DIGITS,
        },
    )
    session.flush()
    return rows


@dataclass(frozen=True, slots=True)
class ShareView:
    """A project's share of a distributed quadratic-funding round, with the project's title."""

    project_id: int
    project_title: str
    contributors: int
    contributed_fen: int
    share_fen: int


def list_shares(session: Session, *, pool_id: int) -> list[ShareView]:
    """Return a distributed pool's shares, largest first (empty before the round is shared)."""
    rows = session.execute(
        select(QuadraticShare, Project.title)
        .join(Project, Project.id == QuadraticShare.project_id)
        .where(QuadraticShare.pool_id == pool_id)
        .order_by(QuadraticShare.share_fen.desc(), QuadraticShare.project_id)
    ).all()
    return [
        ShareView(project_id=s.project_id, project_title=title, contributors=s.contributors,
                  contributed_fen=s.contributed_fen, share_fen=s.share_fen)
        for s, title in rows
    ]
