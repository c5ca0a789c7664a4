"""A gift, whichever way it came: the ``gifts`` view, mapped read-only (ADR 0027).

A donor gives to a project in one of two ways today, each written by its own pipeline to its own
table: an ordinary donation (``donations`` and its ``payment_intents`` row, written by
``donations.flows``) or a giving-day gift (``campaign_gifts``, written by the group-commit
engine). Every reader of gifts of both kinds — totals, a project's gifts, notices, disclosure,
receipts — reads this one view instead of the two tables, so that none can forget half
(docs/architecture.md, "A gift: one read model").

The view is created by migration 0008 (its SQL lives there, not here) and is mapped on its own
metadata, not ``Base.metadata``: ``create_all``, Alembic's autogenerate and the test suite's
table list never see it as a table. Nothing writes it; both databases refuse writes to it.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shanju.campaigns.models import MatchStatus
from shanju.core.db import UTCDateTime, enum_column


class ViewBase(DeclarativeBase):
    """Read-only mappings of database views (created by migrations, never by ``create_all``)."""

    metadata = MetaData()
    type_annotation_map = {dt.datetime: UTCDateTime()}


class GiftKind(enum.StrEnum):
    """Which pipeline wrote the gift (and which table holds it)."""

    DONATION = "donation"  # donations + payment_intents
    GIVING_DAY = "giving_day"  # campaign_gifts (the group-commit engine)


class GiftStatus(enum.StrEnum):
    """One vocabulary for both kinds.

    pending: created, not paid yet (ordinary donations only); failed: the payment failed
    (ordinary only); paid: the money arrived and counts; refunded: wholly given back (a
    giving-day gift is written paid and can only become refunded). A partly refunded donation
    stays ``paid``, with ``refunded_fen`` saying how much was (or is being) given back.
    """

    PENDING = "pending"
    PAID = "paid"
    REFUNDED = "refunded"
    FAILED = "failed"


# Gifts whose money arrived at some point (a refunded gift was paid first).
RECEIVED = (GiftStatus.PAID, GiftStatus.REFUNDED)


class Gift(ViewBase):
    """One gift of either kind, as every reader sees it (a row of the ``gifts`` view)."""

    __tablename__ = "gifts"

    kind: Mapped[GiftKind] = mapped_column(enum_column(GiftKind))
    # The gift's public id: a donation's ``d_…`` or a giving-day order's ``o_…``; unique across
    # both kinds. Its transparency-log reference is :attr:`log_ref`.
    public_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The row's id in its own table (``donations.id`` or ``campaign_gifts.id``); unique only
    # with ``kind``. For tie-breaks in ordering, never shown.
    source_id: Mapped[int]
    project_id: Mapped[int]
    # The organization that receives the money (a donation's ``recipient_org_id``).
    organization_id: Mapped[int]
    campaign_id: Mapped[int | None]  # the giving day; NULL for an ordinary donation
    donor_id: Mapped[int | None]  # NULL for a guest
    donor_name: Mapped[str] = mapped_column(String(60))  # as the donor wants it shown
    anonymous: Mapped[bool]
    message: Mapped[str] = mapped_column(String(200))
    province: Mapped[str | None] = mapped_column(String(20))
    amount_fen: Mapped[int] = mapped_column(BigInteger)  # what the donor paid
    # Given back or being given back: a donation's refunds requested and not failed (its
    # intent's ``refunded_fen``); a refunded giving-day gift's whole amount; else 0.
    refunded_fen: Mapped[int] = mapped_column(BigInteger)
    # The sponsors' match that stands in the project: a giving-day gift's match once it is
    # ``matched`` (at once, or a held match that settled); 0 while held, when released or
    # reversed, and for every ordinary donation.
    matched_fen: Mapped[int] = mapped_column(BigInteger)
    match_status: Mapped[MatchStatus] = mapped_column(enum_column(MatchStatus))  # none: ordinary
    status: Mapped[GiftStatus] = mapped_column(enum_column(GiftStatus))
    paid_at: Mapped[dt.datetime | None]  # NULL while pending or failed
    refunded_at: Mapped[dt.datetime | None]  # when wholly refunded
    provider: Mapped[str] = mapped_column(String(20))  # the payment provider (sandbox, …)
    # A keyed hash of the payer's account at the provider, when the provider identified the
    # payer (a real provider's gift of either kind; the sandbox's giving-day gifts); ''
    # otherwise (the sandbox's ordinary donations).
    payer_hash: Mapped[str] = mapped_column(String(32))

    @property
    def log_ref(self) -> str:
        """The gift's reference in the transparency log: ``donation:d_…`` or ``gift:o_…``."""
        prefix = "donation" if self.kind == GiftKind.DONATION else "gift"
        return f"{prefix}:{self.public_id}"
