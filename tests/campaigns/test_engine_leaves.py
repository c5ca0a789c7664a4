"""The engine's second generation builds a gift's leaves from parts its submitter prepared
(``engine.prepare``) and fills in the entry, time, organization and match in the batch. The
bytes must be exactly the canonical leaves (``transparency.leaves.build``) of the details the
batch posts — whatever the order id, provider, donor or amounts — or receipts and proofs
would not match what the log's readers recompute."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from shanju.campaigns import engine
from shanju.campaigns.engine import PaidGift
from shanju.campaigns.models import MatchStatus
from shanju.core.clock import utcnow
from shanju.ledger import service as ledger
from shanju.transparency import leaves
from shanju.transparency.leaves import LogDetail, Transfer

SECRET = "leaf-parts-test-secret"

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


def canonical(gift: PaidGift, *, entry_id: int, time: str, org_id: int, pool_id: int | None,
              matched: int, status: str) -> list[bytes]:
    """What the first engine wrote: ``leaves.build`` of each detail of the gift."""
    ref = f"gift:{gift.order_id}"
    public: dict[str, leaves.PublicValue] = {
        "project": gift.project_id, "organization": org_id, "campaign": gift.campaign_id}
    project = ledger.project_fund(gift.project_id)
    out = [leaves.build(
        kind="campaign.gift", entry_id=entry_id, time=time,
        transfer=Transfer(ledger.donor_clearing(gift.provider), project, gift.amount_fen),
        detail=LogDetail(ref=ref, public=public,
                         donor=None if gift.donor_id is None else f"user:{gift.donor_id}"),
        secret=SECRET)]
    if matched and pool_id is not None:
        to = project if status == MatchStatus.MATCHED.value else ledger.match_hold(pool_id)
        out.append(leaves.build(
            kind="campaign.match", entry_id=entry_id, time=time,
            transfer=Transfer(ledger.match_pool(pool_id), to, matched),
            detail=LogDetail(ref=ref, public={**public, "pool": pool_id}), secret=SECRET))
    return out


@settings(max_examples=300, deadline=None)
@given(
    order_id=texts, provider=texts, donor_id=st.none() | st.integers(1, 2**40),
    amount=st.integers(1, 10**12), campaign_id=st.integers(1, 10**9),
    project_id=st.integers(1, 10**9), org_id=st.integers(1, 10**9),
    entry_id=st.integers(1, 10**15), pool_id=st.integers(1, 10**6),
    matched=st.integers(0, 10**9),
    status=st.sampled_from([MatchStatus.MATCHED.value, MatchStatus.HELD.value]),
    micros=st.integers(0, 10**12),
)
def test_prepared_leaves_are_the_canonical_bytes(
        order_id: str, provider: str, donor_id: int | None, amount: int, campaign_id: int,
        project_id: int, org_id: int, entry_id: int, pool_id: int, matched: int, status: str,
        micros: int) -> None:
    # Some time ago, with milliseconds (the leaves' time format keeps them).
    paid_at = utcnow().replace(microsecond=567_000) - dt.timedelta(days=90)
    gift = PaidGift(order_id=order_id, campaign_id=campaign_id, project_id=project_id,
                    donor_id=donor_id, donor_name="x", anonymous=False, message="",
                    province=None, amount_fen=amount, provider=provider, provider_txn_id="t",
                    payer_hash="p", device_hash="d", paid_at=paid_at)
    time = leaves.format_time(paid_at + dt.timedelta(microseconds=micros))
    for pg in (False, True):
        prepared = engine.prepare(gift, pg=pg, secret=SECRET)
        decided = engine._Decided(prepared, org_id, pool_id if matched else None,
                                  1 if matched else None, matched,
                                  status if matched else MatchStatus.NONE.value, "", None, None)
        built, moved = engine._BatchLeaves([decided]).render(entry_id, time)
        assert [data for _, data in built] == canonical(
            gift, entry_id=entry_id, time=time, org_id=org_id,
            pool_id=pool_id if matched else None, matched=matched, status=status)
        assert {ref for ref, _ in built} == {f"gift:{order_id}"}
        assert sum(moved.values()) == 0
        assert moved[ledger.donor_clearing(provider)] == -amount
