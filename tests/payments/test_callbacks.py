"""Provider callbacks: verification, duplicates, reordering and concurrency."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from shanju.accounts.models import User
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.donations import flows
from shanju.ledger import service as ledger
from shanju.payments.models import IntentStatus, PaymentIntent, ProviderEvent, Refund
from shanju.payments.providers import Providers, SandboxProvider
from tests.money import World

SECRET = "test-sandbox-secret"  # the `settings` fixture's sandbox secret


@pytest.fixture
def sandbox() -> SandboxProvider:
    return SandboxProvider(SECRET)


def start(client: TestClient, world: World, key: str = "k", amount: int = 2000) -> dict[str, Any]:
    response = client.post(
        "/api/v1/donations", json={"project_id": world.project_id, "amount_fen": amount},
        headers={**world.auth(), "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def deliver(client: TestClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post("/api/v1/payments/callbacks/sandbox", content=body, headers=headers)


def fund(db: Database, world: World) -> int:
    with db.transaction(write=False) as s:
        assert ledger.check(s).ok
        return ledger.balance(s, ledger.project_fund(world.project_id))


def test_signed_callback_credits_and_duplicates_change_nothing(
    client: TestClient, world: World, db: Database, sandbox: SandboxProvider, snapshot: Any
) -> None:
    d = start(client, world)
    body, headers = sandbox.build_callback(
        event_type="payment.succeeded", intent_id=d["payment"]["intent_id"], amount_fen=2000
    )
    assert deliver(client, body, headers).json() == {"outcome": "credited"}
    before = snapshot()
    assert deliver(client, body, headers).json() == {"outcome": "duplicate"}
    # The same news under a new event id (a provider's retry) is recorded but credits nothing.
    body2, headers2 = sandbox.build_callback(
        event_type="payment.succeeded", intent_id=d["payment"]["intent_id"], amount_fen=2000
    )
    assert deliver(client, body2, headers2).json() == {"outcome": "already_applied"}
    after = snapshot()
    assert after["provider_events"] == before["provider_events"] + 1
    assert {k: v for k, v in after.items() if k != "provider_events"} == {
        k: v for k, v in before.items() if k != "provider_events"
    }
    assert fund(db, world) == 2000


@pytest.mark.parametrize(
    "tamper",
    ["body", "signature", "timestamp", "missing", "stale", "wrong_secret"],
)
def test_untrusted_callbacks_are_refused_and_store_nothing(
    client: TestClient, world: World, db: Database, sandbox: SandboxProvider, snapshot: Any,
    tamper: str,
) -> None:
    d = start(client, world)
    intent_id = d["payment"]["intent_id"]
    now = utcnow() - dt.timedelta(minutes=10) if tamper == "stale" else None
    signer = SandboxProvider("another-secret") if tamper == "wrong_secret" else sandbox
    body, headers = signer.build_callback(
        event_type="payment.succeeded", intent_id=intent_id, amount_fen=2000, now=now
    )
    if tamper == "body":
        body = body.replace(b'"amount_fen":2000', b'"amount_fen":2000000')
    elif tamper == "signature":
        headers["X-Sandbox-Signature"] = "0" * 64
    elif tamper == "timestamp":
        headers["X-Sandbox-Timestamp"] = str(int(headers["X-Sandbox-Timestamp"]) + 1)
    elif tamper == "missing":
        headers = {}
    before = snapshot()
    response = deliver(client, body, headers)
    assert response.status_code == 400, response.text
    expected = "stale_callback" if tamper == "stale" else "invalid_signature"
    assert response.json()["error"]["code"] == expected
    assert snapshot() == before
    assert fund(db, world) == 0


def test_signed_but_malformed_body_is_refused(
    client: TestClient, sandbox: SandboxProvider, snapshot: Any
) -> None:
    body = json.dumps({"id": "evt_x", "type": "payment.stolen", "amount_fen": 1}).encode()
    headers = {"X-Sandbox-Timestamp": str(int(utcnow().timestamp())), "X-Sandbox-Nonce": "n"}
    headers["X-Sandbox-Signature"] = sandbox.sign(
        body, timestamp=int(headers["X-Sandbox-Timestamp"]), nonce="n"
    )
    before = snapshot()
    response = deliver(client, body, headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_callback"
    assert snapshot() == before


def test_unknown_provider_is_404(client: TestClient) -> None:
    response = client.post("/api/v1/payments/callbacks/paypal", content=b"{}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_provider"


def test_late_failure_never_undoes_a_success_and_late_success_is_credited(
    client: TestClient, world: World, db: Database, sandbox: SandboxProvider
) -> None:
    a = start(client, world, key="a")
    b = start(client, world, key="b")
    ok_a = sandbox.build_callback(event_type="payment.succeeded",
                                  intent_id=a["payment"]["intent_id"], amount_fen=2000)
    fail_a = sandbox.build_callback(event_type="payment.failed",
                                    intent_id=a["payment"]["intent_id"], amount_fen=2000)
    assert deliver(client, *ok_a).json()["outcome"] == "credited"
    assert deliver(client, *fail_a).json()["outcome"] == "ignored_stale"

    fail_b = sandbox.build_callback(event_type="payment.failed",
                                    intent_id=b["payment"]["intent_id"], amount_fen=2000)
    ok_b = sandbox.build_callback(event_type="payment.succeeded",
                                  intent_id=b["payment"]["intent_id"], amount_fen=2000)
    assert deliver(client, *fail_b).json()["outcome"] == "failed"
    assert deliver(client, *ok_b).json()["outcome"] == "credited"
    assert fund(db, world) == 4000


def test_amount_mismatch_and_unknown_intent_credit_nothing(
    client: TestClient, world: World, db: Database, sandbox: SandboxProvider
) -> None:
    d = start(client, world)
    wrong = sandbox.build_callback(event_type="payment.succeeded",
                                   intent_id=d["payment"]["intent_id"], amount_fen=1)
    assert deliver(client, *wrong).json()["outcome"] == "amount_mismatch"
    ghost = sandbox.build_callback(event_type="payment.succeeded", intent_id="pi_nope",
                                   amount_fen=2000)
    assert deliver(client, *ghost).json()["outcome"] == "unknown_intent"
    assert fund(db, world) == 0


def test_concurrent_duplicate_callbacks_credit_exactly_once(
    app: Any, client: TestClient, world: World, db: Database, sandbox: SandboxProvider
) -> None:
    d = start(client, world)
    intent_id = d["payment"]["intent_id"]
    # Eight deliveries at once: four copies of one event and four distinct event ids.
    same = sandbox.build_callback(event_type="payment.succeeded", intent_id=intent_id,
                                  amount_fen=2000)
    callbacks = [same] * 4 + [
        sandbox.build_callback(event_type="payment.succeeded", intent_id=intent_id,
                               amount_fen=2000)
        for _ in range(4)
    ]
    outcomes: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(callbacks))

    def run(body: bytes, headers: dict[str, str]) -> None:
        try:
            barrier.wait()
            with db.transaction() as s:
                outcomes.append(flows.receive_callback(
                    session=s, providers=app.state.providers, provider_name="sandbox",
                    body=body, headers=headers,
                ))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=cb) for cb in callbacks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert outcomes.count("credited") == 1
    assert set(outcomes) <= {"credited", "duplicate", "already_applied"}
    assert fund(db, world) == 2000


def test_refund_callbacks_must_match_the_refund(
    client: TestClient, world: World, db: Database, sandbox: SandboxProvider
) -> None:
    d = start(client, world)
    intent_id = d["payment"]["intent_id"]
    ok = sandbox.build_callback(event_type="payment.succeeded", intent_id=intent_id,
                                amount_fen=2000)
    assert deliver(client, *ok).json()["outcome"] == "credited"
    with db.transaction() as s:
        staff = s.get_one(User, world.staff_id)
        donation = flows.get_donation(session=s, public_id=d["id"])
        refund = flows.request_refund(session=s, actor=staff, donation=donation,
                                      providers=Providers(SandboxProvider(SECRET)),
                                      reason="测试")
        refund_id = refund.id
    wrong = sandbox.build_callback(event_type="refund.succeeded", intent_id=intent_id,
                                   amount_fen=1, refund_id=refund_id)
    assert deliver(client, *wrong).json()["outcome"] == "amount_mismatch"
    other = sandbox.build_callback(event_type="refund.succeeded", intent_id=intent_id,
                                   amount_fen=2000, refund_id="re_unknown")
    assert deliver(client, *other).json()["outcome"] == "unknown_refund"
    right = sandbox.build_callback(event_type="refund.succeeded", intent_id=intent_id,
                                   amount_fen=2000, refund_id=refund_id)
    assert deliver(client, *right).json()["outcome"] == "refunded"
    with db.transaction(write=False) as s:
        assert s.get_one(Refund, refund_id).status.value == "succeeded"
        assert ledger.check(s).ok
        assert ledger.balance(s, ledger.REFUNDS) == 0


def signed(sandbox: SandboxProvider, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A callback body of our own making, signed as the sandbox gateway signs."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp, nonce = int(utcnow().timestamp()), "n1"
    return body, {"X-Sandbox-Timestamp": str(timestamp), "X-Sandbox-Nonce": nonce,
                  "X-Sandbox-Signature": sandbox.sign(body, timestamp=timestamp, nonce=nonce)}


def test_a_transaction_id_of_another_payment_is_recorded_and_credits_nothing(
    client: TestClient, world: World, db: Database, sandbox: SandboxProvider, snapshot: Any
) -> None:
    a = start(client, world, key="a")["payment"]["intent_id"]
    b = start(client, world, key="b")["payment"]["intent_id"]
    paid_a = {"id": "evt_a", "type": "payment.succeeded", "intent_id": a, "amount_fen": 2000,
              "transaction_id": "txn_shared"}
    assert deliver(client, *signed(sandbox, paid_a)).json() == {"outcome": "credited"}
    # The provider reports B paid by A's transaction: answered (no 500), stored, not credited.
    before = snapshot()
    reused = deliver(client, *signed(sandbox, {**paid_a, "id": "evt_b", "intent_id": b}))
    assert reused.status_code == 200, reused.text
    assert reused.json() == {"outcome": "duplicate_transaction"}
    assert snapshot() == {**before, "provider_events": before["provider_events"] + 1}
    with db.transaction(write=False) as s:
        event = s.scalar(select(ProviderEvent).where(ProviderEvent.event_id == "evt_b"))
        assert event is not None
        assert (event.outcome, event.intent_id) == ("duplicate_transaction", b)
        intent = s.get_one(PaymentIntent, b)
        assert (intent.status, intent.provider_txn_id) == (IntentStatus.REQUIRES_PAYMENT, None)
    assert fund(db, world) == 2000
    # Delivered again, it is a duplicate event; B's own transaction still credits it.
    again = deliver(client, *signed(sandbox, {**paid_a, "id": "evt_b", "intent_id": b}))
    assert again.json() == {"outcome": "duplicate"}
    own = {**paid_a, "id": "evt_b2", "intent_id": b, "transaction_id": "txn_b"}
    assert deliver(client, *signed(sandbox, own)).json() == {"outcome": "credited"}
    assert fund(db, world) == 4000


@pytest.mark.parametrize("timestamp", ["²", "1" * 40, "-1", "1²"])
def test_a_timestamp_that_is_no_plain_number_is_refused_not_a_500(
    client: TestClient, snapshot: Any, timestamp: str
) -> None:
    # "²" (latin-1, so a valid header) is a digit to str.isdigit() but not to int(); a huge
    # number overflows the date. Before: 500.
    before = snapshot()
    response = client.post(
        "/api/v1/payments/callbacks/sandbox", content=b"{}",
        headers={"X-Sandbox-Timestamp": timestamp.encode("latin-1"),  # as the bytes arrive
                 "X-Sandbox-Nonce": "n", "X-Sandbox-Signature": "s"})
    assert response.status_code == 400, response.text
    assert snapshot() == before


@pytest.mark.parametrize("path", ["/api/v1/payments/callbacks/sandbox",
                                  "/api/v1/payments/callbacks/sandbox/orders"])
@pytest.mark.parametrize("declared", [True, False])
def test_a_callback_body_over_64_kib_is_refused_413_and_stores_nothing(
    client: TestClient, path: str, declared: bool, snapshot: Any
) -> None:
    """A callback is a few KiB: a huge body is refused before it is read whole, whether its
    Content-Length says so or it comes in chunks without one."""
    before = snapshot()
    big = b"{" + b" " * (64 * 1024) + b"}"
    if declared:
        response = client.post(path, content=big, headers={"Content-Type": "application/json"})
    else:
        response = client.post(path, content=iter([big[:40_000], big[40_000:]]),
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "body_too_large"
    assert snapshot() == before
