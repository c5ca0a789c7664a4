"""``shanju bench donations``: the giving path end to end, in-process and without HTTP.

A donation request (validation, idempotency, pending donation and payment intent: one
transaction) followed by the provider's signed callback (verification, exactly-once credit,
ledger entry: a second transaction), from several threads at once. It reports donations per
second and latency percentiles, then checks the ledger still reconciles (a benchmark that
breaks the money is not a result).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from shanju.accounts.models import Role, User
from shanju.bench.common import Progress, machine, percentiles
from shanju.core.db import Database
from shanju.core.security import hash_password
from shanju.donations import flows
from shanju.ledger import service as ledger
from shanju.organizations import uscc
from shanju.organizations.models import Organization, OrgStatus, OrgType
from shanju.payments.providers import SandboxProvider
from shanju.projects.models import Project, ProjectStatus

BENCH_SECRET = "bench-sandbox-secret"  # noqa: S105 - a throw-away key for a throw-away database


def _setup_donation_world(database: Database, donors: int) -> tuple[int, list[int]]:
    """One fundraising project and ``donors`` donor accounts; returns their ids."""
    today = time.strftime("%Y-%m-%d")
    import datetime as dt

    day = dt.date.fromisoformat(today)
    with database.transaction() as session:
        org = Organization(
            name="基准测试公益基金会", uscc=uscc.make("53100000MJ999999"),
            org_type=OrgType.FOUNDATION, registering_authority="民政部", province="北京",
            contact_phone="010-00000000", status=OrgStatus.APPROVED,
            fundraising_cert_no="bench", fundraising_valid_from=day - dt.timedelta(days=30),
            fundraising_valid_until=day + dt.timedelta(days=365),
        )
        session.add(org)
        session.flush()
        project = Project(
            organization_id=org.id, recipient_org_id=org.id, title="基准测试项目",
            summary="benchmark", province="北京", goal_fen=10**12, fundraising_plan="bench",
            filing_number="bench", filing_valid_from=day - dt.timedelta(days=1),
            filing_valid_until=day + dt.timedelta(days=365), status=ProjectStatus.FUNDRAISING,
        )
        session.add(project)
        password = hash_password("bench-password")
        users = [User(email=f"bench{i}@bench.invalid", display_name=f"捐赠人{i}",
                      password_hash=password, role=Role.DONOR) for i in range(donors)]
        session.add_all(users)
        session.flush()
        return project.id, [u.id for u in users]


def bench_donations(
    database: Database, *, donations: int, workers: int, progress: Progress | None = None
) -> dict[str, Any]:
    """Give ``donations`` gifts from ``workers`` threads through the real flows."""
    project_id, donor_ids = _setup_donation_world(database, donors=workers)
    sandbox = SandboxProvider(BENCH_SECRET)
    providers = flows.build_providers(sandbox_secret=BENCH_SECRET, database=database)
    create_latency: list[float] = []
    credit_latency: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_worker = [donations // workers + (1 if i < donations % workers else 0)
                  for i in range(workers)]

    def worker(index: int) -> None:
        donor_id = donor_ids[index]
        for n in range(per_worker[index]):
            try:
                t0 = time.perf_counter()
                with database.transaction() as session:
                    donor = session.get_one(User, donor_id)
                    request, project = flows.check_donation_request(
                        session=session, actor=donor, project_id=project_id,
                        amount_fen=100 + n % 9_900, donor_name=None, anonymous=False,
                        message="", province="北京",
                    )
                    donation, _ = flows.start_donation(
                        session=session, actor=donor, request=request, project=project,
                        provider=sandbox, idempotency_key=f"bench-{index}-{n}",
                    )
                    intent_id, amount = donation.payment_intent_id, donation.amount_fen
                t1 = time.perf_counter()
                body, headers = sandbox.build_callback(
                    event_type="payment.succeeded", intent_id=intent_id, amount_fen=amount)
                with database.transaction() as session:
                    outcome = flows.receive_callback(
                        session=session, providers=providers, provider_name="sandbox",
                        body=body, headers=headers)
                t2 = time.perf_counter()
                if outcome != "credited":
                    raise RuntimeError(f"callback outcome {outcome}")
                with lock:
                    create_latency.append(t1 - t0)
                    credit_latency.append(t2 - t1)
                if progress:
                    progress(1)
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    with database.transaction(write=False) as session:
        report = ledger.check(session)
        fund = ledger.balance(session, ledger.project_fund(project_id))
    completed = len(credit_latency)
    return {
        "benchmark": "donations",
        "database": database.engine.dialect.name,
        "donations": donations,
        "workers": workers,
        "completed": completed,
        "errors": len(errors),
        "first_errors": errors[:5],
        "seconds": round(elapsed, 3),
        "donations_per_second": round(completed / elapsed, 1) if elapsed else None,
        "create_latency": percentiles(create_latency),
        "credit_latency": percentiles(credit_latency),
        "ledger_ok": report.ok,
        "project_fund_fen": fund,
        "machine": machine(),
    }
