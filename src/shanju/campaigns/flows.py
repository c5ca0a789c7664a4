"""Giving-day flows that change a campaign's matching state after the engine wrote a gift.

- :func:`refund_gift`: a gift is refunded and its match reversed. The stated rule for the
  freed budget: **it goes back to the pool** (``remaining_fen`` grows, later gifts may use
  it) **and the caps the match used are freed** (the donor's, project's, organization's and
  the day's counters shrink by it).
- :func:`settle_held`: held matches whose public notice period (公示期) has passed settle to
  their projects (``match_hold`` → ``project``).
- :func:`release_held`: a reviewer returns a held match to its pool (caps freed as for a
  refund).
- :func:`top_up_pool` and :func:`add_rule_version`: a pool's money and rule change.

Every flow takes the campaign lock first (``locks.lock_campaigns``), then re-reads what it
decides on, then writes — the protocol in ``docs/locking.md``. Money moves only through
``shanju.ledger.service``. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shanju.accounts.models import Role, User
from shanju.campaigns import engine, locks, rules
from shanju.campaigns.check import donor_key, minute_key
from shanju.campaigns.models import (
    CampaignCounter,
    CampaignGift,
    GiftStatus,
    MatchPool,
    MatchStatus,
    PoolKind,
    PoolRule,
    PoolStatus,
)
from shanju.campaigns.rules import RuleParams
from shanju.core import audit
from shanju.core.clock import utcnow
from shanju.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shanju.core.money import check_amount_fen
from shanju.ledger import service as ledger
from shanju.payments import service as payments
from shanju.payments.models import PaymentIntent, Refund, RefundStatus

STANDING = (MatchStatus.MATCHED, MatchStatus.HELD)


# --- helpers -------------------------------------------------------------------------------


def _locked_gift(session: Session, *, gift_id: int | None = None,
                 order_id: str | None = None) -> CampaignGift:
    """Find a gift, lock its campaign, and return the gift as it is under the lock."""
    if gift_id is None and order_id is None:
        raise InvalidInput("Say which gift.", code="gift_required", field="gift_id")
    where = CampaignGift.id == gift_id if gift_id is not None else (
        CampaignGift.order_id == order_id)
    campaign_id = session.scalar(select(CampaignGift.campaign_id).where(where))
    if campaign_id is None:
        raise NotFound("No such giving-day gift.", code="gift_not_found")
    locks.lock_campaigns(session, [campaign_id])
    return session.scalars(
        select(CampaignGift).where(where).execution_options(populate_existing=True)
    ).one()


def _locked_pool(session: Session, pool_id: int) -> MatchPool:
    campaign_id = session.scalar(select(MatchPool.campaign_id).where(MatchPool.id == pool_id))
    if campaign_id is None:
        raise NotFound("No such pool.", code="pool_not_found")
    locks.lock_campaigns(session, [campaign_id])
    return session.scalars(
        select(MatchPool).where(MatchPool.id == pool_id)
        .execution_options(populate_existing=True)
    ).one()


def _rule_in_force(session: Session, pool_id: int) -> RuleParams | None:
    params = session.scalar(
        select(PoolRule.params).join(MatchPool, MatchPool.id == PoolRule.pool_id)
        .where(PoolRule.pool_id == pool_id, PoolRule.version == MatchPool.rule_version))
    return None if params is None else RuleParams.model_validate(params)


def _context(gift: CampaignGift) -> rules.GiftContext:
    return rules.GiftContext(
        gift.order_id, gift.amount_fen, donor_key(gift.donor_id, gift.payer_hash, gift.order_id),
        gift.project_id, gift.organization_id, gift.day.isoformat(), "")


def _free_match(session: Session, gift: CampaignGift) -> None:
    """Give a standing match's money back to the pool's row and free the caps it used."""
    assert gift.pool_id is not None  # noqa: S101 - a standing match has a pool
    amount = gift.matched_fen
    session.execute(
        update(MatchPool).where(MatchPool.id == gift.pool_id)
        .values(remaining_fen=MatchPool.remaining_fen + amount)
        .execution_options(synchronize_session=False))
    engine.ensure_counters(session, pool_id=gift.pool_id)
    params = _rule_in_force(session, gift.pool_id)
    if params is not None:
        # Counters are kept for the caps of the version in force (see rules.py).
        keys = rules.counter_keys(params, gift.pool_id, _context(gift))
        if keys:
            session.execute(
                update(CampaignCounter)
                .where(CampaignCounter.campaign_id == gift.campaign_id,
                       CampaignCounter.key.in_(keys))
                .values(value=CampaignCounter.value - amount)
                .execution_options(synchronize_session=False))


def _stats_delta(session: Session, gift: CampaignGift, *, before: tuple[bool, bool],
                 after: tuple[bool, bool]) -> None:
    """Move the gift's contribution to the live stats from ``before`` to ``after``.

    Each state is (counted as a paid gift, its match standing).
    """
    def rows(paid: bool, standing: bool) -> dict[tuple[int, str, str], list[int]]:
        if not paid:
            return {}
        return engine.stat_rows([(
            gift.campaign_id, gift.project_id, gift.organization_id, gift.province,
            minute_key(gift.paid_at), gift.pool_id if standing else None, 1, gift.amount_fen,
            gift.matched_fen if standing else 0)])

    old, new = rows(*before), rows(*after)
    deltas: dict[tuple[int, str, str], list[int]] = {}
    for key in set(old) | set(new):
        was, now = old.get(key, [0, 0, 0]), new.get(key, [0, 0, 0])
        deltas[key] = [now[0] - was[0], now[1] - was[1], now[2] - was[2]]
    engine.add_stats(session, deltas)


# --- refund --------------------------------------------------------------------------------


def check_can_refund(*, actor: User, gift: CampaignGift) -> None:
    """Refuse all but reviewers and the receiving organization's staff."""
    if actor.role in (Role.REVIEWER, Role.ADMIN):
        return
    if actor.role == Role.ORG_STAFF and actor.organization_id == gift.organization_id:
        return
    raise PermissionDenied(
        "Only the receiving organization or a platform reviewer may refund a gift.",
        code="refund_not_allowed",
    )


def refund_gift(*, session: Session, actor: User, gift_id: int | None = None,
                order_id: str | None = None, reason: str) -> CampaignGift:
    """Refund a giving-day gift and reverse its match (``campaign.gift_refunded``).

    The project gives back the gift and, if the match had settled, the match (refused with
    ``insufficient_funds`` if the project has already used the money); a held match leaves
    the hold. The match goes back to the pool and the caps it used are freed.
    """
    reason = reason.strip()
    if not reason:
        raise InvalidInput("Give a reason for the refund.", code="reason_required",
                           field="reason")
    gift = _locked_gift(session, gift_id=gift_id, order_id=order_id)
    check_can_refund(actor=actor, gift=gift)
    if gift.status != GiftStatus.PAID:
        raise Conflict("This gift has already been refunded.", code="gift_already_refunded")
    standing = gift.match_status in STANDING and gift.pool_id is not None
    held = standing and gift.match_status == MatchStatus.HELD
    matched = gift.matched_fen if standing else 0
    project = ledger.project_fund(gift.project_id)
    # Paid through a real provider (a payment order of the gift pipeline): the provider must
    # return the money. The gift's amount is reserved in `refunds` and a pending refund asks
    # the provider after the commit; its answer settles it (settle_gift_refund). The sandbox
    # (no merchant) returns it at once, as before.
    order = session.get(PaymentIntent, gift.order_id)
    refund: Refund | None = None
    if order is not None and order.merchant_id is not None:
        payments.check_refundable(intent=order, amount_fen=gift.amount_fen)
        refund = payments.do_create_refund(session=session, intent=order,
                                           amount_fen=gift.amount_fen, reason=reason,
                                           actor_id=actor.id)
    gift_to = ledger.REFUNDS if refund is not None else ledger.donor_clearing(gift.provider)
    legs = [
        ledger.Leg(project, -(gift.amount_fen + (0 if held else matched))),
        ledger.Leg(gift_to, gift.amount_fen),
    ]
    if matched and gift.pool_id is not None:
        legs.append(ledger.Leg(ledger.match_pool(gift.pool_id), matched))
        if held:
            legs.append(ledger.Leg(ledger.match_hold(gift.pool_id), -matched))
    public: dict[str, ledger.PublicValue] = {
        "project": gift.project_id, "organization": gift.organization_id,
        "campaign": gift.campaign_id}
    parts = [ledger.LogDetail(
        ref=f"gift:{gift.order_id}", public=public,
        transfer=ledger.Transfer(project, gift_to, gift.amount_fen),
    )]
    if matched and gift.pool_id is not None:
        parts.append(ledger.LogDetail(
            ref=f"gift:{gift.order_id}", kind="campaign.match_reversed",
            public={**public, "pool": gift.pool_id},
            transfer=ledger.Transfer(ledger.match_hold(gift.pool_id) if held else project,
                                     ledger.match_pool(gift.pool_id), matched),
        ))
    ledger.post(session, ledger.EntrySpec(
        kind="campaign.gift_refunded", legs=legs, memo=gift.order_id,
        dedupe_key=f"campaign.gift_refunded:{gift.id}", actor_id=actor.id,
        no_overdraft=(project,), details=parts,
    ))
    if matched:
        _free_match(session, gift)
    _stats_delta(session, gift, before=(True, standing), after=(False, False))
    now = utcnow()
    change = audit.changes(
        gift, status=GiftStatus.REFUNDED, refunded_at=now,
        match_status=MatchStatus.REVERSED if standing else gift.match_status,
    )
    audit.record(session, actor_id=actor.id, action="campaigns.gift.refunded",
                 object_type="campaign_gift", object_id=gift.id,
                 data={**change, "order_id": gift.order_id, "amount_fen": gift.amount_fen,
                       "match_reversed_fen": matched, "reason": reason,
                       "refund": refund.id if refund is not None else None})
    session.flush()
    return gift


def pending_refund_of(*, session: Session, order_id: str) -> Refund | None:
    """The refund of a gift paid through a real provider still waiting for its answer."""
    return session.scalar(select(Refund).where(
        Refund.intent_id == order_id, Refund.status == RefundStatus.PENDING))


def settle_gift_refund(*, session: Session, order: PaymentIntent, refund: Refund,
                       succeeded: bool) -> str:
    """The provider's final word on a giving-day gift's refund, applied exactly once.

    Succeeded: the reserved money goes to the donor (`refunds` → donor clearing). Failed: it
    goes back to the project fund and the gift counts as paid again — without its match, which
    went back to the sponsor's pool when the refund was decided.
    """
    if not payments.do_settle_refund(session=session, refund=refund, succeeded=succeeded):
        return "already_applied"
    gift = _locked_gift(session, order_id=order.id)
    public: dict[str, ledger.PublicValue] = {
        "project": gift.project_id, "organization": gift.organization_id,
        "campaign": gift.campaign_id}
    destination = (ledger.donor_clearing(order.provider) if succeeded
                   else ledger.project_fund(gift.project_id))
    ledger.post(session, ledger.transfer(
        "campaign.gift_refund_settled" if succeeded else "campaign.gift_refund_failed",
        source=ledger.REFUNDS, destination=destination, amount_fen=refund.amount_fen,
        dedupe_key=f"refund.{'succeeded' if succeeded else 'failed'}:{refund.id}",
        memo=gift.order_id,
        detail=ledger.LogDetail(ref=f"refund:{refund.id}", public={
            **public, "gift": gift.order_id})))
    if not succeeded and gift.status == GiftStatus.REFUNDED:
        change = audit.changes(gift, status=GiftStatus.PAID, refunded_at=None)
        _stats_delta(session, gift, before=(False, False), after=(True, False))
        audit.record(session, actor_id=None, action="campaigns.gift.refund_failed",
                     object_type="campaign_gift", object_id=gift.id,
                     data={**change, "refund": refund.id})
    session.flush()
    return "refunded" if succeeded else "refund_failed"


# --- held matches --------------------------------------------------------------------------


def pool_log_detail(pool: MatchPool) -> ledger.LogDetail:
    """The log's view of sponsor's money entering a pool: the pool's ref and campaign."""
    return ledger.LogDetail(ref=f"pool:{pool.id}", public={
        "campaign": pool.campaign_id, "pool": pool.id, "sponsor": pool.sponsor_id})


def _gift_log_detail(gift: CampaignGift) -> ledger.LogDetail:
    """The log's view of a movement of a gift's match: the gift's ref, project and pool."""
    return ledger.LogDetail(ref=f"gift:{gift.order_id}", public={
        "project": gift.project_id, "organization": gift.organization_id,
        "campaign": gift.campaign_id, "pool": gift.pool_id})


def settle_held(*, session: Session, now: dt.datetime | None = None) -> int:
    """Settle every held match whose notice period has passed (hold → project); return how
    many settled. Released matches are not held any more and are left alone."""
    now = now or utcnow()
    due = select(CampaignGift.campaign_id).where(
        CampaignGift.match_status == MatchStatus.HELD, CampaignGift.hold_until <= now
    ).distinct()
    campaign_ids = sorted(int(c) for c in session.scalars(due))
    if not campaign_ids:
        return 0
    locks.lock_campaigns(session, campaign_ids)
    gifts = list(session.scalars(
        select(CampaignGift).where(
            CampaignGift.campaign_id.in_(campaign_ids),
            CampaignGift.match_status == MatchStatus.HELD,
            CampaignGift.status == GiftStatus.PAID,
            CampaignGift.hold_until <= now,
        ).order_by(CampaignGift.id).execution_options(populate_existing=True)))
    specs = [
        ledger.transfer(
            "campaign.match_settled", source=ledger.match_hold(g.pool_id),
            destination=ledger.project_fund(g.project_id), amount_fen=g.matched_fen,
            memo=g.order_id, dedupe_key=f"campaign.match_settled:{g.id}",
            detail=_gift_log_detail(g),
        )
        for g in gifts if g.pool_id is not None and g.matched_fen > 0
    ]
    ledger.post_many(session, specs)
    for g in gifts:
        g.match_status = MatchStatus.MATCHED
    if gifts:
        audit.record(session, actor_id=None, action="campaigns.hold.settled",
                     object_type="campaign", object_id=",".join(map(str, campaign_ids))[:40],
                     data={"gifts": [g.id for g in gifts][:1000], "count": len(gifts),
                           "matched_fen": sum(g.matched_fen for g in gifts)})
    session.flush()
    return len(gifts)


def release_held(*, session: Session, actor: User, gift_id: int | None = None,
                 order_id: str | None = None, reason: str) -> CampaignGift:
    """A reviewer returns a held match to its pool (hold → pool); the caps it used are freed."""
    if not actor.is_reviewer:
        raise PermissionDenied("Only platform reviewers may do this.", code="reviewer_only")
    reason = reason.strip()
    if not reason:
        raise InvalidInput("Give a reason.", code="reason_required", field="reason")
    gift = _locked_gift(session, gift_id=gift_id, order_id=order_id)
    if (gift.match_status != MatchStatus.HELD or gift.status != GiftStatus.PAID
            or gift.pool_id is None):
        raise Conflict("This match is not held (any more).", code="match_not_held")
    ledger.post(session, ledger.transfer(
        "campaign.match_released", source=ledger.match_hold(gift.pool_id),
        destination=ledger.match_pool(gift.pool_id), amount_fen=gift.matched_fen,
        memo=gift.order_id, dedupe_key=f"campaign.match_released:{gift.id}",
        actor_id=actor.id, no_overdraft_source=True, detail=_gift_log_detail(gift),
    ))
    _free_match(session, gift)
    _stats_delta(session, gift, before=(True, True), after=(True, False))
    change = audit.changes(gift, match_status=MatchStatus.RELEASED)
    audit.record(session, actor_id=actor.id, action="campaigns.match.released",
                 object_type="campaign_gift", object_id=gift.id,
                 data={**change, "pool_id": gift.pool_id, "amount_fen": gift.matched_fen,
                       "reason": reason})
    session.flush()
    return gift


# --- pools ---------------------------------------------------------------------------------


def top_up_pool(*, session: Session, actor: User, pool_id: int, amount_fen: int) -> MatchPool:
    """Add ``amount_fen`` of the sponsor's money to a pool (``pool.topped_up``).

    Permission is the caller's (the config service checks it); this keeps the money exact.
    """
    amount = check_amount_fen(amount_fen)
    pool = _locked_pool(session, pool_id)
    if pool.status == PoolStatus.CLOSED:
        raise Conflict("This pool is closed.", code="pool_closed")
    before = pool.committed_fen
    session.execute(
        update(MatchPool).where(MatchPool.id == pool.id).values(
            remaining_fen=MatchPool.remaining_fen + amount,
            committed_fen=MatchPool.committed_fen + amount, exhausted_at=None)
        .execution_options(synchronize_session=False))
    # committed_fen only grows: its value before the top-up names this top-up uniquely.
    ledger.post(session, ledger.transfer(
        "pool.topped_up", source=ledger.sponsor(pool.sponsor_id),
        destination=ledger.match_pool(pool.id), amount_fen=amount,
        dedupe_key=f"pool.topped_up:{pool.id}:{before}", actor_id=actor.id,
        detail=pool_log_detail(pool),
    ))
    session.refresh(pool)
    audit.record(session, actor_id=actor.id, action="campaigns.pool.topped_up",
                 object_type="match_pool", object_id=pool.id,
                 data={"amount_fen": amount, "old": {"committed_fen": before},
                       "new": {"committed_fen": pool.committed_fen}})
    return pool


def add_rule_version(*, session: Session, actor: User, pool_id: int,
                     params: RuleParams | dict[str, Any]) -> PoolRule:
    """Put a new rule version in force (version n+1; old versions never change).

    The pool's counters are rebuilt from its standing matches for the caps of the new
    version, so a cap added now counts what the pool has already matched.
    """
    if not isinstance(params, RuleParams):
        try:
            params = RuleParams.model_validate(params)
        except ValidationError as exc:
            raise InvalidInput("The rule's parameters are not valid.", code="invalid_rule",
                               details={"errors": exc.errors(include_url=False,
                                                             include_context=False)}) from None
    pool = _locked_pool(session, pool_id)
    if pool.kind != PoolKind.MATCHING:
        raise Conflict("Only a matching pool has matching rules.", code="not_a_matching_pool")
    last = session.scalar(select(func.max(PoolRule.version)).where(PoolRule.pool_id == pool.id))
    version = int(last or 0) + 1
    rule = PoolRule(pool_id=pool.id, version=version, params=params.model_dump(mode="json"),
                    created_by_id=actor.id)
    session.add(rule)
    old_version = pool.rule_version
    pool.rule_version = version
    session.flush()
    engine.rebuild_counters(session, pool_id=pool.id, campaign_id=pool.campaign_id,
                            params=params, version=version)
    audit.record(session, actor_id=actor.id, action="campaigns.rule.created",
                 object_type="match_pool", object_id=pool.id,
                 data={"old": {"rule_version": old_version}, "new": {"rule_version": version},
                       "params": rule.params})
    return rule
