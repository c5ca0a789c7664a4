"""Alipay (支付宝) through ``python-alipay-sdk``, in service-provider mode (第三方应用代调用).

The platform has one Alipay *application* (``app_id``, its RSA2 key pair: the private half in
a file, the public half uploaded to Alipay). Each charity is an Alipay merchant that
authorized that application: its PID (``2088…``, a notify's ``seller_id``) and the
``app_auth_token`` it granted are its :class:`~shanju.payments.gateway.MerchantRoute`. Every
call for a merchant carries its ``app_auth_token`` and is signed with the platform's key, so
the money goes straight to the charity's own Alipay account.

What is signed by whom:

* requests: the SDK signs them with the platform application's private key (RSA2:
  SHA256withRSA over the sorted ``key=value`` pairs, ``sign`` left out);
* API answers: Alipay signs the exact JSON text of ``<method>_response``; the SDK checks it
  against Alipay's public key and we refuse an answer it cannot check (``GatewayError``);
* asynchronous notifies (a form-encoded POST): Alipay signs the sorted ``key=value`` pairs
  without ``sign`` and ``sign_type``; :meth:`AlipayGateway.parse_notification` verifies them
  with the SDK's ``verify`` before reading anything.

Amounts cross the wire as yuan strings (``"12.34"``) and are converted exactly here
(:func:`yuan_to_fen`, :func:`fen_to_yuan`), never through a float. Times are China time
(UTC+8) on the wire and aware UTC here.

The same code runs against ``openapi.alipay.com`` and against the local emulator
(``shanju.payments.emulators.alipay``): only :attr:`AlipayConfig.gateway_url` and the keys
differ (see :meth:`AlipayGateway._sdk_client`, the one place the SDK is pointed at a gateway).
"""

from __future__ import annotations

import binascii
import csv
import datetime as dt
import http.client
import io
import json
import re
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from alipay import AliPay, ISVAliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from alipay.utils import AliPayConfig as SdkConfig
from cryptography.hazmat.primitives.asymmetric import rsa

from shanju.core.clock import CHINA_TZ, utcnow
from shanju.core.i18n import N_
from shanju.payments import keys
from shanju.payments.gateway import (
    Acknowledgement,
    ActionKind,
    BillKind,
    BillLine,
    Channel,
    Gateway,
    GatewayError,
    MerchantRoute,
    PayAction,
    PaymentReport,
    PaymentState,
    PayRequest,
    RefundReport,
    RefundState,
)
from shanju.payments.providers import InvalidSignature

PROVIDER = "alipay"
DEFAULT_GATEWAY = "https://openapi.alipay.com/gateway.do"
ENV_APP_ID = "SHANJU_ALIPAY_APP_ID"
ENV_PRIVATE_KEY_FILE = "SHANJU_ALIPAY_PRIVATE_KEY_FILE"
ENV_PUBLIC_KEY_FILE = "SHANJU_ALIPAY_PUBLIC_KEY_FILE"
ENV_GATEWAY = "SHANJU_ALIPAY_GATEWAY"
# Alipay's phone cashier, where the wap gateway sends the payer on.
WAP_CASHIER_ORIGIN = "https://mclient.alipay.com"

WIRE_TIME = "%Y-%m-%d %H:%M:%S"          # Alipay's times: China time, to the second
MAX_AMOUNT_FEN = 10_000_000_000           # Alipay's limit for one trade: 100,000,000.00 yuan
# Alipay retries a notify that was not answered ``success`` for about 25 hours (4m, 10m, 10m,
# 1h, 2h, 6h, 15h: 24 h 24 min after the first try), with the same notify_id, and does not
# document that notify_time changes between tries. A notify is therefore accepted for 25 hours
# after its notify_time (replays inside that window are duplicates the payments service
# records once, by notify_id and out_trade_no) and up to 5 minutes ahead of our clock.
NOTIFY_MAX_AGE = dt.timedelta(hours=25)
NOTIFY_MAX_AHEAD = dt.timedelta(minutes=5)
MAX_NOTIFY_BYTES = 64 * 1024
MAX_BILL_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT = 10.0                    # seconds for one call to the gateway

_YUAN_RE = re.compile(r"(-?)(0|[1-9][0-9]{0,8})(?:\.([0-9]{1,2}))?")
_OUT_NO_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_APP_ID_RE = re.compile(r"[0-9]{16}")
# Characters Alipay refuses in a subject ("不可使用特殊字符，如 /，=，& 等"): full-width forms.
_SUBJECT_SAFE = str.maketrans({"/": "／", "=": "＝", "&": "＆"})
_TRADE_STATES = {
    "WAIT_BUYER_PAY": PaymentState.NOT_PAID,
    "TRADE_SUCCESS": PaymentState.PAID,
    "TRADE_FINISHED": PaymentState.PAID,
    "TRADE_CLOSED": PaymentState.CLOSED,
}
_REFUND_MARKERS = ("refund_fee", "gmt_refund", "out_biz_no")


# -- amounts and times ----------------------------------------------------------------------

def yuan_to_fen(text: str, *, signed: bool = False) -> int:
    """Alipay's yuan string → integer fen, exactly (``"12.34"`` → 1234, ``"1.1"`` → 110).

    ASCII digits only, at most two decimals, no exponent, no spaces, no leading zeros;
    a minus sign only when ``signed`` (bills show refunds negative). ValueError otherwise.
    """
    match = _YUAN_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None or (match.group(1) and not signed):
        raise ValueError(f"not a yuan amount: {text!r}")
    sign, whole, cents = match.groups()
    fen = int(whole) * 100 + int((cents or "0").ljust(2, "0"))
    return -fen if sign else fen


def fen_to_yuan(fen: int) -> str:
    """Integer fen → Alipay's yuan string with two decimals (1234 → ``"12.34"``)."""
    if type(fen) is not int or fen < 0:
        raise ValueError(f"not an amount in fen: {fen!r}")
    return f"{fen // 100}.{fen % 100:02d}"


def china_time(text: str) -> dt.datetime:
    """An Alipay time (``yyyy-MM-dd HH:mm:ss``, China time, optional ``.SSS``) → aware UTC."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError(f"not an Alipay time: {text!r}")
    head, _, fraction = text.partition(".")
    if fraction and not (fraction.isdigit() and len(fraction) <= 6):
        raise ValueError(f"not an Alipay time: {text!r}")
    moment = dt.datetime.strptime(head, WIRE_TIME).replace(tzinfo=CHINA_TZ)
    if fraction:
        moment += dt.timedelta(microseconds=int(fraction.ljust(6, "0")))
    return moment.astimezone(dt.UTC)


def wire_time(moment: dt.datetime) -> str:
    """An aware time as Alipay writes it: China time, ``yyyy-MM-dd HH:mm:ss``."""
    if moment.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    return moment.astimezone(CHINA_TZ).strftime(WIRE_TIME)


# -- configuration --------------------------------------------------------------------------

class AlipayConfigError(ValueError):
    """The Alipay configuration cannot be used (a key file is missing or not a key)."""


@dataclass(frozen=True, slots=True)
class AlipayConfig:
    """The platform's Alipay application: its id, its key, Alipay's public key, the gateway.

    Keys live in files (``SHANJU_ALIPAY_PRIVATE_KEY_FILE``: the application's private key;
    ``SHANJU_ALIPAY_PUBLIC_KEY_FILE``: Alipay's public key, 支付宝公钥), never in the database.
    Merchants' ``app_auth_token``\\ s are in the database: useless without the private key.
    """

    app_id: str
    private_key_file: Path | None
    public_key_file: Path | None
    gateway_url: str = DEFAULT_GATEWAY

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AlipayConfig:
        """Read the ``SHANJU_ALIPAY_*`` variables (nothing is checked here: :meth:`problems`)."""
        def path(name: str) -> Path | None:
            value = environ.get(name, "").strip()
            return Path(value) if value else None

        return cls(
            app_id=environ.get(ENV_APP_ID, "").strip(),
            private_key_file=path(ENV_PRIVATE_KEY_FILE),
            public_key_file=path(ENV_PUBLIC_KEY_FILE),
            gateway_url=environ.get(ENV_GATEWAY, "").strip() or DEFAULT_GATEWAY,
        )

    def problems(self, *, require_https: bool = True) -> list[str]:
        """Every reason this configuration cannot take real money, one line each.

        ``require_https=False`` lets a development set-up point at the local emulator over
        plain http; production start-up checks keep the default.
        """
        problems: list[str] = []
        if not self.app_id:
            problems.append(f"{ENV_APP_ID} is not set: the platform's Alipay application id")
        elif not _APP_ID_RE.fullmatch(self.app_id):
            problems.append(f"{ENV_APP_ID} is not an Alipay application id (16 digits)")
        private_key = self._check_private(problems)
        public_key = self._check_public(problems)
        if private_key is not None and public_key is not None and (
                public_key.public_numbers() == private_key.public_key().public_numbers()):
            problems.append(f"{ENV_PUBLIC_KEY_FILE} holds the application's own public key; it "
                            "must hold Alipay's public key (支付宝公钥) from the open platform")
        parts = urlsplit(self.gateway_url)
        schemes = ("https",) if require_https else ("http", "https")
        if parts.scheme not in schemes or not parts.netloc:
            kind = "an https" if require_https else "an http(s)"
            problems.append(f"{ENV_GATEWAY} must be {kind} URL (it is {self.gateway_url!r})")
        return problems

    def _check_private(self, problems: list[str]) -> rsa.RSAPrivateKey | None:
        path = self.private_key_file
        if path is None:
            problems.append(f"{ENV_PRIVATE_KEY_FILE} is not set: the file of the application's "
                            "private key")
            return None
        try:
            key = keys.load_private_key(path, bare_base64=True)
            mode = path.stat().st_mode
        except OSError as exc:
            problems.append(f"{ENV_PRIVATE_KEY_FILE} ({path}) cannot be read: {exc.strerror}")
            return None
        except (ValueError, TypeError):
            problems.append(f"{ENV_PRIVATE_KEY_FILE} ({path}) is not an unencrypted RSA private "
                            "key (PEM, or the bare base64 Alipay's key tool writes)")
            return None
        if key.key_size < 2048:
            problems.append(f"{ENV_PRIVATE_KEY_FILE} ({path}) is a {key.key_size}-bit key; RSA2 "
                            "needs 2048 bits")
        if mode & 0o077:
            problems.append(f"{ENV_PRIVATE_KEY_FILE} ({path}) may be read by other users (mode "
                            f"{oct(mode & 0o777)}); make it readable by the service only "
                            "(chmod 600)")
        return key

    def _check_public(self, problems: list[str]) -> rsa.RSAPublicKey | None:
        path = self.public_key_file
        if path is None:
            problems.append(f"{ENV_PUBLIC_KEY_FILE} is not set: the file of Alipay's public key")
            return None
        try:
            key = keys.load_public_key(path, bare_base64=True)
        except OSError as exc:
            problems.append(f"{ENV_PUBLIC_KEY_FILE} ({path}) cannot be read: {exc.strerror}")
            return None
        except (ValueError, TypeError):
            problems.append(f"{ENV_PUBLIC_KEY_FILE} ({path}) is not an RSA public key (PEM, or "
                            "the bare base64 the open platform shows)")
            return None
        if key.key_size < 2048:
            problems.append(f"{ENV_PUBLIC_KEY_FILE} ({path}) is a {key.key_size}-bit key; RSA2 "
                            "needs 2048 bits")
        return key

    def read_keys(self) -> tuple[str, str]:
        """(the application's private key, Alipay's public key) as PEM text for the SDK."""
        if self.private_key_file is None or self.public_key_file is None:
            raise AlipayConfigError("the Alipay key files are not configured")
        try:
            private = keys.load_private_key(self.private_key_file, bare_base64=True)
            public = keys.load_public_key(self.public_key_file, bare_base64=True)
        except (OSError, ValueError, TypeError) as exc:
            raise AlipayConfigError(f"cannot read the Alipay keys: {exc}") from exc
        return keys.private_pem(private), keys.public_pem(public)


# -- the gateway ----------------------------------------------------------------------------

# Alipay's answers that concern the platform's own credentials (40002 sub-codes): like WeChat
# Pay's SIGN_ERROR, only an operator can mend them.
_AUTH_SUB_CODES = frozenset({"isv.invalid-signature", "isv.invalid-app-id",
                             "isv.invalid-timestamp"})
# 40004 business refusals with a code of their own (any other: payment_provider_refused).
_CONFLICT_SUB_CODES = frozenset({"ACQ.TRADE_HAS_SUCCESS", "ACQ.TRADE_HAS_CLOSE",
                                 "ACQ.CONTEXT_INCONSISTENT", "ACQ.TRADE_STATUS_ERROR"})


def _error_of(answer: Mapping[str, Any], method: str) -> GatewayError:
    """The GatewayError for a failed answer of Alipay (its code and sub_code in ``params``).

    The codes are the platform's (:data:`~shanju.payments.gateway.GATEWAY_ERROR_CODES`);
    docs/payments-gateways.md lists which Alipay answer becomes which.
    """
    code = str(answer.get("code", ""))
    sub_code = str(answer.get("sub_code", ""))
    params = {"method": method, "code": code, "sub_code": sub_code,
              "sub_msg": str(answer.get("sub_msg", ""))[:200]}
    if sub_code == "isp.bill_not_exist":
        return GatewayError("Alipay has no bill for that day yet.",
                            code="payment_bill_not_ready", params=params)
    if code == "20000" or sub_code.startswith("isp.") or sub_code.endswith("SYSTEM_ERROR"):
        return GatewayError("Alipay is busy; try again later.", code="payment_provider_busy",
                            params=params)
    if code == "20001":
        return GatewayError("The merchant's authorization of the platform is invalid or expired.",
                            code="payment_merchant_unknown", params=params)
    if code == "40006":
        return GatewayError("The platform's Alipay application may not call this API.",
                            code="payment_provider_auth_failed", params=params)
    if code in ("40001", "40002", "40003"):
        if sub_code in _AUTH_SUB_CODES:
            return GatewayError("Alipay refused the platform's credentials (%(sub_code)s).",
                                code="payment_provider_auth_failed", params=params)
        return GatewayError("Alipay refused the request (%(sub_code)s).",
                            code="payment_provider_refused", params=params)
    if code == "40004":
        if sub_code == "ACQ.TRADE_NOT_EXIST":
            return GatewayError("Alipay knows no such trade.", code="payment_order_unknown",
                                params=params)
        if sub_code in _CONFLICT_SUB_CODES:
            return GatewayError("The trade's state at Alipay does not allow this "
                                "(%(sub_code)s).", code="payment_order_conflict", params=params)
        if sub_code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL":
            return GatewayError("The refund is more than what remains of the payment.",
                                code="payment_refund_exceeds", params=params)
        if sub_code == "ACQ.SELLER_BALANCE_NOT_ENOUGH":
            return GatewayError("The organization's Alipay balance cannot pay this refund yet.",
                                code="payment_refund_unfunded", params=params)
        return GatewayError("Alipay refused the request (%(sub_code)s).",
                            code="payment_provider_refused", params=params)
    return GatewayError("Alipay answered with an unknown code (%(code)s).",
                        code="payment_provider_bad_answer", params=params)


def _bad_answer(method: str) -> GatewayError:
    return GatewayError("Alipay's answer could not be read.", code="payment_provider_bad_answer",
                        params={"method": method})


def _unsigned_answer(exc: AliPayException) -> dict[str, Any]:
    """The body of an unsigned error answer the SDK raised (it keeps the raw text private)."""
    raw = getattr(exc, "_AliPayException__message", "")
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, dict):
                return value
    return {}


def _form_fields(body: bytes) -> dict[str, str]:
    """A notify's form fields (UTF-8, each once), or InvalidSignature ``malformed_callback``."""
    def malformed() -> InvalidSignature:
        return InvalidSignature("The callback body is not an Alipay notify.",
                                code="malformed_callback")

    if not body or len(body) > MAX_NOTIFY_BYTES:
        raise malformed()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                          encoding="utf-8", errors="strict")
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise malformed() from exc
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise malformed()
        fields[key] = value
    return fields


class AlipayGateway:
    """Alipay's open API for the platform's merchants, through ``python-alipay-sdk``."""

    name: str = PROVIDER
    channels: tuple[Channel, ...] = (Channel.ALIPAY_WAP, Channel.ALIPAY_PAGE, Channel.ALIPAY_QR)

    def __init__(self, config: AlipayConfig, *, now: Callable[[], dt.datetime] = utcnow,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.config = config
        self._now = now
        self._timeout = timeout
        # Where a donor's browser is sent to pay: the gateway (wap/page cashier), which may
        # redirect to Alipay's phone cashier. Pages whose forms lead there allow them in
        # their CSP form-action.
        gateway = urlsplit(config.gateway_url)
        self.pay_origins: tuple[str, ...] = (f"{gateway.scheme}://{gateway.netloc}",) + (
            (WAP_CASHIER_ORIGIN,) if config.gateway_url == DEFAULT_GATEWAY else ())
        self._private_pem, self._public_pem = config.read_keys()
        if not config.app_id:
            raise AlipayConfigError("the Alipay application id is not configured")
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        # Notifies are verified with Alipay's public key only; no merchant is involved.
        self._verifier = AliPay(appid=config.app_id, app_private_key_string=self._private_pem,
                                alipay_public_key_string=self._public_pem, sign_type="RSA2")

    # -- the SDK --------------------------------------------------------------------------

    def _sdk_client(self, merchant: MerchantRoute) -> Any:
        """The SDK's client acting for ``merchant`` (its app_auth_token), made once per token."""
        if merchant.provider != PROVIDER or not merchant.auth_token or not merchant.merchant_id:
            raise GatewayError("The organization has no Alipay authorization on file.",
                               code="payment_request_invalid")
        token = merchant.auth_token
        with self._lock:
            client = self._clients.get(token)
            if client is None:
                if len(self._clients) >= 4096:
                    self._clients.clear()
                client = ISVAliPay(appid=self.config.app_id, app_auth_token=token,
                                   app_private_key_string=self._private_pem,
                                   alipay_public_key_string=self._public_pem, sign_type="RSA2")
                # THE one place the SDK is pointed at a gateway: the SDK keeps its URL in
                # ``_gateway`` (openapi.alipay.com, or its sandbox with debug=True) and has no
                # parameter for another one. The real gateway, or the local emulator, comes
                # from the configuration; nothing else differs. Its timeout is set here too.
                client._gateway = self.config.gateway_url
                client._config = SdkConfig(timeout=self._timeout)
                self._clients[token] = client
        return client

    def _call(self, method: str, call: Callable[[], Any]) -> dict[str, Any]:
        """Run one SDK call; its verified answer when Alipay says 10000, else GatewayError."""
        try:
            answer = call()
        except AliPayValidationError as exc:
            raise GatewayError("Alipay's answer does not carry Alipay's signature.",
                               code="payment_provider_unsigned",
                               params={"method": method}) from exc
        except AliPayException as exc:  # an error answer Alipay did not sign
            raise _error_of(_unsigned_answer(exc), method) from exc
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the answer's connection open
            raise GatewayError("Alipay answered HTTP %(status)s.",
                               code="payment_provider_unreachable",
                               params={"method": method, "status": exc.code}) from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            raise GatewayError("Alipay could not be reached.", code="payment_provider_unreachable",
                               params={"method": method}) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _bad_answer(method) from exc
        if not isinstance(answer, dict):
            raise _bad_answer(method)
        if str(answer.get("code", "")) != "10000":
            raise _error_of(answer, method)
        return answer

    # -- paying ---------------------------------------------------------------------------

    def create_payment(self, request: PayRequest) -> PayAction:
        """Wap/page pay: the signed cashier URL to redirect to; QR: precreate's qr_code."""
        self._check_pay_request(request)
        client = self._sdk_client(request.merchant)
        subject = request.description.translate(_SUBJECT_SAFE)[:256]
        extra: dict[str, str] = {"time_expire": wire_time(request.expires_at)}
        if request.attach:
            # Alipay wants passback_params URL-encoded by the merchant and gives it back so.
            extra["passback_params"] = quote(request.attach, safe="")
        total = fen_to_yuan(request.amount_fen)
        if request.channel is Channel.ALIPAY_QR:
            answer = self._call("alipay.trade.precreate", lambda: client.api_alipay_trade_precreate(
                subject=subject, out_trade_no=request.out_trade_no, total_amount=total,
                notify_url=request.notify_url, **extra))
            qr_code = answer.get("qr_code")
            if not isinstance(qr_code, str) or not qr_code:
                raise GatewayError("Alipay's answer has no QR code.",
                                   code="payment_provider_bad_answer")
            return PayAction(kind=ActionKind.QR, qr_text=qr_code)
        # The cashiers are pages of the gateway itself: the SDK signs the order locally and the
        # payer's browser brings it there (no call from here, so nothing can fail yet).
        if request.channel is Channel.ALIPAY_WAP:
            order = client.api_alipay_trade_wap_pay(
                subject=subject, out_trade_no=request.out_trade_no, total_amount=total,
                return_url=request.return_url, notify_url=request.notify_url,
                product_code="QUICK_WAP_WAY", **extra)
        else:
            order = client.api_alipay_trade_page_pay(
                subject=subject, out_trade_no=request.out_trade_no, total_amount=total,
                return_url=request.return_url, notify_url=request.notify_url, **extra)
        return PayAction(kind=ActionKind.REDIRECT, url=f"{self.config.gateway_url}?{order}")

    def _check_pay_request(self, request: PayRequest) -> None:
        def invalid(what: str) -> GatewayError:
            return GatewayError("The payment order is not valid for Alipay: %(what)s.",
                                code="payment_request_invalid",
                                params={"what": what})

        if request.channel not in self.channels:
            raise invalid("channel")
        if type(request.amount_fen) is not int or not 1 <= request.amount_fen <= MAX_AMOUNT_FEN:
            raise invalid("amount")
        if not _OUT_NO_RE.fullmatch(request.out_trade_no):
            raise invalid("out_trade_no")
        if request.expires_at.tzinfo is None:
            raise invalid("expires_at")
        if len(request.attach.encode()) > 128:
            raise invalid("attach")
        if not request.description.strip():
            raise invalid("description")

    # -- notifies -------------------------------------------------------------------------

    def parse_notification(self, *, body: bytes,
                           headers: Mapping[str, str]) -> PaymentReport | RefundReport:
        """Verify an asynchronous notify (RSA2, our app_id, fresh) and read it."""
        del headers  # Alipay signs the form fields; no header takes part
        fields = _form_fields(body)
        signature = fields.pop("sign", "")
        if not signature:
            raise InvalidSignature("The notify carries no signature.")
        if fields.get("sign_type") != "RSA2":
            raise InvalidSignature("The notify is not signed with RSA2.")
        try:
            verified = self._verifier.verify(dict(fields), signature)
        except (AliPayException, ValueError, TypeError, binascii.Error) as exc:
            raise InvalidSignature("The notify's signature cannot be read.") from exc
        if not verified:
            raise InvalidSignature("The notify's signature does not match its fields.")
        if fields.get("app_id") != self.config.app_id:
            raise InvalidSignature("The notify is addressed to another Alipay application.",
                                   code="wrong_app_id")
        try:
            sent_at = china_time(fields["notify_time"])
            report = self._report_of(fields)
        except (KeyError, ValueError) as exc:
            raise InvalidSignature("The notify lacks a field or has one malformed.",
                                   code="malformed_callback") from exc
        age = self._now() - sent_at
        if age > NOTIFY_MAX_AGE or age < -NOTIFY_MAX_AHEAD:
            raise InvalidSignature("The notify's notify_time is too far from now.",
                                   code="stale_callback")
        return report

    def _report_of(self, fields: dict[str, str]) -> PaymentReport | RefundReport:
        if fields.get("notify_type") != "trade_status_sync":
            raise ValueError("notify_type")
        raw = dict(fields)
        for name in ("notify_id", "out_trade_no", "trade_no", "seller_id"):
            if not fields.get(name):
                raise ValueError(name)
        state = _TRADE_STATES[fields["trade_status"]]
        total = yuan_to_fen(fields["total_amount"])
        if any(name in fields for name in _REFUND_MARKERS):
            # Alipay's refund notice: the trade's status after the refund (TRADE_SUCCESS for
            # a partial refund, TRADE_CLOSED once all is refunded), refund_fee the refunded
            # total so far, out_biz_no the refund's out_request_no. It says nothing of this
            # one refund's amount (query_refund does).
            if not fields.get("out_biz_no"):
                raise ValueError("out_biz_no")
            return RefundReport(
                provider=PROVIDER, out_refund_no=fields["out_biz_no"],
                out_trade_no=fields["out_trade_no"], state=RefundState.SUCCEEDED,
                amount_fen=None, merchant_id=fields["seller_id"], provider_refund_id=None,
                event_id=fields["notify_id"], raw=raw,
                refunded_total_fen=yuan_to_fen(fields["refund_fee"]))
        paid_at = china_time(fields["gmt_payment"]) if fields.get("gmt_payment") else None
        return PaymentReport(
            provider=PROVIDER, out_trade_no=fields["out_trade_no"], state=state,
            amount_fen=total, merchant_id=fields["seller_id"],
            provider_txn_id=fields["trade_no"], paid_at=paid_at,
            payer_id=fields.get("buyer_id") or fields.get("buyer_open_id") or "",
            attach=unquote(fields.get("passback_params", ""), errors="strict"),
            event_id=fields["notify_id"], raw=raw)

    def acknowledge(self, *, ok: bool, message: str = "") -> Acknowledgement:
        """``success`` stops Alipay's retries; anything else (here ``fail``) asks for more."""
        del message  # Alipay reads the seven letters and nothing else
        if ok:
            return Acknowledgement(status_code=200, body=b"success", media_type="text/plain")
        return Acknowledgement(status_code=400, body=b"fail", media_type="text/plain")

    # -- queries and refunds --------------------------------------------------------------

    def query_payment(self, *, out_trade_no: str, merchant: MerchantRoute) -> PaymentReport | None:
        """alipay.trade.query; None when Alipay does not know the trade (ACQ.TRADE_NOT_EXIST).

        A wap/page trade exists at Alipay only once the payer opened the cashier. A trade
        refunded in full is TRADE_CLOSED with a payment date: reported REFUNDED; a partial
        refund leaves it TRADE_SUCCESS (PAID).
        """
        client = self._sdk_client(merchant)
        try:
            answer = self._call("alipay.trade.query",
                                lambda: client.api_alipay_trade_query(out_trade_no=out_trade_no))
        except GatewayError as exc:
            if exc.code == "payment_order_unknown":
                return None
            raise
        try:
            if answer.get("out_trade_no") != out_trade_no:
                raise ValueError("out_trade_no")
            state = _TRADE_STATES[answer["trade_status"]]
            paid = answer.get("send_pay_date")
            if state is PaymentState.CLOSED and paid:
                state = PaymentState.REFUNDED
            return PaymentReport(
                provider=PROVIDER, out_trade_no=out_trade_no, state=state,
                amount_fen=yuan_to_fen(answer["total_amount"]),
                merchant_id=merchant.merchant_id, provider_txn_id=answer.get("trade_no"),
                paid_at=china_time(paid) if paid else None,
                payer_id=answer.get("buyer_user_id") or answer.get("buyer_open_id") or "",
                raw=answer)
        except (KeyError, ValueError, TypeError) as exc:
            raise _bad_answer("alipay.trade.query") from exc

    def refund(self, *, out_refund_no: str, out_trade_no: str, amount_fen: int,
               total_fen: int, merchant: MerchantRoute, notify_url: str,
               reason: str = "") -> RefundReport:
        """alipay.trade.refund (idempotent per out_request_no = ``out_refund_no``).

        Alipay answers synchronously. ``fund_change`` Y: the money moved now (SUCCEEDED); N:
        nothing moved *this time* — a repeat of a refund already made, or one still being
        processed — so the refund query decides (SUCCEEDED, else PROCESSING). Alipay sends
        its refund notice to the trade's own notify_url: ``notify_url`` is not used.
        """
        del notify_url
        if (not _OUT_NO_RE.fullmatch(out_refund_no) or type(amount_fen) is not int
                or type(total_fen) is not int
                or not 1 <= amount_fen <= total_fen <= MAX_AMOUNT_FEN):
            raise GatewayError("The refund is not valid for Alipay.",
                               code="payment_request_invalid")
        client = self._sdk_client(merchant)
        extra = {"out_request_no": out_refund_no}
        if reason:
            extra["refund_reason"] = reason[:256]
        answer = self._call("alipay.trade.refund", lambda: client.api_alipay_trade_refund(
            refund_amount=fen_to_yuan(amount_fen), out_trade_no=out_trade_no, **extra))
        try:
            refunded_total = yuan_to_fen(answer["refund_fee"]) if answer.get("refund_fee") else None
            moved = answer.get("fund_change") == "Y"
        except (ValueError, TypeError) as exc:
            raise _bad_answer("alipay.trade.refund") from exc
        if not moved:
            found = self.query_refund(out_refund_no=out_refund_no, out_trade_no=out_trade_no,
                                      merchant=merchant)
            if found is not None and found.state is RefundState.SUCCEEDED:
                return replace(found, refunded_total_fen=refunded_total)
        return RefundReport(
            provider=PROVIDER, out_refund_no=out_refund_no, out_trade_no=out_trade_no,
            state=RefundState.SUCCEEDED if moved else RefundState.PROCESSING,
            amount_fen=amount_fen, merchant_id=merchant.merchant_id, raw=answer,
            refunded_total_fen=refunded_total)

    def query_refund(self, *, out_refund_no: str, out_trade_no: str,
                     merchant: MerchantRoute) -> RefundReport | None:
        """alipay.trade.fastpay.refund.query; None when Alipay knows no such refund."""
        client = self._sdk_client(merchant)
        try:
            answer = self._call(
                "alipay.trade.fastpay.refund.query",
                lambda: client.api_alipay_trade_fastpay_refund_query(
                    out_request_no=out_refund_no, out_trade_no=out_trade_no))
        except GatewayError as exc:
            if exc.code == "payment_order_unknown":
                return None
            raise
        # Alipay answers 10000 with no refund fields for a refund it never received.
        if not answer.get("refund_amount"):
            return None
        try:
            if (answer.get("out_request_no", out_refund_no) != out_refund_no
                    or answer.get("out_trade_no", out_trade_no) != out_trade_no):
                raise ValueError("another refund")
            status = answer.get("refund_status") or "REFUND_SUCCESS"
            return RefundReport(
                provider=PROVIDER, out_refund_no=out_refund_no, out_trade_no=out_trade_no,
                state=(RefundState.SUCCEEDED if status == "REFUND_SUCCESS"
                       else RefundState.PROCESSING),
                amount_fen=yuan_to_fen(answer["refund_amount"]),
                merchant_id=merchant.merchant_id, raw=answer)
        except (KeyError, ValueError, TypeError) as exc:
            raise _bad_answer("alipay.trade.fastpay.refund.query") from exc

    # -- the daily bill -------------------------------------------------------------------

    def download_bill(self, *, day: dt.date,
                      merchant: MerchantRoute | None = None) -> list[BillLine]:
        """The merchant's trade bill of ``day``: its download URL, the zip, the GBK CSV."""
        if merchant is None:
            raise GatewayError("Alipay's bills are per merchant: name the merchant.",
                               code="payment_merchant_required")
        client = self._sdk_client(merchant)
        method = "alipay.data.dataservice.bill.downloadurl.query"
        answer = self._call(method, lambda: client.server_api(
            method, biz_content={"bill_type": "trade", "bill_date": day.isoformat()}))
        url = answer.get("bill_download_url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise GatewayError("Alipay's answer has no bill URL.",
                               code="payment_provider_bad_answer", params={"method": method})
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as answer_file:  # noqa: S310 - http(s) only, checked above
                data = answer_file.read(MAX_BILL_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise GatewayError("The bill could not be downloaded.",
                               code="payment_provider_unreachable",
                               params={"method": method}) from exc
        if len(data) > MAX_BILL_BYTES:
            raise GatewayError("The bill is too large.", code="payment_bill_malformed")
        return read_bill_zip(data, merchant_id=merchant.merchant_id)



def _is_a_gateway(gateway: AlipayGateway) -> Gateway:
    """Never called: mypy checks here that AlipayGateway implements the Gateway protocol."""
    return gateway


# -- reading bills --------------------------------------------------------------------------

def _bill_error(message: str, **params: Any) -> GatewayError:
    """A bill that cannot be read; ``message`` is an msgid marked with ``N_``."""
    return GatewayError(message, code="payment_bill_malformed", params=params)


def read_bill_zip(data: bytes, *, merchant_id: str = "") -> list[BillLine]:
    """The lines of Alipay's bill zip: ``<PID>_<yyyymmdd>_业务明细.csv`` (and its summary).

    The files are recognized by their first line, not their names: the zip stores the
    Chinese names in GBK without saying so.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if m.filename.lower().endswith(".csv")]
        for member in members:
            if member.file_size > MAX_BILL_BYTES:
                raise _bill_error(N_("The bill is too large."))
            content = archive.read(member)
            first = content.split(b"\n", 1)[0].decode("gb18030", errors="replace")
            if "业务明细" in first and "汇总" not in first:
                return parse_trade_bill(content, merchant_id=merchant_id)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise GatewayError("The bill is not a readable zip.", code="payment_bill_malformed",
                           params={"method": "bill download"}) from exc
    raise _bill_error(N_("The bill zip has no business detail file."))


_ACCOUNT_RE = re.compile(r"#账号[:：]\[([0-9]+)\]")
_BILL_COLUMNS = ("支付宝交易号", "商户订单号", "业务类型", "完成时间", "订单金额（元）",
                 "退款批次号/请求号")


def parse_trade_bill(data: bytes, *, merchant_id: str = "") -> list[BillLine]:
    """Alipay's trade bill (业务明细, GBK CSV) → payments and refunds, amounts in fen.

    ``#`` lines are headers and summaries (the account's PID in ``#账号：[2088…]`` is the
    lines' merchant; ``merchant_id`` if the bill has none); one header row names the columns
    (read by name, so added columns do not matter); cells are padded with tabs. 业务类型
    交易 is a payment, 退款 a refund (its amounts negative, its 退款批次号/请求号 our
    out_refund_no). Any other line is an error (``payment_bill_malformed``), never skipped.
    """
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise _bill_error(N_("The bill is not GBK text.")) from exc
    account = merchant_id
    header: list[str] | None = None
    lines: list[BillLine] = []
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        if line.startswith("#"):
            if found := _ACCOUNT_RE.search(line):
                account = found.group(1)
            continue
        if not line.strip():
            continue
        cells = [cell.strip() for cell in next(csv.reader([line]))]
        if header is None:
            header = [cell.replace("(", "（").replace(")", "）") for cell in cells]
            missing = [name for name in _BILL_COLUMNS if name not in header]
            if missing:
                raise _bill_error(
                    N_("The bill's line %(line)s is not its header (no %(column)s)."),
                    line=number, column=missing[0])
            continue
        if len(cells) < len(header) or any(cells[len(header):]):
            raise _bill_error(
                N_("The bill's line %(line)s has %(n)s cells, not %(expected)s."),
                line=number, n=len(cells), expected=len(header))
        if not account:
            raise _bill_error(N_("The bill names no account."))
        lines.append(_bill_line(dict(zip(header, cells, strict=False)), number, account))
    if header is None:
        raise _bill_error(N_("The bill has no header line."))
    return lines


def _bill_line(row: dict[str, str], number: int, account: str) -> BillLine:
    kind_word = row["业务类型"]
    try:
        amount = yuan_to_fen(row["订单金额（元）"], signed=True)
        happened_at = china_time(row["完成时间"])
    except ValueError as exc:
        raise _bill_error(N_("The bill's line %(line)s has a malformed amount or time."),
                          line=number) from exc
    if not row["支付宝交易号"] or not row["商户订单号"]:
        raise _bill_error(N_("The bill's line %(line)s has no trade number."), line=number)
    if kind_word == "交易" and amount > 0:
        return BillLine(provider=PROVIDER, kind=BillKind.PAYMENT,
                        out_trade_no=row["商户订单号"], provider_txn_id=row["支付宝交易号"],
                        amount_fen=amount, merchant_id=account, happened_at=happened_at,
                        status=kind_word)
    if kind_word == "退款" and amount != 0:
        # A refund made without out_request_no has the trade's out_trade_no as its number.
        return BillLine(provider=PROVIDER, kind=BillKind.REFUND,
                        out_trade_no=row["商户订单号"], provider_txn_id=row["支付宝交易号"],
                        amount_fen=abs(amount), merchant_id=account, happened_at=happened_at,
                        out_refund_no=row["退款批次号/请求号"] or row["商户订单号"],
                        status=kind_word)
    raise _bill_error(N_("The bill's line %(line)s is a %(kind)s line of %(amount)s fen, which "
                         "reconciliation does not know."), line=number, kind=kind_word,
                      amount=amount)
