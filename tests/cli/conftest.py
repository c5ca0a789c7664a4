"""Fixtures of the command tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text

from shanju.bench.common import PG_ADMIN_URL
from tests.conftest import IN_CI


@pytest.fixture
def bench_databases() -> Iterator[Callable[..., int]]:
    """PostgreSQL for a benchmark that makes its own throw-away databases, named after this
    process (``shanju_bench_<pid><suffix>``, ``bench.common.throwaway_database``).

    Skips when no server answers — except in CI, where that fails. Gives a count of those
    databases still there: ``left("", "_baseline")`` after a run should be 0 (each dropped).
    """
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception:  # noqa: BLE001 - any failure means "no server"
        engine.dispose()
        reason = f"PostgreSQL is not reachable at {PG_ADMIN_URL}"
        if IN_CI:
            pytest.fail(f"{reason} (mandatory in CI)")
        pytest.skip(reason)

    def left(*suffixes: str) -> int:
        names = [f"shanju_bench_{os.getpid()}{suffix}" for suffix in suffixes]
        with engine.connect() as conn:
            return int(conn.execute(text(
                "select count(*) from pg_database where datname = any(:names)"),
                {"names": names}).scalar_one())

    yield left
    engine.dispose()
