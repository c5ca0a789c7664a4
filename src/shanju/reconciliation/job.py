"""The payments job: the sweep and the daily reconciliation, in the background of the app.

Like the transparency log's checkpointer (``transparency.checkpoints.Checkpointer``), a thread
of each server process runs while the application does, if a real provider is configured and
``SHANJU_PAYMENTS_JOB_SECONDS`` is above 0; of several server processes only the leader
(``core.leader.Leadership``: a PostgreSQL advisory lock) runs its rounds. Every round it

1. sweeps: asks the providers about orders open and refunds pending for
   ``SHANJU_PAYMENTS_SWEEP_AFTER_MINUTES`` (their callbacks may never come);
2. from ``SHANJU_RECONCILE_AFTER_HOUR`` o'clock China time, reconciles the day before for
   each provider — once: the run claims ``(provider, day)`` under a unique key, so of several
   server processes one runs it. A run that failed for a reason that may pass (the bill not
   ready yet) gives its claim back and is tried again an hour later.

Everything it does is safe to repeat (the exactly-once intake); failures are logged and
retried next round. ``shanju payments sweep`` and ``shanju payments reconcile`` do the same
from the command line, e.g. from a timer (docs/reconciliation.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from shanju.core.clock import CHINA_TZ, utcnow
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.leader import Leadership
from shanju.gifts.flows import PayerHasher
from shanju.payments.gateway import Gateway
from shanju.reconciliation import flows
from shanju.reconciliation.models import RunTrigger

log = structlog.get_logger(__name__)

RECONCILE_RETRY = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Round:
    """What one round of the job did."""

    sweep: flows.SweepResult
    runs: list[flows.RunResult]


class PaymentsJob:
    """A thread that sweeps every ``interval`` seconds and reconciles yesterday once a day."""

    def __init__(self, *, database: Database, gateways: Mapping[str, Gateway],
                 secret_key: str, hash_payer: PayerHasher, interval: float,
                 sweep_after: dt.timedelta, reconcile_after_hour: int,
                 clock: Callable[[], dt.datetime] = utcnow,
                 leader: Leadership | None = None) -> None:
        self.database = database
        self.leader = leader
        self.gateways = gateways
        self.secret_key = secret_key
        self.hash_payer = hash_payer
        self.interval = interval
        self.sweep_after = sweep_after
        self.reconcile_after_hour = reconcile_after_hour
        self.clock = clock
        self._next_reconcile: dt.datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start in the background (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="payments-job", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current round."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.leader is not None:
            self.leader.release()

    def run_once(self) -> Round:
        """One round: the sweep, then yesterday's reconciliation when it is due."""
        now = self.clock()
        swept = flows.sweep(database=self.database, gateways=self.gateways,
                            older_than=now - self.sweep_after, secret_key=self.secret_key,
                            hash_payer=self.hash_payer)
        runs: list[flows.RunResult] = []
        local = now.astimezone(CHINA_TZ)
        due = self._next_reconcile is None or now >= self._next_reconcile
        if local.hour >= self.reconcile_after_hour and due:
            runs = flows.reconcile_day(
                database=self.database, gateways=self.gateways,
                day=local.date() - dt.timedelta(days=1), secret_key=self.secret_key,
                hash_payer=self.hash_payer, trigger=RunTrigger.SCHEDULED, claim=True)
            # A failed run gave its claim back (or kept it): either way, not before an hour.
            self._next_reconcile = now + RECONCILE_RETRY if any(
                r.status.value == "failed" for r in runs) else None
        return Round(swept, runs)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            # Of several server processes, one sweeps (core/leader.py).
            if self.leader is not None and not self.leader.held():
                continue
            try:
                self.run_once()
            except (SQLAlchemyError, TimeoutError, OSError) as exc:
                log.warning("reconciliation.job_failed", error=str(exc))
            except Exception:  # noqa: BLE001 - never let the thread die; retried next round
                log.exception("reconciliation.job_error")


def app_gateways(app: FastAPI) -> Mapping[str, Gateway]:
    """The application's real gateways (where ``gifts.api.gateways_of`` finds them)."""
    providers = getattr(app.state, "providers", None)
    return providers.gateways if providers is not None else {}


@asynccontextmanager
async def payments_job_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the app runs with a real provider, run the payments job: a thread in each
    process, whose rounds run in one process of the deployment (the leader, core/leader.py)."""
    settings: Settings = app.state.settings
    gateways = app_gateways(app)
    job: PaymentsJob | None = None
    if settings.payments_job_seconds > 0 and gateways:
        job = PaymentsJob(
            database=app.state.db, gateways=gateways, secret_key=settings.secret_key,
            hash_payer=app.state.orders.payer_hash, interval=settings.payments_job_seconds,
            sweep_after=dt.timedelta(minutes=settings.payments_sweep_after_minutes),
            reconcile_after_hour=settings.reconcile_after_hour,
            leader=Leadership(app.state.db, "payments-job"))
        job.start()
        log.info("reconciliation.job.started", interval=settings.payments_job_seconds,
                 providers=sorted(gateways))
    try:
        yield
    finally:
        if job is not None:
            await asyncio.to_thread(job.stop)
            log.info("reconciliation.job.stopped")
