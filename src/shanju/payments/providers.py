"""Payment providers: the interface every provider implements, and the sandbox provider.

A provider collects money for a :class:`~shanju.payments.models.PaymentIntent` on its own
pages and tells the platform what happened through signed callbacks (notifications). The
platform never trusts a callback it cannot verify: every provider turns the raw HTTP body and
headers into a :class:`Notification` in :meth:`PaymentProvider.verify`, or raises
:class:`InvalidSignature`.

The sandbox provider signs its callbacks the way WeChat Pay API v3 does — a timestamp, a nonce
and the exact body, joined by newlines, signed — with HMAC-SHA256 under a shared secret instead
of RSA certificates. Its callbacks go through exactly the same HTTP endpoint, verification and
handling code as a real provider's would.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from shanju.core.clock import utcnow
from shanju.core.errors import DomainError, NotFound
from shanju.core.security import constant_time_equal, hmac_sha256, new_token

if TYPE_CHECKING:
    from shanju.payments.gateway import Gateway

Deliver = Callable[[str, bytes, dict[str, str]], None]
EVENT_TYPES = ("payment.succeeded", "payment.failed", "refund.succeeded", "refund.failed")
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)


class InvalidSignature(DomainError):
    """A callback whose signature, timestamp or body cannot be trusted."""

    status_code = 400
    code = "invalid_signature"


@dataclass(frozen=True)
class Notification:
    """A verified callback: what the provider says happened."""

    provider: str
    event_id: str
    event_type: str
    intent_id: str
    amount_fen: int
    provider_txn_id: str | None = None
    refund_id: str | None = None
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class OrderNotification:
    """A verified ``payment.succeeded`` callback for a giving-day order (no intent behind it).

    ``payer`` and ``device`` are the provider's identifiers of who paid; the platform keeps
    only keyed hashes of them. ``attach`` is the merchant data sent back unchanged.
    """

    provider: str
    event_id: str
    order_id: str
    amount_fen: int
    provider_txn_id: str
    paid_at: dt.datetime
    payer: str
    device: str
    attach: str


class OrderPaymentProvider(Protocol):
    """A provider that can pay giving-day orders (stateless, signed by the platform)."""

    name: str

    def verify_order(self, *, body: bytes, headers: Mapping[str, str]) -> OrderNotification:
        """Verify an order callback's signature and parse it, or raise InvalidSignature."""
        ...


class PaymentProvider(Protocol):
    """What the platform needs from a payment provider."""

    name: str

    def checkout_url(self, intent_id: str) -> str:
        """Where to send the donor to pay."""
        ...

    def verify(self, *, body: bytes, headers: Mapping[str, str]) -> Notification:
        """Verify a callback's signature and parse it, or raise :class:`InvalidSignature`."""
        ...

    def request_refund(self, *, refund_id: str, intent_id: str, amount_fen: int) -> None:
        """Ask the provider to return money; its answer arrives later as a callback.

        Called only after the transaction that reserved the refund has committed.
        """
        ...


class SandboxProvider:
    """A provider for demos and tests: pays instantly when the donor presses a button."""

    name = "sandbox"

    def __init__(self, secret: str, deliver: Deliver | None = None) -> None:
        self._secret = secret
        # How the sandbox "gateway" sends its callbacks; the app wires this to the same
        # handler the HTTP callback endpoint uses, in a transaction of its own.
        self.deliver = deliver

    def request_refund(self, *, refund_id: str, intent_id: str, amount_fen: int) -> None:
        """The sandbox refunds at once: it sends the ``refund.succeeded`` callback."""
        if self.deliver is None:
            return
        body, headers = self.build_callback(
            event_type="refund.succeeded", intent_id=intent_id, amount_fen=amount_fen,
            refund_id=refund_id,
        )
        self.deliver(self.name, body, headers)

    def complete_payment(self, *, intent_id: str, amount_fen: int, succeeded: bool) -> None:
        """The donor pressed pay (or cancel) on the sandbox cashier: send the callback."""
        if self.deliver is None:
            raise RuntimeError("the sandbox provider has no callback delivery configured")
        body, headers = self.build_callback(
            event_type="payment.succeeded" if succeeded else "payment.failed",
            intent_id=intent_id, amount_fen=amount_fen,
        )
        self.deliver(self.name, body, headers)

    def checkout_url(self, intent_id: str) -> str:
        """The sandbox cashier page for an intent."""
        return f"/pay/sandbox/{intent_id}"

    # -- the provider's side: building signed callbacks ----------------------------------

    def sign(self, body: bytes, *, timestamp: int, nonce: str) -> str:
        """Sign a callback body (what the provider does before sending it)."""
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        return hmac_sha256(self._secret, message)

    def build_callback(
        self,
        *,
        event_type: str,
        intent_id: str,
        amount_fen: int,
        refund_id: str | None = None,
        event_id: str | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Build a signed callback as the sandbox gateway would POST it: (body, headers)."""
        if event_type not in EVENT_TYPES:
            raise ValueError(event_type)
        payload: dict[str, Any] = {
            "id": event_id or new_token("evt_", 12),
            "type": event_type,
            "intent_id": intent_id,
            "amount_fen": amount_fen,
            "transaction_id": f"sbx_{intent_id}",
        }
        if refund_id:
            payload["refund_id"] = refund_id
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return body, self._signed_headers(body, now=now or utcnow())

    def build_order_callback(
        self,
        *,
        order_id: str,
        amount_fen: int,
        attach: str,
        payer: str,
        device: str,
        event_id: str | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """Build the signed ``payment.succeeded`` callback for a giving-day order.

        Like WeChat Pay's notification for an ``out_trade_no``: the order id, the amount paid,
        the provider's transaction id, when it was paid, who paid (the payer's account and the
        device, which the platform only ever stores hashed) and ``attach`` — the merchant's
        data given back unchanged (here: the platform's signed order token).
        """
        when = now or utcnow()
        payload: dict[str, Any] = {
            "id": event_id or new_token("evt_", 12),
            "type": "payment.succeeded",
            "order_id": order_id,
            "amount_fen": amount_fen,
            "transaction_id": f"sbx_{order_id}",
            "success_time": int(when.timestamp()),
            "payer": payer,
            "device": device,
            "attach": attach,
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return body, self._signed_headers(body, now=when)

    def _signed_headers(self, body: bytes, *, now: dt.datetime) -> dict[str, str]:
        timestamp = int(now.timestamp())
        nonce = new_token(nbytes=12)
        return {
            "X-Sandbox-Timestamp": str(timestamp),
            "X-Sandbox-Nonce": nonce,
            "X-Sandbox-Signature": self.sign(body, timestamp=timestamp, nonce=nonce),
        }

    # -- the platform's side: verifying them ----------------------------------------------

    def verify_order(self, *, body: bytes, headers: Mapping[str, str]) -> OrderNotification:
        """Check an order callback's signature and freshness, then parse it (or refuse)."""
        self._check_signature(body, headers)
        try:
            data = json.loads(body)
            amount, paid = data["amount_fen"], data["success_time"]
            if (data["type"] != "payment.succeeded" or type(amount) is not int
                    or type(paid) is not int):
                raise ValueError(data["type"])
            return OrderNotification(
                provider=self.name,
                event_id=str(data["id"]),
                order_id=str(data["order_id"]),
                amount_fen=amount,
                provider_txn_id=str(data["transaction_id"]),
                paid_at=dt.datetime.fromtimestamp(paid, dt.UTC),
                payer=str(data.get("payer") or ""),
                device=str(data.get("device") or ""),
                attach=str(data["attach"]),
            )
        except (ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
            raise InvalidSignature(
                "The callback body is not a valid notification.", code="malformed_callback"
            ) from exc

    def _check_signature(self, body: bytes, headers: Mapping[str, str]) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        timestamp = lowered.get("x-sandbox-timestamp", "")
        nonce = lowered.get("x-sandbox-nonce", "")
        signature = lowered.get("x-sandbox-signature", "")
        # ASCII digits only, of a sane length: "²" is a digit to str.isdigit() but not to int(),
        # and a huge number overflows the date.
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
                and nonce and signature):
            raise InvalidSignature("The callback is missing its signature headers.")
        expected = self.sign(body, timestamp=int(timestamp), nonce=nonce)
        if not constant_time_equal(expected, signature):
            raise InvalidSignature("The callback signature does not match its body.")
        sent_at = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
        if abs(utcnow() - sent_at) > MAX_CLOCK_SKEW:
            raise InvalidSignature(
                "The callback timestamp is too far from now.", code="stale_callback"
            )

    def verify(self, *, body: bytes, headers: Mapping[str, str]) -> Notification:
        """Check signature and freshness, then parse; refuse anything else."""
        self._check_signature(body, headers)
        try:
            data = json.loads(body)
            event_type = str(data["type"])
            amount = data["amount_fen"]
            if event_type not in EVENT_TYPES or type(amount) is not int:
                raise ValueError(event_type)
            return Notification(
                provider=self.name,
                event_id=str(data["id"]),
                event_type=event_type,
                intent_id=str(data["intent_id"]),
                amount_fen=amount,
                provider_txn_id=data.get("transaction_id"),
                refund_id=data.get("refund_id"),
                payload=data,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidSignature(
                "The callback body is not a valid notification.", code="malformed_callback"
            ) from exc


class NoPaymentProvider(DomainError):
    """No provider takes payments here (production, until checkout goes through the real
    gateways: ADR 0028)."""

    status_code = 503
    code = "no_payment_provider"


class Providers:
    """The payment providers an installation has configured, by name.

    Two kinds, side by side until the one gift pipeline replaces the first (ADR 0028): the
    legacy :class:`PaymentProvider` objects (the sandbox) and the real gateways
    (:class:`~shanju.payments.gateway.Gateway`: WeChat Pay, Alipay) that
    :func:`shanju.payments.registry.read_gateways` built from the environment. The app keeps
    one instance on ``app.state.providers``; the rest of the platform finds both kinds here.
    """

    def __init__(self, *providers: PaymentProvider,
                 gateways: Mapping[str, Gateway] = MappingProxyType({})) -> None:
        self._by_name = {p.name: p for p in providers}
        for name, gateway in gateways.items():
            if gateway.name != name:
                raise ValueError(f"gateway {gateway.name!r} registered as {name!r}")
        self._gateways = dict(gateways)

    def for_checkout(self) -> PaymentProvider:
        """The sandbox, for the sandbox's own checkout routes, or :class:`NoPaymentProvider`.

        Gifts through the real gateways go through the gift pipeline instead
        (``POST /api/v1/gifts``, the donate form's ``/gifts/give``; ADR 0028): where only
        real gateways are configured (production), this says so.
        """
        provider = self._by_name.get("sandbox")
        if provider is None:
            if self._gateways:
                raise NoPaymentProvider(
                    "Gifts are made through WeChat Pay or Alipay: choose one on the donate form "
                    "(API: POST /api/v1/gifts).",
                    code="use_gift_checkout")
            raise NoPaymentProvider(
                "Online giving is not open yet: no payment provider is configured.")
        return provider

    def get(self, name: str) -> PaymentProvider:
        """The legacy provider called ``name``, or a 404 error."""
        provider = self._by_name.get(name)
        if provider is None:
            raise _unknown(name)
        return provider

    def gateway(self, name: str) -> Gateway:
        """The real gateway called ``name`` (``wechatpay``, ``alipay``), or a 404 error."""
        gateway = self._gateways.get(name)
        if gateway is None:
            raise _unknown(name)
        return gateway

    @property
    def gateways(self) -> Mapping[str, Gateway]:
        """The configured real gateways by name (read-only)."""
        return MappingProxyType(self._gateways)

    @property
    def gateway_names(self) -> list[str]:
        """Names of the configured real gateways, sorted."""
        return sorted(self._gateways)

    @property
    def names(self) -> list[str]:
        """Every configured provider's name, legacy providers and gateways together, sorted."""
        return sorted(self._by_name.keys() | self._gateways.keys())


def _unknown(name: str) -> NotFound:
    return NotFound("Unknown payment provider: %(name)s", code="unknown_provider",
                    params={"name": name})
