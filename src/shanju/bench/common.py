"""What the benchmarks share: the machine they ran on, latency percentiles, throw-away
databases (a temporary SQLite file, or a fresh PostgreSQL database dropped afterwards), and
children that die with the bench."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import signal
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from shanju.core.db import Database
from shanju.core.migrations import create_schema

Progress = Callable[[int], None]
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def die_with_parent() -> None:
    """First thing in a benchmark's child process (a multiprocessing target): be sent
    SIGTERM when the parent (the bench) dies, even by SIGKILL (Linux's ``PR_SET_PDEATHSIG``),
    so that no relay or emulator outlives a killed benchmark."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl
        os._exit(1)


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot, all cores together (user,
    nice, system, irq, softirq, steal from ``/proc/stat``): taken before and after a run, the
    difference covers every process — the database server's too. None where there is no
    ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float | None:
    """CPU seconds of this machine's PostgreSQL server so far: every ``postgres`` process's
    user + system time, plus what its exited children (backends that ended) left in their
    parent's counters. Taken before and after a run, the difference is the database
    server's share of the work, apart from anything else the machine runs. None where
    ``/proc`` cannot tell (another OS, a server on another machine)."""
    total = 0
    found = False
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue  # ended meanwhile
        name = stat[stat.find("(") + 1:stat.rfind(")")]
        if name != "postgres" and not name.startswith("postgres:"):
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # fields[11:15]: utime, stime, cutime, cstime (proc(5), counted from field 3).
        total += sum(int(v) for v in fields[11:15])
        found = True
    return total / tick if found else None


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of latencies in milliseconds."""
    if not samples:
        return {}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * 1000, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2)}


def temporary_sqlite() -> tuple[Database, Path]:
    """A fresh, migrated SQLite database in a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="shanju-bench-"))
    database = Database(f"sqlite:///{folder / 'bench.sqlite3'}")
    create_schema(database)
    return database, folder


@contextmanager
def throwaway_database(kind: str, *, suffix: str = "") -> Iterator[Database]:
    """A fresh, migrated database of ``kind`` (sqlite|postgresql), removed afterwards."""
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="shanju-giving-day-"))
        path = folder / f"bench{suffix}.sqlite3"
        database = Database(f"sqlite:///{path}")
        try:
            create_schema(database)
            yield database
        finally:
            database.dispose()
            for leftover in folder.iterdir():
                leftover.unlink()
            folder.rmdir()
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database kind {kind!r}")
    name = f"shanju_bench_{os.getpid()}{suffix}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        database = Database(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
        try:
            create_schema(database)
            yield database
        finally:
            database.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
