"""What the platform needs from a real payment provider (WeChat Pay, Alipay): the gateway protocol.

A *gateway* wraps one provider's maintained SDK (``wechatpayv3``, ``python-alipay-sdk``) and
speaks its real protocol. The platform is the provider's **service provider** (服务商 / ISV);
each qualified organization is a **sub-merchant** (:class:`MerchantRoute`) so that a donor's
money settles straight into the charity's own merchant account — the platform never holds it.

Everything a gateway returns is *verified*: a notification whose signature, certificate or
decryption fails raises :class:`~shanju.payments.providers.InvalidSignature` (codes in
:data:`CALLBACK_REFUSAL_CODES`); an answer from the provider's API that is not signed by it
raises :class:`GatewayError`. Every gateway speaks one vocabulary of error codes,
:data:`GATEWAY_ERROR_CODES`, so that the payments service, the pages and the API treat WeChat
Pay and Alipay alike; the provider's own code and message stay in the error's ``params``.
Nothing here touches the database: the payments service decides what a report means (credit,
duplicate, mismatch …).

Amounts are integer fen everywhere (Alipay's ``"12.34"`` yuan strings are converted exactly,
never through a float). ``payer_id`` is the provider's identifier of who paid (WeChat
``openid``, Alipay ``buyer_id``/``buyer_open_id``): callers keep only a keyed hash of it.

The same code runs against the real providers and against the local emulators in
``shanju.payments.emulators`` — only the base URL and the keys differ.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from shanju.core.errors import DomainError


@dataclass(frozen=True, slots=True)
class GatewayErrorCode:
    """What one gateway error code means, and whether trying again later may succeed."""

    meaning: str
    retryable: bool


# The one vocabulary of GatewayError codes, whatever the provider (docs/payments-gateways.md has
# the same table, checked against this one by tests/payments/test_gateway_codes.py). A code's
# ``retryable`` is fixed: the same code never means "try again" from one gateway and "give up"
# from another. Add a code here (and to the doc) before a gateway raises it.
GATEWAY_ERROR_CODES: Mapping[str, GatewayErrorCode] = MappingProxyType({
    "payment_request_invalid": GatewayErrorCode(
        "refused before sending: a field, amount or merchant route the provider would refuse "
        "(nothing was sent)", retryable=False),
    "payment_provider_unreachable": GatewayErrorCode(
        "no usable answer: connection refused or reset, timeout, an HTTP error from in front of "
        "an API that always answers 200 (Alipay), a bill download that failed", retryable=True),
    "payment_provider_busy": GatewayErrorCode(
        "the provider says it is busy or failed on its side (5xx, 429, system error, rate "
        "limit)", retryable=True),
    "payment_provider_auth_failed": GatewayErrorCode(
        "the provider refused the platform's own credentials: its key, certificate serial, "
        "application id, clock or API permission (an operator must fix the configuration)",
        retryable=False),
    "payment_provider_unsigned": GatewayErrorCode(
        "an answer whose signature does not verify with the provider's public key",
        retryable=False),
    "payment_provider_bad_answer": GatewayErrorCode(
        "an answer that is not what the provider's API documents (missing fields, about another "
        "order, an unknown code)", retryable=False),
    "payment_provider_refused": GatewayErrorCode(
        "any other refusal of the request by the provider (invalid parameters, a business rule "
        "without a code of its own)", retryable=False),
    "payment_merchant_unknown": GatewayErrorCode(
        "the provider does not know the organization's merchant account, or it has not "
        "authorized the platform (no binding, an invalid or expired authorization)",
        retryable=False),
    "payment_merchant_required": GatewayErrorCode(
        "a bill across all merchants asked of a provider whose bills are per merchant",
        retryable=False),
    "payment_order_unknown": GatewayErrorCode(
        "the provider knows no such order (a refund of an order it never saw); queries answer "
        "None instead", retryable=False),
    "payment_order_conflict": GatewayErrorCode(
        "the order's state at the provider forbids the request: already paid or closed, opened "
        "with other details, not paid (a refund)", retryable=False),
    "payment_refund_exceeds": GatewayErrorCode(
        "the refund is more than what remains refundable of the payment", retryable=False),
    "payment_refund_unfunded": GatewayErrorCode(
        "the merchant's balance at the provider cannot pay the refund yet", retryable=True),
    "payment_bill_not_ready": GatewayErrorCode(
        "the provider has not made that day's bill yet", retryable=True),
    "payment_bill_malformed": GatewayErrorCode(
        "the bill fails its hash, is too large, or cannot be parsed", retryable=False),
})

# Why a gateway refuses a callback (``InvalidSignature.code``). The platform answers each with
# the provider's "not accepted" acknowledgement, so the provider tries again later.
CALLBACK_REFUSAL_CODES: Mapping[str, str] = MappingProxyType({
    "invalid_signature": "no signature, an unknown key or algorithm, or a signature that does "
                         "not verify",
    "stale_callback": "signed too long ago or too far ahead (a replay)",
    "malformed_callback": "verified, but cannot be decrypted or is not a notification the "
                          "gateway understands",
    "wrong_app_id": "verified, but addressed to another account of the platform's (Alipay "
                    "app_id, WeChat Pay sp_mchid)",
})


class GatewayError(DomainError):
    """The provider's API could not be reached, refused the request, or answered unsigned.

    ``code`` is one of :data:`GATEWAY_ERROR_CODES` (anything else is a programming error:
    ValueError); ``retryable`` comes with it and says whether trying again later may succeed
    (a timeout, a 5xx, "system busy") or not (a refused parameter, an unknown sub-merchant).
    ``message`` is an English msgid, translated where people see it; the provider's own code
    and message go in ``params``.
    """

    status_code = 502

    def __init__(self, message: str, *, code: str,
                 params: Mapping[str, Any] | None = None) -> None:
        if code not in GATEWAY_ERROR_CODES:
            raise ValueError(f"{code!r} is not one of GATEWAY_ERROR_CODES")
        super().__init__(message, code=code, params=dict(params or {}))

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed (fixed by the code)."""
        return GATEWAY_ERROR_CODES[self.code].retryable


class Channel(enum.StrEnum):
    """How the donor pays: the provider's product for the donor's device."""

    WECHAT_JSAPI = "wechat_jsapi"    # inside WeChat (公众号/小程序): needs the payer's openid
    WECHAT_H5 = "wechat_h5"          # a phone browser outside WeChat: redirect to h5_url
    WECHAT_NATIVE = "wechat_native"  # desktop: show code_url as a QR code to scan
    ALIPAY_WAP = "alipay_wap"        # a phone browser: redirect to the wap cashier
    ALIPAY_PAGE = "alipay_page"      # desktop browser: redirect to the page cashier
    ALIPAY_QR = "alipay_qr"          # desktop: precreate, show qr_code to scan


@dataclass(frozen=True, slots=True)
class MerchantRoute:
    """Where an organization's money settles at one provider (reviewed before use).

    WeChat Pay: ``merchant_id`` is the ``sub_mchid`` (and ``sub_appid`` optional).
    Alipay: ``merchant_id`` is the merchant's PID (``2088…``, the callback's ``seller_id``) and
    ``auth_token`` the ``app_auth_token`` the merchant granted the platform's application
    (useless without the platform's private key).
    """

    provider: str
    merchant_id: str
    sub_appid: str | None = None
    auth_token: str | None = None


@dataclass(frozen=True, slots=True)
class PayRequest:
    """One payment order to open at the provider."""

    out_trade_no: str            # the platform's order id: ≤ 32 chars of [A-Za-z0-9_-]
    amount_fen: int
    description: str             # shown to the payer; ≤ 127 bytes UTF-8 (WeChat's limit)
    merchant: MerchantRoute
    channel: Channel
    notify_url: str              # the platform's callback URL for this provider
    expires_at: dt.datetime      # aware UTC; the provider closes the order after it
    return_url: str | None = None   # where the payer's browser comes back (H5, wap, page)
    client_ip: str = "127.0.0.1"    # the payer's IP (WeChat H5 requires it)
    openid: str | None = None       # WeChat JSAPI: the payer's openid under the appid
    attach: str = ""                # merchant data given back unchanged (≤ 128 bytes)


class ActionKind(enum.StrEnum):
    """What the donor's browser does next to pay."""

    REDIRECT = "redirect"  # go to ``url`` (WeChat H5 h5_url, Alipay wap/page cashier)
    QR = "qr"              # show ``qr_text`` as a QR code (WeChat Native, Alipay precreate)
    JSAPI = "jsapi"        # call WeixinJSBridge getBrandWCPayRequest with ``jsapi_params``


@dataclass(frozen=True, slots=True)
class PayAction:
    """The provider's answer to an opened order: how the donor pays it."""

    kind: ActionKind
    url: str | None = None
    qr_text: str | None = None
    jsapi_params: Mapping[str, str] | None = None


class PaymentState(enum.StrEnum):
    """What the provider says about one payment order."""

    PAID = "paid"            # WeChat SUCCESS; Alipay TRADE_SUCCESS / TRADE_FINISHED
    NOT_PAID = "not_paid"    # WeChat NOTPAY/USERPAYING; Alipay WAIT_BUYER_PAY
    CLOSED = "closed"        # WeChat CLOSED/REVOKED/PAYERROR; Alipay TRADE_CLOSED (unpaid)
    REFUNDED = "refunded"    # WeChat REFUND (paid, then refunded in part or whole)


@dataclass(frozen=True, slots=True)
class PaymentReport:
    """A verified statement about a payment: from a callback or from an order query."""

    provider: str
    out_trade_no: str
    state: PaymentState
    amount_fen: int                       # what the payer paid (total), in fen
    merchant_id: str                      # the sub-merchant the money went to
    provider_txn_id: str | None = None    # WeChat transaction_id / Alipay trade_no
    paid_at: dt.datetime | None = None    # aware UTC
    payer_id: str = ""                    # openid / buyer id — hash before storing
    attach: str = ""
    event_id: str = ""                    # the notification's id ("" for a query's answer)
    raw: Mapping[str, Any] = field(default_factory=dict)  # the decrypted resource, for audit


class RefundState(enum.StrEnum):
    """What the provider says about one refund."""

    SUCCEEDED = "succeeded"    # SUCCESS / REFUND_SUCCESS
    PROCESSING = "processing"  # PROCESSING: its callback comes later
    FAILED = "failed"          # CLOSED / ABNORMAL / refused


@dataclass(frozen=True, slots=True)
class RefundReport:
    """A verified statement about a refund: from a callback, a refund request or a query."""

    provider: str
    out_refund_no: str
    out_trade_no: str
    state: RefundState
    # The refund's amount; None when the provider's statement does not say it: Alipay's refund
    # notify states only the trade's refunded total so far (``refunded_total_fen``).
    amount_fen: int | None
    merchant_id: str
    provider_refund_id: str | None = None
    event_id: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)
    refunded_total_fen: int | None = None  # the trade's refunded total, when the provider says


class BillKind(enum.StrEnum):
    """A line of a provider's daily bill."""

    PAYMENT = "payment"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class BillLine:
    """One line of a provider's daily trade bill, parsed (amounts in fen)."""

    provider: str
    kind: BillKind
    out_trade_no: str
    provider_txn_id: str
    amount_fen: int                 # payment: the amount paid; refund: the amount refunded
    merchant_id: str
    happened_at: dt.datetime        # aware UTC
    out_refund_no: str | None = None
    provider_refund_id: str | None = None
    status: str = ""                # the provider's own status word, for the report


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """What the platform answers a provider's callback, in the provider's own format."""

    status_code: int
    body: bytes
    media_type: str


class Gateway(Protocol):
    """One real payment provider, through its SDK. Implementations: ``wechatpay``, ``alipay``."""

    name: str
    channels: tuple[Channel, ...]
    # The origins a donor's browser is sent to, to pay (for the pages' CSP form-action).
    pay_origins: tuple[str, ...]

    def create_payment(self, request: PayRequest) -> PayAction:
        """Open an order at the provider and say how the donor pays it (or GatewayError)."""
        ...

    def parse_notification(self, *, body: bytes,
                           headers: Mapping[str, str]) -> PaymentReport | RefundReport:
        """Verify a callback (signature, freshness, decryption) and parse it.

        Raises ``InvalidSignature`` (a code of :data:`CALLBACK_REFUSAL_CODES`) for anything
        that cannot be trusted or is not for this platform.
        """
        ...

    def acknowledge(self, *, ok: bool, message: str = "") -> Acknowledgement:
        """The answer the provider expects: accepted (stop retrying) or not (retry)."""
        ...

    def query_payment(self, *, out_trade_no: str, merchant: MerchantRoute) -> PaymentReport | None:
        """Ask the provider about an order (a callback that never came); None: unknown to it."""
        ...

    def refund(self, *, out_refund_no: str, out_trade_no: str, amount_fen: int,
               total_fen: int, merchant: MerchantRoute, notify_url: str,
               reason: str = "") -> RefundReport:
        """Ask for money back (idempotent per ``out_refund_no``); the answer may be PROCESSING."""
        ...

    def query_refund(self, *, out_refund_no: str, out_trade_no: str,
                     merchant: MerchantRoute) -> RefundReport | None:
        """Ask the provider about a refund (its callback was lost); None: unknown to it."""
        ...

    def download_bill(self, *, day: dt.date,
                      merchant: MerchantRoute | None = None) -> list[BillLine]:
        """The provider's trade bill of ``day`` (China time), parsed; every sub-merchant if None.

        Alipay has no bill across merchants in ISV mode (each merchant's bill is fetched with
        its own ``app_auth_token``): its gateway needs ``merchant`` and raises GatewayError
        ``payment_merchant_required`` without one.
        """
        ...
