"""the gifts view: one read model of a gift (ordinary donations and giving-day gifts)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 12:00:00.000000

``gifts`` is a view (ADR 0027), not a table: one row per gift of either kind, read by every
page, notice, export and API that shows gifts, written by nobody (both databases refuse writes
to a ``UNION ALL`` view). Its columns and their meaning are documented on
``shanju.gifts.models.Gift``; the mapping there must list the same columns (a test compares
them with the database).

The SQL below is this revision's own copy, on purpose: a later revision that changes the view
(or one of ``donations``, ``payment_intents``, ``campaign_gifts``) writes its own. Such a
revision drops the view first and creates it again at its end: PostgreSQL refuses to drop or
retype a column a view uses, and SQLite's batch mode (copy the table, drop it, rename the copy)
fails on the rename while a view names the dropped table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Portable SQL (SQLite and PostgreSQL). A donation always has its payment intent (the column
# is NOT NULL and unique); the LEFT JOIN lets a planner that can skip the intent when a query
# uses none of its columns (PostgreSQL) do so.
#
# Each column has the same type (PostgreSQL) and affinity (SQLite) in both halves, hence the
# CASTs. Only then may PostgreSQL treat the view as a plain append of the two tables (and skip
# the payment intents when a query needs none of their columns), and SQLite flatten it into a
# query that orders and limits it ("the newest 20 gifts of a project"), answered by merging
# the halves, the donations read in order from their (project_id, status, paid_at) index,
# instead of sorting every gift of the project. SQLite carries unused columns through the
# view's rows: a little more work per row than a query of one table.
GIFTS_VIEW = """
CREATE VIEW gifts AS
SELECT
    'donation' AS kind,
    d.public_id AS public_id,
    d.id AS source_id,
    d.project_id AS project_id,
    d.recipient_org_id AS organization_id,
    CAST(NULL AS INTEGER) AS campaign_id,
    d.donor_id AS donor_id,
    d.donor_name AS donor_name,
    d.anonymous AS anonymous,
    d.message AS message,
    d.province AS province,
    d.amount_fen AS amount_fen,
    CAST(COALESCE(pi.refunded_fen, 0) AS BIGINT) AS refunded_fen,
    CAST(0 AS BIGINT) AS matched_fen,
    CAST('none' AS VARCHAR(12)) AS match_status,
    d.status AS status,
    d.paid_at AS paid_at,
    d.refunded_at AS refunded_at,
    pi.provider AS provider,
    CAST('' AS VARCHAR(32)) AS payer_hash
FROM donations AS d
LEFT OUTER JOIN payment_intents AS pi ON pi.id = d.payment_intent_id
UNION ALL
SELECT
    'giving_day',
    g.order_id,
    g.id,
    g.project_id,
    g.organization_id,
    g.campaign_id,
    g.donor_id,
    g.donor_name,
    g.anonymous,
    g.message,
    g.province,
    g.amount_fen,
    CAST(CASE WHEN g.status = 'refunded' THEN g.amount_fen ELSE 0 END AS BIGINT),
    CAST(CASE WHEN g.match_status = 'matched' THEN g.matched_fen ELSE 0 END AS BIGINT),
    g.match_status,
    g.status,
    g.paid_at,
    g.refunded_at,
    g.provider,
    g.payer_hash
FROM campaign_gifts AS g
"""


def upgrade() -> None:
    op.execute(GIFTS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW gifts")
