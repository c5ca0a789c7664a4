"""The disclosure numbers, computed from the domain tables, equal the ledger — for every kind
of movement, on both databases; the movements stream adds up to the same numbers."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select

from shanju.core.db import Database
from shanju.core.errors import NotFound
from shanju.disclosure import service as disclosure
from shanju.ledger import service as ledger
from shanju.ledger.models import AccountKind, LedgerAccount
from tests.disclosure.scenario import build


def test_totals_equal_the_ledger_for_every_kind_of_movement(
        db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sc = build(db, monkeypatch, tmp_path)
    with db.transaction(write=False) as s:
        assert ledger.check(s).ok
        rows = {t.project_id: t for t in disclosure.all_totals(session=s)}
        project_accounts = {
            int(code.split(":")[1]): int(bal) for code, bal in s.execute(
                select(LedgerAccount.code, LedgerAccount.balance_fen)
                .where(LedgerAccount.kind == AccountKind.PROJECT_FUND))}
        assert set(rows) == set(project_accounts) == {sc.project_id, sc.other_project_id}
        for pid, balance in project_accounts.items():
            assert rows[pid].flows.balance_fen == balance == rows[pid].ledger_balance_fen
            assert rows[pid].balanced
        assert rows[sc.project_id].flows.as_dict() == sc.expected


def test_movements_add_up_to_the_totals_and_months_too(
        db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sc = build(db, monkeypatch, tmp_path)
    with db.transaction(write=False) as s:
        moves = list(disclosure.iter_movements(session=s, project_ids=[sc.project_id],
                                               batch=3))
        assert [m.time for m in moves] == sorted(m.time for m in moves)
        by_category: dict[str, int] = defaultdict(int)
        for m in moves:
            by_category[m.category] += m.amount_fen
        e = sc.expected
        assert by_category["received"] == e["received_fen"]
        assert by_category["matched"] == e["matched_fen"]
        assert -by_category["refunded"] == e["refunded_fen"]
        assert -by_category["disbursed"] == e["disbursed_fen"]
        assert sum(m.amount_fen for m in moves) == ledger.balance(
            s, ledger.project_fund(sc.project_id))
        kinds = {m.kind for m in moves}
        assert kinds == {"donation", "gift", "match", "match_reversed", "quadratic", "refund",
                         "refund_failed", "gift_refund", "disbursement"}
        refs = {m.ref for m in moves}
        assert f"donation:{sc.donations['plain']}" in refs
        assert f"donation:{sc.donations['unpaid']}" not in refs
        assert f"gift:{sc.gifts['held'].order_id}" in refs  # the gift, not its held match
        assert f"usage:{sc.usage_id}" in refs and f"refund:{sc.refunds['failed']}" in refs
        assert f"pool:{sc.quadratic_pool_id}" in refs
        # Held (never settled) and released matches never reached the project.
        assert not [m for m in moves if m.kind == "match" and m.ref in (
            f"gift:{sc.gifts['held'].order_id}", f"gift:{sc.gifts['held_released'].order_id}",
            f"gift:{sc.gifts['held_refunded'].order_id}")]
        anonymous = [m for m in moves if m.ref == f"donation:{sc.donations['anonymous']}"]
        assert anonymous[0].anonymous and anonymous[0].donor is None
        plain = [m for m in moves if m.ref == f"donation:{sc.donations['plain']}"]
        assert plain[0].donor == "王**"

        view = disclosure.project_ledger(session=s, project=disclosure.get_project_for_disclosure(
            session=s, project_id=sc.project_id, viewer=None), recent=5)
        assert view.balanced and view.flows.as_dict() == e
        assert len(view.recent) == 5 and view.recent == sorted(
            view.recent, key=lambda m: m.time, reverse=True)
        month_sum = disclosure.Flows()
        for row in view.months:
            month_sum = month_sum.plus(row.flows)
        assert month_sum.as_dict() == e
        assert view.disbursements[0].ref == f"usage:{sc.usage_id}"
        assert view.disbursements[0].attachments[0].filename == "发票.png"


def test_annual_summary_of_the_organization(
        db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sc = build(db, monkeypatch, tmp_path)
    from shanju.core.clock import today_cn

    year = today_cn().year
    with db.transaction(write=False) as s:
        summary = disclosure.annual_summary(session=s, organization_id=sc.org_id, year=year)
        assert not summary.empty
        rows = {p.project_id: p for p in summary.projects}
        assert rows[sc.project_id].flows.as_dict() == sc.expected
        assert rows[sc.project_id].balance_fen == sc.expected["balance_fen"]
        assert summary.balance_fen == sum(
            ledger.balance(s, ledger.project_fund(p)) for p in rows)
        # Donations: 6 paid to the project; giving-day gifts: 7 on it.
        assert rows[sc.project_id].gifts == 6 + 7
        # Two donors of ordinary donations, seven giving-day donors.
        assert rows[sc.project_id].donors == 2 + 7
        assert summary.gifts == 6 + 7 + 1 + 1 and summary.donors == 2 + 8
        assert summary.purposes == [("购买冬衣", 3_000, 1)]
        assert len(summary.months) == 12
        before = disclosure.annual_summary(session=s, organization_id=sc.org_id, year=year - 1)
        assert before.empty and before.projects == [] and before.balance_fen == 0
        with pytest.raises(NotFound) as exc:
            disclosure.annual_summary(session=s, organization_id=sc.org_id, year=year + 1)
        assert exc.value.code == "year_not_found"
        with pytest.raises(NotFound):
            disclosure.annual_summary(session=s, organization_id=sc.org_id, year=1999)


def test_the_log_alone_gives_the_same_numbers(
        db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What an auditor does (``shanju verify``): the five numbers recomputed from the log's
    leaves (from/to kinds only) equal the ones computed here from the domain tables."""
    from shanju.transparency import leaves
    from shanju.transparency import service as log

    sc = build(db, monkeypatch, tmp_path)
    with db.transaction(write=False) as s:
        size = log.head(s).size
        assert size > 0
        from_log: dict[int, disclosure.Flows] = defaultdict(disclosure.Flows)
        for start in range(0, size, 1000):
            for leaf in log.entries(s, start, min(size, start + 1000)):
                data = leaves.decode(leaf.data)
                src, dst, amount = str(data["from"]), str(data["to"]), int(str(data["amount"]))
                src_kind, dst_kind = src.split(":")[0], dst.split(":")[0]
                if dst_kind == "project":
                    flows = from_log[int(dst.split(":")[1])]
                    if src_kind == "donor_clearing":
                        flows.add("received", amount)
                    elif src_kind in ("pool", "match_hold"):
                        flows.add("matched", amount)
                    elif src_kind == "refunds":
                        flows.add("refunded", -amount)
                if src_kind == "project":
                    flows = from_log[int(src.split(":")[1])]
                    if dst_kind == "pool":
                        flows.add("matched", -amount)
                    elif dst_kind in ("refunds", "donor_clearing"):
                        flows.add("refunded", amount)
                    elif dst_kind == "organization":
                        flows.add("disbursed", amount)
        domain = {t.project_id: t.flows for t in disclosure.all_totals(session=s)}
        assert {p: f.as_dict() for p, f in from_log.items()} == {
            p: f.as_dict() for p, f in domain.items()}
        assert domain[sc.project_id].as_dict() == sc.expected
