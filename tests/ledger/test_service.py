"""The ledger service: balanced entries only, derived balances, the check, and its seams."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.ledger.models import JournalEntry, LedgerAccount, Posting
from shanju.ledger.service import EntrySpec, InsufficientFunds, Leg, UnbalancedEntry

CLEARING = ledger.donor_clearing("sandbox")
FUND = ledger.project_fund(1)
ORG = ledger.organization(1)


def pay(amount: int, key: str | None = None) -> EntrySpec:
    return ledger.transfer("donation.paid", source=CLEARING, destination=FUND,
                           amount_fen=amount, dedupe_key=key)


def test_transfer_moves_money_and_balances_are_derived(db: Database) -> None:
    with db.transaction() as s:
        ledger.post(s, pay(1500))
        ledger.post(s, pay(500))
    with db.transaction(write=False) as s:
        assert ledger.balances(s, [CLEARING, FUND, ORG]) == {CLEARING: -2000, FUND: 2000, ORG: 0}
        report = ledger.check(s)
        assert report.ok and report.entries == 2 and report.postings == 4


@pytest.mark.parametrize(
    "legs",
    [
        [Leg(CLEARING, -100), Leg(FUND, 99)],  # does not sum to zero
        [Leg(FUND, 100)],  # one leg
        [Leg(CLEARING, -1.5), Leg(FUND, 1.5)],  # floats are never money
        [Leg(CLEARING, 0), Leg(FUND, 0)],  # zero legs
        [Leg(CLEARING, True), Leg(FUND, -1)],  # bools are not fen
    ],
)
def test_malformed_entries_are_refused_before_anything_is_written(
    db: Database, legs: list[Leg]
) -> None:
    with db.transaction() as s, pytest.raises(UnbalancedEntry):
        ledger.post(s, EntrySpec(kind="test.bad", legs=legs))
    with db.transaction(write=False) as s:
        assert ledger.check(s).entries == 0


def test_unknown_account_kind_is_refused(db: Database) -> None:
    with db.transaction() as s, pytest.raises(ValueError, match="wallet"):
        ledger.post(s, EntrySpec(kind="x", legs=[Leg("wallet:1", -1), Leg(FUND, 1)]))


def test_the_same_business_event_cannot_be_posted_twice(db: Database) -> None:
    with db.transaction() as s:
        ledger.post(s, pay(100, key="donation.paid:d_1"))
    with pytest.raises(IntegrityError), db.transaction() as s:
        ledger.post(s, pay(100, key="donation.paid:d_1"))
    with db.transaction(write=False) as s:
        assert ledger.balance(s, FUND) == 100
        assert ledger.check(s).ok


def test_overdraft_is_refused_and_leaves_the_transaction_usable(db: Database) -> None:
    with db.transaction() as s:
        ledger.post(s, pay(1000))
        with pytest.raises(InsufficientFunds) as info:
            ledger.post(s, ledger.transfer("project.funds_used", source=FUND, destination=ORG,
                                           amount_fen=1001, no_overdraft_source=True))
        assert info.value.details == {"short_by_fen": 1}
        ledger.post(s, ledger.transfer("project.funds_used", source=FUND, destination=ORG,
                                       amount_fen=1000, no_overdraft_source=True))
    with db.transaction(write=False) as s:
        assert ledger.balances(s, [FUND, ORG]) == {FUND: 0, ORG: 1000}
        assert ledger.check(s).ok


def test_check_finds_a_tampered_running_balance(db: Database) -> None:
    with db.transaction() as s:
        ledger.post(s, pay(700))
        s.execute(update(LedgerAccount).where(LedgerAccount.code == FUND)
                  .values(balance_fen=701))
    with db.transaction(write=False) as s:
        report = ledger.check(s)
        assert not report.ok
        assert report.mismatched_accounts == [(FUND, 701, 700)]


def test_check_finds_an_unbalanced_entry_written_behind_the_service(db: Database) -> None:
    with db.transaction() as s:
        entry = ledger.post(s, pay(700))
        s.execute(update(Posting).where(Posting.entry_id == entry.id, Posting.amount_fen > 0)
                  .values(amount_fen=699))
    with db.transaction(write=False) as s:
        report = ledger.check(s)
        assert report.unbalanced_entries == [entry.id]
        assert report.total_fen == -1


def test_post_many_and_listeners_run_in_the_same_transaction(db: Database) -> None:
    seen: list[tuple[int, int]] = []

    def listener(session: Session, entries: Sequence[JournalEntry],
                 postings: Sequence[Posting]) -> None:
        assert session.in_transaction()
        seen.append((len(entries), len(postings)))

    ledger.add_posting_listener(listener)
    try:
        with db.transaction() as s:
            ledger.post_many(s, [pay(i) for i in range(1, 501)])
    finally:
        ledger.remove_posting_listener(listener)
    assert seen == [(500, 1000)]
    with db.transaction(write=False) as s:
        assert ledger.balance(s, FUND) == sum(range(1, 501))
        assert ledger.check(s).ok


def test_concurrent_transfers_keep_running_balances_exact(db: Database) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                with db.transaction() as s:
                    # Opposite account orders in alternate workers: must not deadlock.
                    spec = pay(n + i) if n % 2 else ledger.transfer(
                        "x.y", source=FUND, destination=CLEARING, amount_fen=1)
                    ledger.post(s, spec)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with db.transaction(write=False) as s:
        assert ledger.check(s).ok


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(-10**9, 10**9).filter(bool), min_size=1, max_size=5),
                min_size=1, max_size=10))
def test_any_balanced_entries_keep_every_invariant(db: Database, raw: list[list[int]]) -> None:
    # Turn each list of amounts into a balanced entry across random accounts.
    specs = []
    for n, amounts in enumerate(raw):
        legs = [Leg(ledger.project_fund(i + 1), a) for i, a in enumerate(amounts)]
        legs.append(Leg(CLEARING, -sum(amounts)) if sum(amounts) else Leg(ORG, 0))
        if legs[-1].amount_fen == 0:
            legs = legs[:-1]
            if len(legs) < 2:
                continue
        specs.append(EntrySpec(kind=f"prop.{n}", legs=legs))
    if not all(sum(leg.amount_fen for leg in s.legs) == 0 for s in specs):
        return
    with db.transaction() as s:
        ledger.post_many(s, specs)
    with db.transaction(write=False) as s:
        assert ledger.check(s).ok


def test_ledger_api_lists_balances_and_entries(client: TestClient, db: Database) -> None:
    with db.transaction() as s:
        ledger.post(s, pay(1234))
    accounts = client.get("/api/v1/ledger/accounts", params={"kind": "project"}).json()
    assert {"code": FUND, "kind": "project", "balance_fen": 1234} in accounts["items"]
    entries: Any = client.get("/api/v1/ledger/entries", params={"account": FUND}).json()
    assert entries["total"] >= 1
    legs = entries["items"][0]["postings"]
    assert sum(p["amount_fen"] for p in legs) == 0
    assert client.get("/api/v1/ledger/check").status_code == 401
    assert client.get("/api/v1/ledger/accounts", params={"kind": "nope"}).status_code == 422
