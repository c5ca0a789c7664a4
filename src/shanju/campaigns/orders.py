"""Giving-day orders: signed and stateless, so that nothing is written before the money arrives.

At a giving day's opening every donor asks for an order at once. Writing a pending row per
order would double the writes of the peak and put every one of them on the database's write
path; instead an order is a **token**: its fields signed with HMAC-SHA256 under a key derived
from the installation's secret. The platform hands it to the payment provider as merchant data
(``attach``, as WeChat Pay calls it), the provider gives it back in its signed callback, and the
callback handler trusts the order's fields because it can verify its own signature. The first
durable write is the paid gift (``campaigns.engine``).

* The order id (``o_…``, the provider's out-trade-no) is derived from the donor and the
  client's Idempotency-Key, so a retried request gets the same order, and a second payment for
  it meets the gift's unique ``order_id``: exactly-once.
* An order expires (:data:`ORDER_TTL`) — for paying, not for crediting: a callback is checked
  against the time the provider says it was paid, so a late or retried callback of money paid
  in time is still credited.
* A token for one campaign is refused where another is expected; its amount must equal the
  amount the provider reports.

:func:`check_order_request` validates a donor's request (campaign live, project enrolled and
approved, amount, and every text field small enough for the gift's row: the engine commits many
gifts in one transaction, so a value the database would refuse must never reach it). What it
reads of the campaign and the project (:class:`OrderFacts`) is shared by the process's
requests for at most :data:`ORDER_FACTS_MAX_AGE_S`; a refusal is always read afresh.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, event, inspect, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from shanju.accounts.models import User
from shanju.campaigns.engine import PaidGift
from shanju.campaigns.models import (
    Campaign,
    CampaignGift,
    CampaignStatus,
    Enrolment,
    EnrolmentStatus,
)
from shanju.core.clock import today_cn, utcnow
from shanju.core.errors import Conflict, DomainError, InvalidInput, NotFound
from shanju.core.i18n import N_
from shanju.core.money import check_amount_fen
from shanju.core.regions import check_province
from shanju.core.text import check_text
from shanju.gifts import service as gifts
from shanju.payments.providers import OrderNotification
from shanju.projects import goals
from shanju.projects import service as projects
from shanju.projects.models import Project

ORDER_TTL = dt.timedelta(hours=2)
# A provider's clock and ours may differ a little: a payment reported this long after the
# order expired is still accepted.
PAID_AT_SKEW = dt.timedelta(minutes=5)
MAX_NAME = 60
MAX_MESSAGE = 200
MAX_KEY = 100
TOKEN_VERSION = 1


class InvalidOrder(DomainError):
    """An order token (or a callback carrying one) that cannot be trusted or does not fit."""

    status_code = 400
    code = "invalid_order_token"


@dataclass(frozen=True, slots=True)
class Order:
    """A giving-day order: what the donor asked to give (never stored; carried by its token)."""

    order_id: str
    campaign_id: int
    project_id: int
    donor_id: int
    donor_name: str
    anonymous: bool
    message: str
    province: str | None
    amount_fen: int
    expires_at: int  # Unix seconds (UTC)

    def to_json(self) -> dict[str, Any]:
        """The order as the API shows it."""
        return {
            "order_id": self.order_id,
            "campaign_id": self.campaign_id,
            "project_id": self.project_id,
            "amount_fen": self.amount_fen,
            "donor_name": self.donor_name,
            "anonymous": self.anonymous,
            "message": self.message,
            "province": self.province,
            "expires_at": dt.datetime.fromtimestamp(self.expires_at, dt.UTC).isoformat(),
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# The token's payload keys (short: the token travels in every callback).
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "v": int, "o": str, "c": int, "p": int, "u": int, "n": str, "a": bool, "m": str,
    "r": (str, type(None)), "f": int, "x": int,
}


class OrderSigner:
    """Makes and checks order ids, order tokens and the hashes of payer and device ids.

    Every key is derived from the installation's secret key, one per purpose, so that a value
    made for one purpose never verifies as another.
    """

    def __init__(self, secret_key: str) -> None:
        root = secret_key.encode()

        def derive(purpose: str) -> bytes:
            return hmac.new(root, f"shanju.campaigns.orders:{purpose}".encode(),
                            hashlib.sha256).digest()

        self._id_key = derive("order-id")
        self._token_key = derive("token")
        self._payer_key = derive("payer")
        self._device_key = derive("device")

    # -- order ids ------------------------------------------------------------------------

    def order_id(self, *, donor_id: int, idempotency_key: str) -> str:
        """The order id for this donor and Idempotency-Key (the same every time)."""
        digest = hmac.digest(self._id_key, f"{donor_id}\n{idempotency_key}".encode(), "sha256")
        return "o_" + base64.b32encode(digest[:20]).decode().lower()  # 34 characters

    # -- tokens ---------------------------------------------------------------------------

    def sign(self, order: Order) -> str:
        """The order's token: ``<payload>.<signature>``, both base64url."""
        payload = {
            "v": TOKEN_VERSION, "o": order.order_id, "c": order.campaign_id,
            "p": order.project_id, "u": order.donor_id, "n": order.donor_name,
            "a": order.anonymous, "m": order.message, "r": order.province,
            "f": order.amount_fen, "x": order.expires_at,
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
        return f"{body}.{self._signature(body)}"

    def _signature(self, body: str) -> str:
        # hmac.digest: OpenSSL's one-shot HMAC (several times faster than an HMAC object).
        return _b64(hmac.digest(self._token_key, body.encode(), "sha256"))

    def verify(self, token: str, *, at: dt.datetime | None = None,
               campaign_id: int | None = None) -> Order:
        """Return the order a token stands for, or raise :class:`InvalidOrder`.

        ``at`` is when the order is used (paid): after its expiry (plus a little clock skew)
        the token is refused with ``order_expired``. ``campaign_id``, when given, must be the
        order's campaign (``order_other_campaign``).
        """
        body, dot, signature = token.rpartition(".")
        if not dot or not body or len(token) > 4096:
            raise InvalidOrder(N_("The order token is not valid."))
        if not hmac.compare_digest(self._signature(body).encode(), signature.encode()):
            raise InvalidOrder(N_("The order token is not valid."))
        try:
            data = json.loads(_unb64(body))
            if not isinstance(data, dict) or set(data) != set(_FIELDS):
                raise ValueError("fields")
            for key, kind in _FIELDS.items():
                value = data[key]
                if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                    raise ValueError(key)
            if data["v"] != TOKEN_VERSION:
                raise ValueError("version")
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            # A payload we signed ourselves but cannot read: an older format.
            raise InvalidOrder(N_("The order token is not valid.")) from exc
        order = Order(
            order_id=data["o"], campaign_id=data["c"], project_id=data["p"],
            donor_id=data["u"], donor_name=data["n"], anonymous=data["a"],
            message=data["m"], province=data["r"], amount_fen=data["f"], expires_at=data["x"],
        )
        when = (at or utcnow()).timestamp()
        if when > order.expires_at + PAID_AT_SKEW.total_seconds():
            raise InvalidOrder(N_("This order has expired. Please start your donation again."),
                               code="order_expired")
        if campaign_id is not None and order.campaign_id != campaign_id:
            raise InvalidOrder(N_("This order belongs to another campaign."),
                               code="order_other_campaign")
        return order

    # -- payer and device ------------------------------------------------------------------

    def payer_hash(self, payer: str) -> str:
        """A keyed hash of the payer's account at the provider (32 hex; "" for none)."""
        return _keyed_hash(self._payer_key, payer)

    def device_hash(self, device: str) -> str:
        """A keyed hash of the paying device's identifier (32 hex; "" for none)."""
        return _keyed_hash(self._device_key, device)

    # -- the callback ------------------------------------------------------------------------

    def paid_gift(self, note: OrderNotification) -> PaidGift:
        """Turn a verified provider callback into the engine's input, or raise.

        The order token (``attach``) must verify, must be the order the provider paid, for
        the amount the provider collected, paid before the order expired.
        """
        order = self.verify(note.attach, at=note.paid_at)
        if order.order_id != note.order_id:
            raise InvalidOrder(N_("The callback is for another order than its token."),
                               code="order_mismatch")
        if order.amount_fen != note.amount_fen:
            raise InvalidOrder(
                N_("The amount paid differs from the order's amount."), code="amount_mismatch",
                details={"order_fen": order.amount_fen, "paid_fen": note.amount_fen},
            )
        return PaidGift(
            order_id=order.order_id,
            campaign_id=order.campaign_id,
            project_id=order.project_id,
            donor_id=order.donor_id,
            donor_name=order.donor_name,
            anonymous=order.anonymous,
            message=order.message,
            province=order.province,
            amount_fen=order.amount_fen,
            provider=note.provider,
            provider_txn_id=note.provider_txn_id[:80],
            payer_hash=self.payer_hash(note.payer),
            device_hash=self.device_hash(note.device),
            paid_at=note.paid_at,
        )


def _keyed_hash(key: bytes, value: str) -> str:
    if not value:
        return ""
    return hmac.digest(key, value.encode(), "sha256").hex()[:32]


# --- validating a donor's request -----------------------------------------------------------


def check_idempotency_key(key: str | None) -> str:
    """Validate the client's Idempotency-Key (required: it is what makes the order id)."""
    if key is None or not key.strip():
        raise InvalidInput(
            "Send an Idempotency-Key header (any unique string per donation attempt) so a "
            "retry cannot create a second donation.",
            code="idempotency_key_required", field="Idempotency-Key",
        )
    key = key.strip()
    if len(key) > MAX_KEY or not key.isprintable():
        raise InvalidInput(
            "The Idempotency-Key must be at most 100 printable characters.",
            code="idempotency_key_invalid", field="Idempotency-Key",
        )
    return key


def _clean_text(value: str | None, *, limit: int, field: str, code: str, message: str) -> str:
    return check_text(value, field=field, max_length=limit, code=code, message=message,
                      multiline=field == "message")


def get_campaign(*, session: Session, campaign_id: int) -> Campaign:
    """Return a campaign or raise NotFound ``campaign_not_found``."""
    return check_campaign_found(session.get(Campaign, campaign_id))


def check_campaign_found(campaign: Campaign | None) -> Campaign:
    """The campaign, unless there is none to show (missing, or still a draft)."""
    if campaign is None or campaign.status == CampaignStatus.DRAFT:
        raise NotFound(N_("There is no such campaign."), code="campaign_not_found")
    return campaign


def check_campaign_live(campaign: Campaign) -> None:
    """Refuse orders for a campaign that is not live."""
    if campaign.status != CampaignStatus.LIVE:
        raise Conflict("This campaign is not live, so it cannot take giving-day gifts.",
                       code="campaign_not_live", details={"status": campaign.status.value})


# --- what validating an order reads, shared by the process's requests ------------------------

#: How old (seconds) the facts an order is validated against may be: a campaign that ended, a
#: project unenrolled, paused or closed at its goal stops taking orders in every server
#: process at most this long after the change (docs/campaigns/checkout.md, "Validating an
#: order"). Facts that would *refuse* an order are never trusted from memory: read again.
ORDER_FACTS_MAX_AGE_S = 1.0
# Entries kept per database at most (forgotten all at once beyond: a flood of made-up ids).
MAX_ORDER_FACTS = 20_000
_M = TypeVar("_M", Campaign, Project)


def _copy(row: _M) -> _M:
    """A copy of a loaded row in no session (its columns only: the models have no
    relationships): what a process's requests may share, read-only."""
    return type(row)(**{attr.key: getattr(row, attr.key)
                        for attr in inspect(type(row)).column_attrs})


@dataclass(frozen=True, slots=True)
class CampaignFacts:
    """A campaign as an order sees it (a copy, never to be changed), or None: no such one."""

    campaign: Campaign | None
    taken_at: float


@dataclass(frozen=True, slots=True)
class ProjectFacts:
    """A project as an order to it in a campaign sees it: the project (a copy, never to be
    changed; None: no such project), its enrolment's status in the campaign (None: not
    enrolled) and what it has raised (for its goal)."""

    project: Project | None
    enrolment: EnrolmentStatus | None
    raised_fen: int
    taken_at: float


class OrderFacts:
    """The campaigns and projects a process's orders are validated against, each read at
    most once per :data:`ORDER_FACTS_MAX_AGE_S` (one database's; :func:`order_facts`).

    At a giving day's peak every order would otherwise read the same campaign, project and
    enrolment rows and sum the project's gifts (the ``gifts`` view, a sum that grows with the
    project's gifts) — for facts that change a few times a day. Here they are read once a
    second per process and project; an order is answered from memory. Reads that race fill
    the same entry twice (harmless); facts read in a transaction that has changed anything
    (flushed or not) are used but not kept: they may be its own, uncommitted.
    """

    def __init__(self, *, max_age_s: float = ORDER_FACTS_MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self.clock = clock
        self._campaigns: dict[int, CampaignFacts] = {}
        self._projects: dict[tuple[int, int], ProjectFacts] = {}

    def campaign(self, session: Session, campaign_id: int, *, fresh: bool = False
                 ) -> tuple[CampaignFacts, bool]:
        """The campaign's facts and whether they were read now (``fresh``: read them now)."""
        now = self.clock()
        known = self._campaigns.get(campaign_id)
        if known is not None and not fresh and now - known.taken_at < self.max_age_s:
            return known, False
        row = session.get(Campaign, campaign_id)
        facts = CampaignFacts(None if row is None else _copy(row), now)
        self._keep(session, self._campaigns, campaign_id, facts)
        return facts, True

    def project(self, session: Session, campaign_id: int, project_id: int, *,
                fresh: bool = False) -> tuple[ProjectFacts, bool]:
        """The project's facts in the campaign and whether they were read now."""
        now = self.clock()
        key = (campaign_id, project_id)
        known = self._projects.get(key)
        if known is not None and not fresh and now - known.taken_at < self.max_age_s:
            return known, False
        # One statement: the project, its enrolment in the campaign, what it has raised.
        row = session.execute(
            select(Project, Enrolment.status, gifts.project_raised_fen(project_id))
            .outerjoin(Enrolment, (Enrolment.project_id == Project.id)
                       & (Enrolment.campaign_id == campaign_id))
            .where(Project.id == project_id)).first()
        facts = (ProjectFacts(None, None, 0, now) if row is None
                 else ProjectFacts(_copy(row[0]), row[1], int(row[2] or 0), now))
        self._keep(session, self._projects, key, facts)
        return facts, True

    def clear(self) -> None:
        """Forget everything (the next order of each campaign and project reads again)."""
        self._campaigns.clear()
        self._projects.clear()

    @staticmethod
    def _keep(session: Session, entries: dict[Any, Any], key: Any, facts: Any) -> None:
        if session.new or session.dirty or session.deleted or session.info.get(_FLUSHED):
            return  # read beside changes of this transaction: not for others
        if len(entries) >= MAX_ORDER_FACTS:
            entries.clear()
        entries[key] = facts


# Whether a session's transaction has written (flushed) anything yet: facts it reads then may
# include its own uncommitted changes.
_FLUSHED = "shanju.orders.flushed"


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, _context: Any) -> None:
    session.info[_FLUSHED] = True


@event.listens_for(Session, "after_transaction_end")
def _forget_flush(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the transaction itself, not a savepoint
        session.info.pop(_FLUSHED, None)


_order_facts: weakref.WeakKeyDictionary[Pool, OrderFacts] = weakref.WeakKeyDictionary()
_order_facts_lock = threading.Lock()


def order_facts(session: Session) -> OrderFacts:
    """The process's :class:`OrderFacts` of the session's database (one per engine: its
    read and write sessions share them)."""
    bind = session.get_bind()
    pool = (bind if isinstance(bind, Engine) else bind.engine).pool
    facts = _order_facts.get(pool)
    if facts is None:
        with _order_facts_lock:
            facts = _order_facts.get(pool)
            if facts is None:
                facts = _order_facts[pool] = OrderFacts()
    return facts


def _check_facts(campaign_facts: CampaignFacts, project_facts: ProjectFacts, *,
                 confirm_past_goal: bool) -> tuple[Campaign, Project]:
    """The checks of :func:`check_order_request`, in its order, on facts read before."""
    campaign = check_campaign_found(campaign_facts.campaign)
    check_campaign_live(campaign)
    project = project_facts.project
    if project is None:
        raise NotFound(N_("This project does not exist."), code="project_not_found")
    if project_facts.enrolment != EnrolmentStatus.APPROVED:
        raise Conflict("This project does not take part in this campaign.",
                       code="project_not_enrolled")
    projects.check_accepts_donations(project=project, on=today_cn())
    goals.check_goal(goals.goal_of(project, project_facts.raised_fen),
                     confirm_past_goal=confirm_past_goal)
    return campaign, project


def check_order_request(
    *,
    session: Session,
    actor: User | None,
    campaign_id: int,
    project_id: int,
    amount_fen: object,
    donor_name: str | None,
    anonymous: bool,
    message: str | None,
    province: str | None,
    confirm_past_goal: bool = False,
) -> tuple[Campaign, Project, dict[str, Any]]:
    """Validate a giving-day order request; return the campaign, project and clean fields.

    A project past its goal takes the gift only with ``confirm_past_goal`` (the donor was
    told); one that stopped at its goal takes none (``projects/goals.py``).

    Reads only (campaign, project, enrolment, what the project raised), through the
    process's :class:`OrderFacts`: what an order is accepted on may be up to
    :data:`ORDER_FACTS_MAX_AGE_S` old; what it is refused on is read now. The campaign and
    project returned are copies shared by the process's requests: read them, never change
    them. An order writes nothing.
    """
    amount = check_amount_fen(amount_fen, field="amount")
    name = _clean_text(donor_name, limit=MAX_NAME, field="donor_name",
                       code="donor_name_too_long",
                       message="The name to show can have at most 60 characters.")
    name = name or (actor.display_name[:MAX_NAME] if actor else "爱心人士")
    text = _clean_text(message, limit=MAX_MESSAGE, field="message", code="message_too_long",
                       message="The message can have at most 200 characters.")
    where = check_province(province) or (actor.province if actor else None) or None
    facts = order_facts(session)
    campaign_facts, campaign_read = facts.campaign(session, campaign_id)
    project_facts, project_read = facts.project(session, campaign_id, project_id)
    try:
        campaign, project = _check_facts(campaign_facts, project_facts,
                                         confirm_past_goal=confirm_past_goal)
    except DomainError:
        if campaign_read and project_read:
            raise
        # Never refuse on remembered facts: what refuses is read now, and then refuses (or
        # not) exactly as it would have without the memory.
        campaign, project = _check_facts(
            facts.campaign(session, campaign_id, fresh=True)[0],
            facts.project(session, campaign_id, project_id, fresh=True)[0],
            confirm_past_goal=confirm_past_goal)
    fields = {"donor_name": name, "anonymous": bool(anonymous), "message": text,
              "province": where, "amount_fen": amount}
    return campaign, project, fields


def make_order(
    *,
    signer: OrderSigner,
    actor: User,
    campaign_id: int,
    project_id: int,
    idempotency_key: str,
    fields: dict[str, Any],
    now: dt.datetime | None = None,
) -> tuple[Order, str]:
    """Build the order and its token (nothing stored). The same key gives the same order id."""
    expires = int(((now or utcnow()) + ORDER_TTL).timestamp())
    order = Order(
        order_id=signer.order_id(donor_id=actor.id, idempotency_key=idempotency_key),
        campaign_id=campaign_id, project_id=project_id, donor_id=actor.id,
        expires_at=expires, **fields,
    )
    return order, signer.sign(order)


def live_campaign_for_project(*, session: Session, project_id: int) -> Campaign | None:
    """The live campaign the project is enrolled in and approved for, if any (lowest id)."""
    return session.scalar(
        select(Campaign)
        .join(Enrolment, Enrolment.campaign_id == Campaign.id)
        .where(Enrolment.project_id == project_id,
               Enrolment.status == EnrolmentStatus.APPROVED,
               Campaign.status == CampaignStatus.LIVE)
        .order_by(Campaign.id)
        .limit(1)
    )


def gift_for_donor(*, session: Session, order_id: str, donor_id: int) -> CampaignGift:
    """The donor's own paid gift for an order, or NotFound (also for someone else's)."""
    gift = session.scalar(select(CampaignGift).where(CampaignGift.order_id == order_id))
    if gift is None or gift.donor_id != donor_id:
        raise NotFound(N_("There is no such gift."), code="gift_not_found")
    return gift
