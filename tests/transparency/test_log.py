"""The log is written with the money: leaves per movement, in the posting transaction, checked.

On SQLite and PostgreSQL: what the leaves of each kind of movement say, that a refused posting
leaves no leaf, that an entry whose parts do not add up is refused, that concurrent posters get
dense indexes, that entries posted before the log existed are backfilled, and that
``transparency check`` sees tampering of every kind.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from shanju.accounts.models import Role
from shanju.campaigns import flows as campaign_flows
from shanju.campaigns.engine import apply_batch
from shanju.core.config import get_settings
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.ledger.models import AccountKind, JournalEntry, LedgerAccount, Posting
from shanju.transparency import leaves, log, merkle
from shanju.transparency import service as ts
from shanju.transparency.check import check
from shanju.transparency.log import LogMismatch
from shanju.transparency.models import LogHead, LogLeaf, LogNode
from tests.factories import (
    make_campaign,
    make_org,
    make_paid_gift,
    make_pool,
    make_project,
    make_user,
)


def leaf_fields(session: Any, ref: str) -> list[dict[str, Any]]:
    return [json.loads(leaf.data) for leaf in ts.leaves_by_ref(session, ref)]


def test_a_transfer_is_one_canonical_leaf_with_a_donor_commitment(db: Database) -> None:
    with db.transaction() as s:
        entry = ledger.post(s, ledger.transfer(
            "donation.paid", source=ledger.donor_clearing("sandbox"),
            destination=ledger.project_fund(7), amount_fen=5_000, dedupe_key="d1",
            detail=ledger.LogDetail(ref="donation:d_x1", donor="user:12",
                                    public={"project": 7, "organization": 3}),
        ))
        [leaf] = ts.leaves_by_ref(s, "donation:d_x1")
        assert leaf.index == 0 and leaf.entry_id == entry.id
        assert leaf.leaf_hash == merkle.leaf_hash(leaf.data)
        fields = json.loads(leaf.data)
        salt = leaves.donor_salt(get_settings().secret_key, "donation:d_x1")
        assert fields == {
            "v": 1, "kind": "donation.paid", "entry": entry.id,
            "time": leaves.format_time(entry.created_at),
            "from": "donor_clearing:sandbox", "to": "project:7", "amount": 5_000,
            "ref": "donation:d_x1", "project": 7, "organization": 3,
            "donor": leaves.donor_commitment(salt, "user:12"),
        }
        # Canonical: sorted keys, no spaces, UTF-8 — the bytes are re-creatable.
        assert leaf.data == json.dumps(fields, sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=False).encode()
        assert b"user:12" not in leaf.data
        head = ts.head(s)
        assert head.size == 1 and head.root == merkle.leaf_hash(leaf.data)


def test_a_many_legged_entry_becomes_one_leaf_per_transfer(db: Database) -> None:
    with db.transaction() as s:
        ledger.post(s, ledger.EntrySpec(kind="quadratic.distributed", legs=[
            ledger.Leg(ledger.match_pool(1), -600), ledger.Leg(ledger.project_fund(1), 100),
            ledger.Leg(ledger.project_fund(2), 500)]))
        moves = [(f["from"], f["to"], f["amount"])
                 for f in (json.loads(x.data) for x in ts.entries(s, 0, 10))]
        assert moves == [("pool:1", "project:1", 100), ("pool:1", "project:2", 500)]
        assert check(s).ok


def test_parts_that_do_not_add_up_are_refused_and_nothing_is_written(db: Database) -> None:
    spec = ledger.EntrySpec(kind="campaign.batch", legs=[
        ledger.Leg(ledger.donor_clearing("sandbox"), -300), ledger.Leg(ledger.project_fund(1), 300),
    ], details=[
        ledger.LogDetail(ref="gift:a", transfer=ledger.Transfer(
            ledger.donor_clearing("sandbox"), ledger.project_fund(1), 200)),
        ledger.LogDetail(ref="gift:b", transfer=ledger.Transfer(
            ledger.donor_clearing("sandbox"), ledger.project_fund(2), 100)),
    ])
    with pytest.raises(LogMismatch), db.transaction() as s:
        ledger.post(s, spec)
    with db.transaction(write=False) as s:
        assert ts.head(s).size == 0
        assert s.scalars(select(Posting)).first() is None


def test_a_refused_posting_leaves_no_leaf(db: Database) -> None:
    with db.transaction() as s:
        ledger.post(s, ledger.transfer("x.in", source=ledger.donor_clearing("sandbox"),
                                       destination=ledger.project_fund(1), amount_fen=100))
        with pytest.raises(ledger.InsufficientFunds):
            ledger.post(s, ledger.transfer(
                "project.funds_used", source=ledger.project_fund(1),
                destination=ledger.organization(1), amount_fen=500, no_overdraft_source=True))
        assert ts.head(s).size == 1
        assert check(s).ok


def test_backfill_gives_entries_posted_before_the_log_their_leaves(db: Database) -> None:
    """What migration 0003 runs: entries with postings but no leaf get one leaf per transfer."""
    with db.transaction() as s:
        ledger.post(s, ledger.transfer("x.in", source=ledger.donor_clearing("sandbox"),
                                       destination=ledger.project_fund(1), amount_fen=900))
        # Two entries as they were before the log: postings, no leaves.
        accounts = {code: LedgerAccount(code=code, kind=AccountKind(code.split(":")[0]))
                    for code in ("pool:1", "project:2", "project:3")}
        s.add_all(accounts.values())
        old = [JournalEntry(kind="pool.old"), JournalEntry(kind="quadratic.old")]
        s.add_all(old)
        s.flush()
        s.add_all([
            Posting(entry_id=old[0].id, account_id=accounts["pool:1"].id, amount_fen=-50),
            Posting(entry_id=old[0].id, account_id=accounts["project:2"].id, amount_fen=50),
            Posting(entry_id=old[1].id, account_id=accounts["pool:1"].id, amount_fen=-70),
            Posting(entry_id=old[1].id, account_id=accounts["project:2"].id, amount_fen=30),
            Posting(entry_id=old[1].id, account_id=accounts["project:3"].id, amount_fen=40),
        ])
        s.flush()
        assert check(s).counts["entry_without_leaf"] == 2

        assert log.backfill(s) == 3
        assert check(s).ok
        moves = [(f["kind"], f["entry"], f["from"], f["to"], f["amount"])
                 for f in (json.loads(x.data) for x in ts.entries(s, 1, 4))]
        assert moves == [("pool.old", old[0].id, "pool:1", "project:2", 50),
                         ("quadratic.old", old[1].id, "pool:1", "project:2", 30),
                         ("quadratic.old", old[1].id, "pool:1", "project:3", 40)]
        assert log.backfill(s) == 0 and ts.head(s).size == 4


def test_a_giving_day_batch_logs_each_gift_and_each_match(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        donor = make_user(s)
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=1_500,
                         params={"ratio_num": 1, "ratio_den": 1})
        cid, pid, pool_id, org_id = campaign.id, project.id, pool.id, org.id
        gifts = [make_paid_gift(campaign_id=cid, project_id=pid, amount_fen=1_000,
                                donor_id=donor.id, payer_hash=f"p{i}") for i in range(3)]
        results = apply_batch(s, gifts)
    assert [r.matched_fen for r in results] == [1_000, 500, 0]
    with db.transaction(write=False) as s:
        first = leaf_fields(s, f"gift:{gifts[0].order_id}")
        assert [(f["kind"], f["from"], f["to"], f["amount"]) for f in first] == [
            ("campaign.gift", "donor_clearing:sandbox", f"project:{pid}", 1_000),
            ("campaign.match", f"pool:{pool_id}", f"project:{pid}", 1_000),
        ]
        assert first[0]["donor"] and "donor" not in first[1]
        assert {f["campaign"] for f in first} == {cid}
        assert {f["organization"] for f in first} == {org_id}
        assert first[1]["pool"] == pool_id
        assert [f["kind"] for f in leaf_fields(s, f"gift:{gifts[2].order_id}")] == [
            "campaign.gift"]
        # All in one journal entry (the batch's), as consecutive leaves.
        assert len({f["entry"] for g in gifts for f in leaf_fields(s, f"gift:{g.order_id}")}) == 1
        report = check(s)
        assert report.ok, dict(report.problems)


def test_refunding_a_gift_logs_the_money_going_back(db: Database) -> None:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        reviewer = make_user(s, role=Role.REVIEWER)
        campaign = make_campaign(s, projects=[project])
        pool = make_pool(s, campaign=campaign, budget_fen=10_000)
        gift = make_paid_gift(campaign_id=campaign.id, project_id=project.id, amount_fen=800)
        apply_batch(s, [gift])
        campaign_flows.refund_gift(session=s, actor=reviewer, order_id=gift.order_id,
                                   reason="重复支付")
        fields = leaf_fields(s, f"gift:{gift.order_id}")
        assert [(f["kind"], f["from"], f["to"], f["amount"]) for f in fields] == [
            ("campaign.gift", "donor_clearing:sandbox", f"project:{project.id}", 800),
            ("campaign.match", f"pool:{pool.id}", f"project:{project.id}", 800),
            ("campaign.gift_refunded", f"project:{project.id}", "donor_clearing:sandbox", 800),
            ("campaign.match_reversed", f"project:{project.id}", f"pool:{pool.id}", 800),
        ]
        assert check(s).ok


def test_concurrent_posters_get_dense_indexes_and_one_tree(db: Database) -> None:
    errors: list[BaseException] = []

    def poster(k: int) -> None:
        try:
            post(k)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def post(k: int) -> None:
        for i in range(15):
            with db.transaction() as s:
                ledger.post(s, ledger.transfer(
                    "donation.paid", source=ledger.donor_clearing("sandbox"),
                    destination=ledger.project_fund(1 + (i + k) % 3), amount_fen=100 + i,
                    detail=ledger.LogDetail(ref=f"donation:t{k}_{i}")))

    threads = [threading.Thread(target=poster, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with db.transaction(write=False) as s:
        assert [leaf.index for leaf in ts.entries(s, 0, 1_000)] == list(range(60))
        report = check(s)
        assert report.ok, dict(report.problems)
        head = ts.head(s)
        tree = merkle.MemoryTree()
        tree.append_data(leaf.data for leaf in ts.entries(s, 0, 1_000))
        assert head.root == tree.root() and head.size == 60
        for index in (0, 31, 59):
            proof = ts.inclusion_proof(s, index, 60)
            assert merkle.verify_inclusion(index, 60, tree.leaf(index), proof, head.root)


def _some_money(db: Database) -> None:
    with db.transaction() as s:
        for i in range(9):
            ledger.post(s, ledger.transfer(
                "donation.paid", source=ledger.donor_clearing("sandbox"),
                destination=ledger.project_fund(1), amount_fen=1_000 + i))


@pytest.mark.parametrize("tamper,kind", [
    ("leaf_data", "leaf_hash"),
    ("leaf_amount_rehashed", "entry_mismatch"),
    ("posting", "entry_mismatch"),
    ("delete_leaf", "entry_without_leaf"),
    ("node", "node"),
    ("head", "head"),
])
def test_check_finds_tampering(db: Database, tamper: str, kind: str) -> None:
    _some_money(db)
    with db.transaction() as s:
        assert check(s).ok
        leaf = ts.leaf(s, 4)
        if tamper == "leaf_data":
            s.execute(update(LogLeaf).where(LogLeaf.idx == 4)
                      .values(data=leaf.data.replace(b"1004", b"9004")))
        elif tamper == "leaf_amount_rehashed":  # consistent hash, but not the posting
            data = leaf.data.replace(b"1004", b"9004")
            s.execute(update(LogLeaf).where(LogLeaf.idx == 4)
                      .values(data=data, leaf_hash=merkle.leaf_hash(data)))
        elif tamper == "posting":
            s.execute(update(Posting).where(Posting.entry_id == leaf.entry_id,
                                            Posting.amount_fen > 0).values(amount_fen=1))
        elif tamper == "delete_leaf":
            s.execute(delete(LogLeaf).where(LogLeaf.idx == 8))
        elif tamper == "node":
            s.execute(update(LogNode).where(LogNode.level == 1, LogNode.idx == 0)
                      .values(hash=b"\x00" * 32))
        elif tamper == "head":
            s.execute(update(LogHead).values(root=b"\x11" * 32))
    with db.transaction(write=False) as s:
        report = check(s)
        assert not report.ok
        assert kind in report.counts, dict(report.problems)
