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
gifts in one transaction, so a value the database would refuse must never reach it).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.status == CampaignStatus.DRAFT:
        raise NotFound(N_("There is no such campaign."), code="campaign_not_found")
    return campaign


def check_campaign_live(campaign: Campaign) -> None:
    """Refuse orders for a campaign that is not live."""
    if campaign.status != CampaignStatus.LIVE:
        raise Conflict("This campaign is not live, so it cannot take giving-day gifts.",
                       code="campaign_not_live", details={"status": campaign.status.value})


def check_enrolled(*, session: Session, campaign: Campaign, project: Project) -> Enrolment:
    """Return the project's approved enrolment in the campaign, or refuse."""
    enrolment = session.scalar(select(Enrolment).where(
        Enrolment.campaign_id == campaign.id, Enrolment.project_id == project.id))
    if enrolment is None or enrolment.status != EnrolmentStatus.APPROVED:
        raise Conflict("This project does not take part in this campaign.",
                       code="project_not_enrolled")
    return enrolment


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

    Reads only (campaign, project, enrolment): an order writes nothing.
    """
    amount = check_amount_fen(amount_fen, field="amount")
    name = _clean_text(donor_name, limit=MAX_NAME, field="donor_name",
                       code="donor_name_too_long",
                       message="The name to show can have at most 60 characters.")
    name = name or (actor.display_name[:MAX_NAME] if actor else "爱心人士")
    text = _clean_text(message, limit=MAX_MESSAGE, field="message", code="message_too_long",
                       message="The message can have at most 200 characters.")
    where = check_province(province) or (actor.province if actor else None) or None
    campaign = get_campaign(session=session, campaign_id=campaign_id)
    check_campaign_live(campaign)
    project = projects.get_project(session=session, project_id=project_id)
    check_enrolled(session=session, campaign=campaign, project=project)
    projects.check_accepts_donations(project=project, on=today_cn())
    goals.check_goal_allows_gift(session=session, project=project,
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
