"""sessions record their last activity (idle timeout)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 10:00:00.000000

``web_sessions.last_seen_at``: the last request seen with the session, to the minute. Existing
sessions are backfilled with their sign-in time, so a session idle since before the upgrade
ends by the idle rule like any other (ADR 0022).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shanju.core.db

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'last_seen_at', shanju.core.db.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE web_sessions SET last_seen_at = created_at")
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.alter_column(
            'last_seen_at', existing_type=shanju.core.db.UTCDateTime(timezone=True),
            nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_column('last_seen_at')
