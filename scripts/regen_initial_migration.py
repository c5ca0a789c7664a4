"""Regenerate the initial migration from the models (only until the first release).

Until Shanju's first release the schema lives in one initial migration. Run this after
changing a model: ``uv run python scripts/regen_initial_migration.py``. After the first
release, add new revisions with ``alembic revision --autogenerate`` instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from shanju.core.db import Database
from shanju.core.migrations import MIGRATIONS_DIR, alembic_config

INITIAL = "0001"


def main() -> None:
    for old in (MIGRATIONS_DIR / "versions").glob(f"{INITIAL}_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite:///{Path(tmp) / 'empty.sqlite3'}")
        config = alembic_config(database)
        command.revision(
            config, message="initial schema", autogenerate=True, rev_id=INITIAL
        )
        database.dispose()
    print("regenerated", *sorted((MIGRATIONS_DIR / "versions").glob(f"{INITIAL}_*.py")))  # noqa: T201


if __name__ == "__main__":
    main()
