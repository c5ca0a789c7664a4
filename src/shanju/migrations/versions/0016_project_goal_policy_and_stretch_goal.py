"""project goal policy and stretch goal

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 10:54:59.848551

Issue 14 (goals that mean something): what a project does once it has raised its goal —
``goal_policy`` ``continue`` (keeps taking gifts, donors are told before they pay; what every
existing project does, so the default), ``stop`` or ``stretch`` — and the stretch goal
(``stretch_goal_fen``, above the original goal, which stays as it was filed). Two columns on
``projects``; the ``gifts`` view does not read ``projects`` and is untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'goal_policy',
            sa.Enum('continue', 'stop', 'stretch', name='goalpolicy', native_enum=False,
                    length=12),
            server_default='continue', nullable=False))
        batch_op.add_column(sa.Column('stretch_goal_fen', sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint(
            op.f('ck_projects_stretch_goal_above_goal'),
            'stretch_goal_fen IS NULL OR stretch_goal_fen > goal_fen')


def downgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_projects_stretch_goal_above_goal'), type_='check')
        batch_op.drop_column('stretch_goal_fen')
        batch_op.drop_column('goal_policy')
