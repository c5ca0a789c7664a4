"""Donation flows under concurrency: one idempotency key, one donation."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from shanju.accounts.models import User
from shanju.core.db import Database
from shanju.donations import flows
from shanju.donations.models import Donation
from shanju.payments.providers import SandboxProvider
from tests.money import World


def test_concurrent_requests_with_one_key_create_one_donation(db: Database, world: World
                                                              ) -> None:
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        try:
            barrier.wait()
            with db.transaction() as s:
                donor = s.get_one(User, world.donor_id)
                request, project = flows.check_donation_request(
                    session=s, actor=donor, project_id=world.project_id, amount_fen=888,
                    donor_name=None, anonymous=True, message="", province=None,
                )
                donation, _ = flows.start_donation(
                    session=s, actor=donor, request=request, project=project,
                    provider=SandboxProvider("x"), idempotency_key="same-key",
                )
                results.append(donation.public_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(results)) == 1
    with db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Donation)) == 1
