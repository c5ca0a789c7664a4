"""A process killed in the middle of crediting a payment leaves no trace; the provider's retry
then credits it exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.payments.providers import SandboxProvider
from tests.money import World

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from sqlalchemy import event
    from sqlalchemy.orm import Session
    from shanju.core.db import Database
    from shanju.donations import flows

    job = json.load(open(sys.argv[1]))
    db = Database(job["url"])
    providers = flows.build_providers(sandbox_secret=job["secret"], database=db)

    @event.listens_for(Session, "before_commit")
    def die(session):
        # Everything is written and flushed; the process dies before COMMIT reaches the disk.
        os.kill(os.getpid(), signal.SIGKILL)

    with db.transaction() as s:
        flows.receive_callback(session=s, providers=providers, provider_name="sandbox",
                               body=job["body"].encode(), headers=job["headers"])
    """
)


def test_killed_mid_credit_then_retried_credits_once(
    client: TestClient, world: World, db: Database, tmp_path: Path, snapshot: Any
) -> None:
    created = client.post(
        "/api/v1/donations", json={"project_id": world.project_id, "amount_fen": 3000},
        headers={**world.auth(), "Idempotency-Key": "crash"},
    ).json()
    sandbox = SandboxProvider("test-sandbox-secret")
    body, headers = sandbox.build_callback(
        event_type="payment.succeeded", intent_id=created["payment"]["intent_id"],
        amount_fen=3000,
    )
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"url": db.url, "secret": "test-sandbox-secret",
                               "body": body.decode(), "headers": headers}))
    before = snapshot()
    child = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CHILD, str(job)], capture_output=True,
                           timeout=60, check=False)
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    assert snapshot() == before  # nothing of the half-done credit survived

    retry = client.post("/api/v1/payments/callbacks/sandbox", content=body, headers=headers)
    assert retry.json() == {"outcome": "credited"}
    again = client.post("/api/v1/payments/callbacks/sandbox", content=body, headers=headers)
    assert again.json() == {"outcome": "duplicate"}
    with db.transaction(write=False) as s:
        assert ledger.balance(s, ledger.project_fund(world.project_id)) == 3000
        assert ledger.check(s).ok
