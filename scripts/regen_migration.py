"""Regenerate the newest, not yet released migration from the models.

The initial schema (0001) has been released with the foundation; later changes are new
revisions. While a revision is still being built (not on a release), regenerate it after
changing a model instead of stacking small revisions:

    uv run python scripts/regen_migration.py 0002 "giving-day campaigns"

It deletes ``versions/<rev>_*.py``, upgrades an empty SQLite database to the revision before
it, and autogenerates ``<rev>`` from the difference to the models.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

import shanju.models  # noqa: F401 - every table in the metadata
from shanju.core.db import Database
from shanju.core.migrations import MIGRATIONS_DIR, alembic_config


def main(rev: str, message: str) -> None:
    for old in (MIGRATIONS_DIR / "versions").glob(f"{rev}_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite:///{Path(tmp) / 'empty.sqlite3'}")
        config = alembic_config(database)
        command.upgrade(config, "head")
        command.revision(config, message=message, autogenerate=True, rev_id=rev)
        database.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
