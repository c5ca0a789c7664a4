"""campaign lock version

Revision ID: 0017
Revises: 0013
Create Date: 2026-12-07 14:00:00

Issue 15 (the second-generation giving-day engine): ``campaigns.lock_version``, a number every
holder of the campaign lock increments (``campaigns.locks.lock_campaigns``). A giving-day writer
keeps its campaign's counters in memory between batches and trusts them only while the number
it reads under the lock is the one its own previous batch left: any other transaction that
took the lock since — another writer process, a refund, a top-up, a new rule version — moved
it, and the writer reads the counters again. One column on ``campaigns`` (added in place on
SQLite; ``projects`` and ``organizations``, whose search triggers 0013 owns, are untouched).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('campaigns', sa.Column('lock_version', sa.BigInteger(), server_default='0',
                                         nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('lock_version')
