"""escrow leases and the transparency log's queue

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08 10:00:00.000000

Issue 15 item 2 (several writers without one global lock, ``docs/locking.md``): a writer
process's escrow lease (``campaign_leases``) and the headroom it holds on cap counters and
pool budgets (``campaign_lease_slices``); ``campaign_batches.lease_id``, the lease a batch
spent from; and ``transparency_queue``, leaves written with their money and not yet given an
index by the log's sequencer. New tables and one nullable column: no table is rebuilt (on
SQLite, ``ALTER TABLE … ADD COLUMN``), so the search triggers of 0013 are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import shanju.core.db
from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'campaign_leases',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('holder', sa.String(length=60), nullable=False),
        sa.Column('state', sa.Enum('active', 'released', 'revoked', name='leasestate',
                                   native_enum=False, length=12), nullable=False),
        sa.Column('expires_at', shanju.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('created_at', shanju.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('ended_at', shanju.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_leases')),
    )
    op.create_table(
        'campaign_lease_slices',
        sa.Column('lease_id', sa.Integer(), nullable=False),
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=120), nullable=False),
        sa.Column('reserved_fen', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('reserved_fen >= 0',
                           name=op.f('ck_campaign_lease_slices_reserved_not_negative')),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                                name=op.f('fk_campaign_lease_slices_campaign_id_campaigns')),
        sa.ForeignKeyConstraint(['lease_id'], ['campaign_leases.id'],
                                name=op.f('fk_campaign_lease_slices_lease_id_campaign_leases')),
        sa.PrimaryKeyConstraint('lease_id', 'campaign_id', 'key',
                                name=op.f('pk_campaign_lease_slices')),
    )
    op.add_column('campaign_batches', sa.Column('lease_id', sa.Integer(), nullable=True))
    op.create_table(
        'transparency_queue',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('entry_id', sa.Integer(), nullable=False),
        sa.Column('ref', sa.String(length=120), nullable=True),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('enqueued_at', shanju.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'],
                                name=op.f('fk_transparency_queue_entry_id_journal_entries')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_transparency_queue')),
    )
    with op.batch_alter_table('transparency_queue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transparency_queue_entry_id'), ['entry_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('transparency_queue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transparency_queue_entry_id'))
    op.drop_table('transparency_queue')
    with op.batch_alter_table('campaign_batches', schema=None) as batch_op:
        batch_op.drop_column('lease_id')
    op.drop_table('campaign_lease_slices')
    op.drop_table('campaign_leases')
