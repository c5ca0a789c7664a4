"""Concurrent provider callbacks against a real server (uvicorn in a thread), on both databases.

A provider delivers at least once and in parallel: 2, 8 and 32 deliveries at the same moment of
the same signed callback, and of as many different ones, must all be answered within seconds,
credit each gift exactly once, and leave the server answering ``/healthz`` throughout. (Before
the fix the callback handler did its blocking database work on the event loop: on PostgreSQL
two deliveries froze the server for good, on SQLite they waited 30 s for the write lock and got
500s.) The giving day's order callbacks, which take their own route into the group-commit
engine, are held to the same promise.

Every request has a deadline (a socket timeout), so a regression fails here instead of hanging.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from shanju.accounts.models import User
from shanju.app import create_app
from shanju.campaigns import orders
from shanju.campaigns.checkout import stop_engine
from shanju.campaigns.models import CampaignGift
from shanju.core.clock import utcnow
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.donations import flows
from shanju.donations.models import Donation, DonationStatus
from shanju.ledger import service as ledger
from shanju.payments import service as payments
from shanju.payments.models import IntentStatus, PaymentIntent, ProviderEvent
from shanju.payments.providers import SandboxProvider
from shanju.projects.models import Project
from tests.factories import make_campaign, make_org, make_pool, make_project, make_user
from tests.money import World
from tests.serving import free_socket, uvicorn_thread

SECRET = "test-sandbox-secret"  # the `settings` fixture's sandbox secret
# Every delivery must be answered within this (the machine running the suite may be busy; the
# frozen server answered never, the SQLite one after 30 s).
ANSWER_SECONDS = 10.0
# /healthz must answer within this at every probe while the callbacks run. The regression
# stalled it for 26 s (SQLite) or for good (PostgreSQL); a busy 2-core machine (the suite with
# other work beside it, or under libfaketime a year ahead) has taken 4 s for one probe of a
# healthy server, so the bound sits between the two.
HEALTH_SECONDS = 8.0
AMOUNT = 2000
CALLBACKS = "/api/v1/payments/callbacks/sandbox"
ORDER_CALLBACKS = "/api/v1/payments/callbacks/sandbox/orders"

Delivery = tuple[bytes, dict[str, str]]


@dataclass
class Site:
    """A running server: its port and application."""

    port: int
    app: Any


def _end_stuck_transactions(db: Database) -> None:
    """PostgreSQL: end every other session of the test database, so that a server wedged by a
    regression (a transaction left open on a blocked event loop) cannot hang the teardown."""
    if db.is_sqlite:
        return
    engine = create_engine(db.url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    finally:
        engine.dispose()


@contextmanager
def serving(settings: Settings, db: Database) -> Iterator[Site]:
    """The app on ``db`` served by uvicorn in a thread until the block ends."""
    app = create_app(settings, database=db)
    sock = free_socket()
    port = sock.getsockname()[1]
    try:
        with uvicorn_thread(app, sock, unstick=lambda: _end_stuck_transactions(db)):
            yield Site(port=port, app=app)
    finally:
        stop_engine(app)  # the giving-day engine, started by the first order callback


@pytest.fixture
def site(settings: Settings, db: Database) -> Iterator[Site]:
    with serving(settings, db) as running:
        yield running


def _request(port: int, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """One HTTP request with a deadline: (status, JSON body or {}, Retry-After or '')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_SECONDS)
    try:
        conn.request(method, path, body=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        kind = response.getheader("content-type", "")
        payload = json.loads(data) if data and kind.startswith("application/json") else {}
        return response.status, payload, response.getheader("retry-after", "")
    finally:
        conn.close()


@dataclass
class Storm:
    """What a burst of concurrent deliveries got back, and how /healthz fared meanwhile."""

    answers: list[tuple[int, dict[str, Any], str]]
    seconds: float
    health: list[tuple[int, float]]

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(str(a[1].get("outcome")) for a in self.answers)


def storm(site: Site, path: str, deliveries: list[Delivery]) -> Storm:
    """Deliver every callback at the same moment (one thread each) while probing /healthz."""
    barrier = threading.Barrier(len(deliveries))
    done = threading.Event()
    health: list[tuple[int, float]] = []

    def deliver(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], str]:
        barrier.wait(timeout=ANSWER_SECONDS)
        return _request(site.port, "POST", path, body, headers)

    def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            try:
                status = _request(site.port, "GET", "/healthz")[0]
            except OSError:  # a timeout: the server did not answer
                status = 0
            health.append((status, time.monotonic() - started))
            done.wait(0.05)  # a probe every 50 ms until the burst is over

    with ThreadPoolExecutor(len(deliveries) + 1) as pool:
        prober = pool.submit(probe)
        started = time.monotonic()
        futures = [pool.submit(deliver, body, headers) for body, headers in deliveries]
        try:
            answers = [f.result() for f in futures]  # each bounded by its socket timeout
        finally:
            seconds = time.monotonic() - started
            done.set()
        prober.result()
    return Storm(answers=answers, seconds=seconds, health=health)


def assert_answered_and_healthy(result: Storm) -> None:
    """Every delivery got a 200 within the deadline; /healthz answered quickly throughout."""
    statuses = Counter(status for status, _, _ in result.answers)
    assert statuses == {200: len(result.answers)}, (statuses, result.answers[:3])
    assert result.seconds < ANSWER_SECONDS
    assert result.health, "no health probe ran"
    slow = [h for h in result.health if h[0] != 200 or h[1] > HEALTH_SECONDS]
    assert not slow, slow


# --- ordinary donations: POST /api/v1/payments/callbacks/{provider} ------------------------


def pending_intents(db: Database, world: World, count: int) -> list[str]:
    """Start ``count`` donations (pending, each with its payment intent); their intent ids."""
    sandbox = SandboxProvider(SECRET)
    ids = []
    with db.transaction() as s:
        donor = s.get_one(User, world.donor_id)
        project = s.get_one(Project, world.project_id)
        for i in range(count):
            request = flows.DonationRequest(
                project_id=project.id, amount_fen=AMOUNT, donor_name="张三丰",
                anonymous=False, message="", province=None)
            donation, created = flows.start_donation(
                session=s, actor=donor, request=request, project=project, provider=sandbox,
                idempotency_key=f"storm-{i}")
            assert created
            ids.append(donation.payment_intent_id)
    return ids


def assert_credited_once(db: Database, world: World, intent_ids: list[str]) -> None:
    """Each intent succeeded once, each donation is paid once, the ledger balances."""
    with db.transaction(write=False) as s:
        intents = s.scalars(select(PaymentIntent).where(PaymentIntent.id.in_(intent_ids)))
        assert {i.status for i in intents} == {IntentStatus.SUCCEEDED}
        paid = s.scalar(select(func.count()).select_from(Donation).where(
            Donation.status == DonationStatus.PAID))
        assert paid == len(intent_ids)
        assert ledger.check(s).ok
        assert ledger.balance(s, ledger.project_fund(world.project_id)) == \
            AMOUNT * len(intent_ids)


def rounds(n: int) -> int:
    """How many bursts of ``n`` to send: a freeze needs an unlucky interleaving, which two
    deliveries met within four rounds in the field — so small bursts are repeated."""
    return max(1, 10 // n)


@pytest.mark.parametrize("n", [2, 8, 32])
def test_the_same_callback_delivered_at_once_is_credited_once(
    site: Site, db: Database, world: World, n: int
) -> None:
    intent_ids = pending_intents(db, world, rounds(n))
    sandbox = SandboxProvider(SECRET)
    for intent_id in intent_ids:
        callback = sandbox.build_callback(event_type="payment.succeeded", intent_id=intent_id,
                                          amount_fen=AMOUNT)
        result = storm(site, CALLBACKS, [callback] * n)
        assert_answered_and_healthy(result)
        assert result.outcomes == {"credited": 1, "duplicate": n - 1}
    assert_credited_once(db, world, intent_ids)
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(ProviderEvent)) == len(intent_ids)


@pytest.mark.parametrize("n", [2, 8, 32])
def test_different_callbacks_at_once_are_each_credited_once(
    site: Site, db: Database, world: World, n: int
) -> None:
    intent_ids = pending_intents(db, world, n * rounds(n))
    sandbox = SandboxProvider(SECRET)
    for start in range(0, len(intent_ids), n):
        callbacks = [sandbox.build_callback(event_type="payment.succeeded", intent_id=i,
                                            amount_fen=AMOUNT) for i in intent_ids[start:start + n]]
        result = storm(site, CALLBACKS, callbacks)
        assert_answered_and_healthy(result)
        assert result.outcomes == {"credited": n}
    assert_credited_once(db, world, intent_ids)


def test_two_payments_claiming_one_transaction_at_once_credit_one(
    site: Site, db: Database, world: World
) -> None:
    first, second = pending_intents(db, world, 2)
    sandbox = SandboxProvider(SECRET)
    callbacks = []
    for n, intent_id in enumerate((first, second)):
        body = json.dumps({"id": f"evt_{n}", "type": "payment.succeeded", "intent_id": intent_id,
                           "amount_fen": AMOUNT, "transaction_id": "txn_claimed_twice"}).encode()
        timestamp = int(utcnow().timestamp())
        callbacks.append((body, {
            "X-Sandbox-Timestamp": str(timestamp), "X-Sandbox-Nonce": f"n{n}",
            "X-Sandbox-Signature": sandbox.sign(body, timestamp=timestamp, nonce=f"n{n}")}))
    result = storm(site, CALLBACKS, callbacks)
    assert_answered_and_healthy(result)
    assert result.outcomes == {"credited": 1, "duplicate_transaction": 1}
    with db.transaction(write=False) as s:
        assert ledger.check(s).ok
        assert ledger.balance(s, ledger.project_fund(world.project_id)) == AMOUNT
        outcomes = s.scalars(select(ProviderEvent.outcome)).all()
        assert sorted(outcomes) == ["credited", "duplicate_transaction"]


def test_a_callback_meeting_a_held_lock_is_answered_busy_and_credited_on_retry(
    settings: Settings, db: Database, world: World
) -> None:
    """A lock held too long (here: by the test) is answered 503 with Retry-After within the
    lock timeout — nothing applied — and the provider's retry is credited."""
    [intent_id] = pending_intents(db, world, 1)
    # SQLite: the write lock's wait is the Database's; PostgreSQL: the lock_timeout setting.
    app_db = Database(db.url, write_lock_timeout=0.3) if db.is_sqlite else db
    limited = settings.model_copy(update={"db_lock_timeout_ms": 300})
    callback = SandboxProvider(SECRET).build_callback(
        event_type="payment.succeeded", intent_id=intent_id, amount_fen=AMOUNT)
    try:
        with serving(limited, app_db) as running:
            with app_db.transaction() as holder:
                # The intent's row lock (PostgreSQL); the database's write lock (SQLite).
                assert payments.lock_intent(session=holder, intent_id=intent_id) is not None
                started = time.monotonic()
                status, answer, retry_after = _request(running.port, "POST", CALLBACKS,
                                                       *callback)
                waited = time.monotonic() - started
            assert (status, answer["error"]["code"], retry_after) == (503, "database_busy", "1")
            assert waited < 5
            with db.transaction(write=False) as s:
                assert s.scalar(select(func.count()).select_from(ProviderEvent)) == 0
            status, answer, _ = _request(running.port, "POST", CALLBACKS, *callback)
            assert (status, answer) == (200, {"outcome": "credited"})
    finally:
        if app_db is not db:
            app_db.dispose()
    assert_credited_once(db, world, [intent_id])


# --- giving-day orders: POST /api/v1/payments/callbacks/{provider}/orders ------------------


@dataclass
class Day:
    campaign_id: int
    project_id: int
    donor_id: int


@pytest.fixture
def day(db: Database) -> Day:
    with db.transaction() as s:
        org = make_org(s)
        project = make_project(s, org=org)
        campaign = make_campaign(s, projects=[project])
        make_pool(s, campaign=campaign, budget_fen=10_000_000)
        donor = make_user(s, display_name="张三丰")
        return Day(campaign_id=campaign.id, project_id=project.id, donor_id=donor.id)


def order_callback(settings: Settings, day: Day, i: int) -> Delivery:
    """A paid order's signed callback (a payer and device of its own: no anti-fraud hold)."""
    signer = orders.OrderSigner(settings.secret_key)
    order = orders.Order(
        order_id=signer.order_id(donor_id=day.donor_id, idempotency_key=f"storm-{i}"),
        campaign_id=day.campaign_id, project_id=day.project_id, donor_id=day.donor_id,
        donor_name="张三丰", anonymous=False, message="", province=None, amount_fen=AMOUNT,
        expires_at=2**31 - 1)
    return SandboxProvider(SECRET).build_order_callback(
        order_id=order.order_id, amount_fen=AMOUNT, attach=signer.sign(order),
        payer=f"payer-{i}", device=f"device-{i}")


def assert_gifts_credited_once(db: Database, day: Day, gifts: int) -> None:
    with db.transaction(write=False) as s:
        rows = s.scalars(select(CampaignGift)).all()
        assert len(rows) == gifts
        assert len({g.order_id for g in rows}) == gifts
        assert ledger.check(s).ok
        assert ledger.balance(s, ledger.project_fund(day.project_id)) == sum(
            g.amount_fen + (g.matched_fen if g.match_status.value == "matched" else 0)
            for g in rows)


@pytest.mark.parametrize("n", [2, 8, 32])
def test_the_same_order_callback_delivered_at_once_is_credited_once(
    site: Site, db: Database, settings: Settings, day: Day, n: int
) -> None:
    result = storm(site, ORDER_CALLBACKS, [order_callback(settings, day, 0)] * n)
    assert_answered_and_healthy(result)
    assert result.outcomes == {"credited": 1, "duplicate": n - 1}
    assert_gifts_credited_once(db, day, 1)


@pytest.mark.parametrize("n", [2, 8, 32])
def test_different_order_callbacks_at_once_are_each_credited_once(
    site: Site, db: Database, settings: Settings, day: Day, n: int
) -> None:
    result = storm(site, ORDER_CALLBACKS, [order_callback(settings, day, i) for i in range(n)])
    assert_answered_and_healthy(result)
    assert result.outcomes == {"credited": n}
    assert_gifts_credited_once(db, day, n)
