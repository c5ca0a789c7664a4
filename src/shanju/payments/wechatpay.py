"""WeChat Pay API v3 in service-provider (服务商) mode, through the maintained ``wechatpayv3`` SDK.

The platform is the service provider (``sp_mchid``, ``sp_appid``); each qualified organization
is a sub-merchant (``sub_mchid``, :class:`~shanju.payments.gateway.MerchantRoute`), so a gift
settles straight into the charity's own merchant account. The SDK signs every request with the
platform's API private key and verifies every answer and callback with **WeChat Pay's public
key** (微信支付公钥, ``public_key`` + ``public_key_id``): no platform-certificate download, no
certificate cache to keep fresh.

What this module adds around the SDK, and why:

* checks of everything it sends (order numbers, sub-merchant numbers, amounts, lengths): the
  SDK pastes some of them into URL paths and query strings unescaped, so a stray ``/`` or
  ``&`` would name another resource;
* a callback's headers are checked *before* the SDK sees them: a serial other than our public
  key id would make the SDK fetch ``/v3/certificates`` from the network for an unauthenticated
  caller; then the signature, then freshness (5 minutes, ``stale_callback``), then the
  AEAD_AES_256_GCM decryption, then the shape (``malformed_callback``);
* the provider's errors become :class:`~shanju.payments.gateway.GatewayError` with the
  platform's codes (:data:`~shanju.payments.gateway.GATEWAY_ERROR_CODES`; which WeChat Pay
  answer becomes which: :meth:`WeChatPayGateway._error`), WeChat Pay's own status, code and
  message in ``params`` (``http_status``, ``provider_code``, ``provider_message``);
* the daily trade bill is downloaded, checked against its SHA1 and parsed
  (:func:`parse_trade_bill`);
* the SDK's calls reuse their connections (:class:`KeepAliveCore`): the SDK itself opens a new
  connection, and a new TLS handshake, for every call.

Configuration is read from the environment (:meth:`WeChatPayConfig.from_env`); keys are files,
never in the database. The same code runs against the local emulator
(``shanju.payments.emulators.wechatpay``): only ``SHANJU_WECHATPAY_BASE_URL`` and the keys differ.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import ipaddress
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3 import __version__ as sdk_version
from wechatpayv3.core import Core
from wechatpayv3.type import RequestType
from wechatpayv3.utils import aes_decrypt, build_authorization, rsa_verify

from shanju.core.clock import CHINA_TZ, utcnow
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
from shanju.payments.providers import MAX_CLOCK_SKEW, InvalidSignature

PROVIDER = "wechatpay"
DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"

ENV_SP_MCHID = "SHANJU_WECHATPAY_SP_MCHID"
ENV_SP_APPID = "SHANJU_WECHATPAY_SP_APPID"
ENV_CERT_SERIAL_NO = "SHANJU_WECHATPAY_CERT_SERIAL_NO"
ENV_PRIVATE_KEY_FILE = "SHANJU_WECHATPAY_PRIVATE_KEY_FILE"
ENV_APIV3_KEY = "SHANJU_WECHATPAY_APIV3_KEY"
ENV_PUBLIC_KEY_FILE = "SHANJU_WECHATPAY_PUBLIC_KEY_FILE"
ENV_PUBLIC_KEY_ID = "SHANJU_WECHATPAY_PUBLIC_KEY_ID"
ENV_BASE_URL = "SHANJU_WECHATPAY_BASE_URL"
# WeChat Pay's H5 cashier (h5_url): where a phone browser is sent to pay.
H5_ORIGIN = "https://wx.tenpay.com"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"

# What WeChat Pay accepts (its API reference): checked here before anything is sent.
OUT_TRADE_NO_RE = re.compile(r"^[A-Za-z0-9_-]{6,32}$")      # PayRequest's documented set
OUT_REFUND_NO_RE = re.compile(r"^[A-Za-z0-9_\-|*@]{1,64}$")
MCHID_RE = re.compile(r"^[0-9]{1,32}$")
APPID_RE = re.compile(r"^wx[0-9A-Za-z]{16}$")
OPENID_RE = re.compile(r"^[0-9A-Za-z_-]{1,128}$")
SERIAL_RE = re.compile(r"^[0-9A-Fa-f]{8,40}$")
DESCRIPTION_MAX_BYTES = 127
ATTACH_MAX_BYTES = 128
REASON_MAX_CHARS = 80

_RETRYABLE_PROVIDER_CODES = frozenset({
    "SYSTEM_ERROR", "SYSTEMERROR", "BANK_ERROR", "BANKERROR", "FREQUENCY_LIMITED",
    "FREQUENCY_LIMIT_EXCEED", "RATELIMIT_EXCEEDED",
})
_CONFLICT_PROVIDER_CODES = frozenset({"ORDERPAID", "ORDER_PAID", "OUT_TRADE_NO_USED",
                                      "ORDER_CLOSED", "ORDERCLOSED"})
_NOT_FOUND_PROVIDER_CODES = frozenset({"ORDER_NOT_EXIST", "ORDERNOTEXIST", "RESOURCE_NOT_EXISTS"})

TRADE_STATES = {
    "SUCCESS": PaymentState.PAID,
    "NOTPAY": PaymentState.NOT_PAID,
    "USERPAYING": PaymentState.NOT_PAID,
    "CLOSED": PaymentState.CLOSED,
    "REVOKED": PaymentState.CLOSED,
    "PAYERROR": PaymentState.CLOSED,
    "REFUND": PaymentState.REFUNDED,
}
REFUND_STATES = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PROCESSING": RefundState.PROCESSING,
    "ABNORMAL": RefundState.FAILED,
    "CLOSED": RefundState.FAILED,
}
REFUND_EVENTS = {"REFUND.SUCCESS": "SUCCESS", "REFUND.ABNORMAL": "ABNORMAL",
                 "REFUND.CLOSED": "CLOSED"}


# --- configuration ---------------------------------------------------------------------------


class WeChatPayConfigError(ValueError):
    """The configuration cannot make a gateway: one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class WeChatPayConfig:
    """The platform's WeChat Pay service-provider account (keys as files, never in the DB).

    ``private_key_file``: the API certificate's private key (apiclient_key.pem, PKCS#8 PEM)
    whose certificate has serial ``cert_serial_no``. ``public_key_file``: WeChat Pay's public
    key (pub_key.pem) with id ``public_key_id`` (``PUB_KEY_ID_…``), downloaded from the merchant
    platform. ``apiv3_key``: the 32-character APIv3 key that encrypts callbacks.
    """

    sp_mchid: str
    sp_appid: str
    cert_serial_no: str
    private_key_file: Path | None
    apiv3_key: str = field(repr=False)
    public_key_file: Path | None
    public_key_id: str
    base_url: str = DEFAULT_BASE_URL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WeChatPayConfig:
        """Read ``SHANJU_WECHATPAY_*``; what is missing stays empty (see :meth:`problems`)."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str:
            return env.get(name, "").strip()

        def path(name: str) -> Path | None:
            value = text(name)
            return Path(value) if value else None

        return cls(
            sp_mchid=text(ENV_SP_MCHID),
            sp_appid=text(ENV_SP_APPID),
            cert_serial_no=text(ENV_CERT_SERIAL_NO),
            private_key_file=path(ENV_PRIVATE_KEY_FILE),
            apiv3_key=env.get(ENV_APIV3_KEY, ""),
            public_key_file=path(ENV_PUBLIC_KEY_FILE),
            public_key_id=text(ENV_PUBLIC_KEY_ID),
            base_url=text(ENV_BASE_URL) or DEFAULT_BASE_URL,
        )

    def problems(self, *, require_https: bool = True) -> list[str]:
        """What is missing or wrong, one line each (empty: usable). Never shows a secret.

        ``require_https=False`` lets a development set-up point at the local emulator over
        plain http; production start-up checks keep the default.
        """
        found: list[str] = []

        def need(value: str, name: str, pattern: re.Pattern[str], what: str) -> None:
            if not value:
                found.append(f"{name} is not set")
            elif not pattern.match(value):
                found.append(f"{name} must be {what}")

        need(self.sp_mchid, ENV_SP_MCHID, MCHID_RE, "the service provider's merchant number "
             "(digits)")
        need(self.sp_appid, ENV_SP_APPID, APPID_RE, "an AppID: wx and 16 letters or digits")
        need(self.cert_serial_no, ENV_CERT_SERIAL_NO, SERIAL_RE,
             "the API certificate's serial number (hexadecimal)")
        _, problem = _read_pem(self.private_key_file, ENV_PRIVATE_KEY_FILE, private=True)
        if problem:
            found.append(problem)
        if not self.apiv3_key:
            found.append(f"{ENV_APIV3_KEY} is not set")
        elif len(self.apiv3_key.encode()) != 32:
            found.append(f"{ENV_APIV3_KEY} must be the 32-character APIv3 key")
        _, problem = _read_pem(self.public_key_file, ENV_PUBLIC_KEY_FILE, private=False)
        if problem:
            found.append(problem)
        if not self.public_key_id:
            found.append(f"{ENV_PUBLIC_KEY_ID} is not set")
        elif not re.match(r"^PUB_KEY_ID_[0-9A-Za-z_]+$", self.public_key_id):
            found.append(f"{ENV_PUBLIC_KEY_ID} must be WeChat Pay's public key id (PUB_KEY_ID_…)")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            found.append(f"{ENV_BASE_URL} must be an http(s) URL without a query")
        elif require_https and parts.scheme != "https":
            found.append(f"{ENV_BASE_URL} must be an https URL in production")
        return found


def _read_pem(path: Path | None, name: str, *, private: bool) -> tuple[str, str | None]:
    """The key in an RSA key file as PEM text, or a problem line (never the key itself)."""
    if path is None:
        return "", f"{name} is not set"
    try:
        key: rsa.RSAPrivateKey | rsa.RSAPublicKey | None = (
            keys.load_private_key(path) if private else keys.load_public_key(path))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not PEM text"
        return "", f"{name} ({path}) cannot be read: {reason}"
    except (ValueError, TypeError):
        key = None
    if key is None or key.key_size < 2048:
        kind = "private" if private else "public"
        return "", (f"{name} ({path}) is not an unencrypted RSA {kind} key in PEM "
                    "(2048 bits or more)")
    if isinstance(key, rsa.RSAPrivateKey):
        return keys.private_pem(key), None
    return keys.public_pem(key), None


# --- the SDK over keep-alive connections ----------------------------------------------------


class KeepAliveCore(Core):  # type: ignore[misc]  # the SDK has no type hints
    """The SDK's ``Core`` whose calls reuse their connections to WeChat Pay.

    ``wechatpayv3.core.Core.request`` sends each call with the module-level ``requests.get`` /
    ``requests.post``: a new ``requests.Session``, so a new TCP connection — and in
    production a new TLS handshake with api.mch.weixin.qq.com — for every order opened. Here
    the same request goes through a keep-alive ``requests.Session`` of the calling thread
    (``requests`` does not promise that one session is safe to share between threads; the
    threads of a server's pool live as long as they work, and their sessions with them),
    which reads the environment (proxies, CA bundle) once, not on every call.

    :meth:`request` is the SDK's (wechatpayv3 2.0.4, locked in ``uv.lock``) step for step —
    the same headers, the same ``Authorization`` signature over the same JSON body
    (``requests``' ``json=`` serializes it as ``build_authorization`` does), the same check of
    the answer's signature — only the sending differs. A connection the server closed while
    idle is noticed by ``urllib3`` before it is reused and opened again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # What requests reads from the environment on every call (trust_env: a proxy for
            # WeChat Pay's host, a CA bundle), read once for the session: a third of its cost
            # per call. A ~/.netrc is never consulted (its Basic auth would replace the
            # call's signature).
            found = session.merge_environment_settings(self._gate_way, {}, None, None, None)
            session.trust_env = False
            session.proxies.update(found["proxies"])
            session.verify = found["verify"]
            self._local.session = session
        return session

    def request(self, path: str, method: RequestType = RequestType.GET, data: Any = None,
                skip_verify: bool = False, sign_data: Any = None, files: Any = None,
                cipher_data: bool = False, headers: dict[str, str] | None = None
                ) -> tuple[int, Any]:
        """Send one signed API v3 request; ``(status, text or bytes)`` as the SDK answers."""
        headers = {} if headers is None else headers
        headers["Content-Type"] = "multipart/form-data" if files else "application/json"
        headers["Accept"] = "application/json"
        headers["User-Agent"] = (f"wechatpay python sdk v{sdk_version}"
                                 "(https://github.com/minibear2021/wechatpayv3)")
        if self._public_key_id or cipher_data:
            headers["Wechatpay-Serial"] = (
                self._public_key_id if self._public_key_id
                else hex(self._last_certificate().serial_number)[2:].upper())
        headers["Authorization"] = build_authorization(
            path, method.value, self._mchid, self._cert_serial_no, self._private_key,
            data=sign_data if sign_data else data)
        url = self._gate_way + path
        common: dict[str, Any] = {"headers": headers, "proxies": self._proxy,
                                  "timeout": self._timeout}
        session = self._session()
        if method == RequestType.GET:
            response = session.get(url, **common)
        elif method == RequestType.POST:
            response = session.post(url, json=None if files else data,
                                    data=data if files else None, files=files, **common)
        elif method in (RequestType.PATCH, RequestType.PUT):
            response = session.request(method.value, url, json=data, **common)
        elif method == RequestType.DELETE:
            response = session.delete(url, **common)
        else:
            raise Exception("wechatpayv3 does no support this request type.")  # noqa: TRY002
        if 200 <= response.status_code < 300 and not skip_verify:
            if not self._verify_signature(response.headers, response.text):
                raise Exception("failed to verify the signature")  # noqa: TRY002 - as the SDK
        body = (response.text if "application/json" in response.headers.get("Content-Type", "")
                else response.content)
        return response.status_code, body


# --- the gateway -----------------------------------------------------------------------------


def _refuse(problem: str) -> GatewayError:
    return GatewayError("The payment request is not valid for WeChat Pay: %(problem)s.",
                        code="payment_request_invalid", params={"problem": problem})


class WeChatPayGateway:
    """:class:`~shanju.payments.gateway.Gateway` for WeChat Pay (JSAPI, H5, Native)."""

    name: str = PROVIDER
    channels: tuple[Channel, ...] = (Channel.WECHAT_JSAPI, Channel.WECHAT_H5,
                                     Channel.WECHAT_NATIVE)

    def __init__(self, config: WeChatPayConfig, *,
                 timeout: tuple[float, float] = (5.0, 15.0)) -> None:
        problems = config.problems(require_https=False)
        if problems:
            raise WeChatPayConfigError(problems)
        private_pem, _ = _read_pem(config.private_key_file, ENV_PRIVATE_KEY_FILE, private=True)
        public_pem, _ = _read_pem(config.public_key_file, ENV_PUBLIC_KEY_FILE, private=False)
        self._config = config
        self._public_key = load_pem_public_key(public_pem.encode())
        self._client = WeChatPay(
            wechatpay_type=WeChatPayType.NATIVE,  # per call: pay(pay_type=…)
            mchid=config.sp_mchid,
            private_key=private_pem,
            cert_serial_no=config.cert_serial_no,
            appid=config.sp_appid,
            apiv3_key=config.apiv3_key,
            partner_mode=True,
            public_key=public_pem,
            public_key_id=config.public_key_id,
            timeout=timeout,
        )
        # The same core (keys loaded once, here), sending over keep-alive connections.
        self._client._core = KeepAliveCore(
            mchid=config.sp_mchid, cert_serial_no=config.cert_serial_no,
            private_key=private_pem, apiv3_key=config.apiv3_key, timeout=timeout,
            public_key=public_pem, public_key_id=config.public_key_id)
        # THE ONE PLACE THAT CHOOSES WHOM THE SDK TALKS TO. wechatpayv3 has no parameter for
        # it: every request goes to ``Core._gate_way + path`` and ``download_bill`` strips that
        # same prefix from a bill's download URL. Production leaves the default
        # (https://api.mch.weixin.qq.com); tests and the demo set the emulator's URL. Nothing
        # else differs between the two.
        self._gateway_url = config.base_url.rstrip("/")
        self._client._core._gate_way = self._gateway_url
        # Where a donor's browser is sent to pay (the H5 page): WeChat Pay's own host, or the
        # emulator's. Pages whose forms lead there allow it in their CSP form-action.
        self.pay_origins: tuple[str, ...] = (
            (H5_ORIGIN,) if self._gateway_url == DEFAULT_BASE_URL.rstrip("/")
            else (_origin(self._gateway_url),))

    # -- paying -------------------------------------------------------------------------------

    def create_payment(self, request: PayRequest) -> PayAction:
        """Open a partner order (JSAPI, H5 or Native) and say how the donor pays it."""
        self._check_pay_request(request)
        ip = request.client_ip
        common: dict[str, Any] = {
            "description": request.description,
            "out_trade_no": request.out_trade_no,
            "amount": {"total": request.amount_fen, "currency": "CNY"},
            "time_expire": rfc3339(request.expires_at),
            "attach": request.attach or None,
            "notify_url": request.notify_url,
            "sub_mchid": request.merchant.merchant_id,
            "sub_appid": request.merchant.sub_appid,
        }
        if request.channel is Channel.WECHAT_H5:
            common |= {"pay_type": WeChatPayType.H5,
                       "scene_info": {"payer_client_ip": ip, "h5_info": {"type": "Wap"}}}
        elif request.channel is Channel.WECHAT_NATIVE:
            common |= {"pay_type": WeChatPayType.NATIVE,
                       "scene_info": {"payer_client_ip": ip}}
        else:
            common |= {"pay_type": WeChatPayType.JSAPI,
                       "payer": {"sp_openid": request.openid},
                       "scene_info": {"payer_client_ip": ip}}
        status, body = self._call(self._client.pay, **common)
        if status != 200:
            raise self._error(status, body)
        answer = self._answer(body)
        try:
            if request.channel is Channel.WECHAT_H5:
                url = _text(answer, "h5_url")
                if request.return_url:
                    url += ("&" if "?" in url else "?") + "redirect_url=" + quote(
                        request.return_url, safe="")
                return PayAction(ActionKind.REDIRECT, url=url)
            if request.channel is Channel.WECHAT_NATIVE:
                return PayAction(ActionKind.QR, qr_text=_text(answer, "code_url"))
            prepay_id = _text(answer, "prepay_id")
        except ValueError as exc:
            raise _bad_answer(str(exc)) from exc
        return PayAction(ActionKind.JSAPI, jsapi_params=self.jsapi_params(prepay_id))

    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        """WeixinJSBridge ``getBrandWCPayRequest`` parameters for a prepay id, signed (RSA)."""
        app_id = self._config.sp_appid  # the payer is identified by sp_openid, under sp_appid
        timestamp = str(int(utcnow().timestamp()))
        nonce = secrets.token_hex(16).upper()
        package = f"prepay_id={prepay_id}"
        pay_sign = str(self._client.sign([app_id, timestamp, nonce, package]))
        return {"appId": app_id, "timeStamp": timestamp, "nonceStr": nonce,
                "package": package, "signType": "RSA", "paySign": pay_sign}

    def _check_pay_request(self, request: PayRequest) -> None:
        if request.channel not in self.channels:
            raise _refuse(f"WeChat Pay does not offer channel {request.channel}")
        self._check_merchant(request.merchant)
        self._check_out_trade_no(request.out_trade_no)
        _check_amount(request.amount_fen)
        if not request.description or (len(request.description.encode())
                                        > DESCRIPTION_MAX_BYTES):
            raise _refuse("the description must be 1 to 127 bytes")
        if len(request.attach.encode()) > ATTACH_MAX_BYTES:
            raise _refuse("attach must be at most 128 bytes")
        _check_url(request.notify_url, "notify_url", query=False)
        if request.return_url is not None:
            _check_url(request.return_url, "return_url", query=True)
        if request.expires_at.tzinfo is None or request.expires_at.utcoffset() is None:
            raise _refuse("expires_at must be an aware time")
        try:
            ipaddress.ip_address(request.client_ip)
        except ValueError as exc:
            raise _refuse("client_ip must be an IP address") from exc
        if request.channel is Channel.WECHAT_JSAPI and not (
                request.openid and OPENID_RE.match(request.openid)):
            raise _refuse("a JSAPI payment needs the payer's openid")

    def _check_merchant(self, merchant: MerchantRoute) -> None:
        if merchant.provider != self.name:
            raise _refuse(f"the merchant route is for provider {merchant.provider!r}")
        if not MCHID_RE.match(merchant.merchant_id):
            raise _refuse("sub_mchid must be digits")
        if merchant.sub_appid is not None and not APPID_RE.match(merchant.sub_appid):
            raise _refuse("sub_appid must be an AppID")

    @staticmethod
    def _check_out_trade_no(out_trade_no: str) -> None:
        if not OUT_TRADE_NO_RE.match(out_trade_no):
            raise _refuse("out_trade_no must be 6 to 32 of A-Z a-z 0-9 _ -")

    # -- callbacks ----------------------------------------------------------------------------

    def parse_notification(self, *, body: bytes,
                           headers: Mapping[str, str]) -> PaymentReport | RefundReport:
        """Verify a WeChat Pay callback (signature, freshness, decryption) and parse it."""
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        signature = lowered.get("wechatpay-signature", "")
        timestamp = lowered.get("wechatpay-timestamp", "")
        nonce = lowered.get("wechatpay-nonce", "")
        serial = lowered.get("wechatpay-serial", "")
        signature_type = lowered.get("wechatpay-signature-type", "")
        if not (signature and timestamp and nonce and serial):
            raise InvalidSignature("The callback is missing its signature headers.")
        if signature_type != SIGNATURE_TYPE:
            raise InvalidSignature("The callback is signed with an unsupported algorithm.")
        # Checked before the SDK: for any other serial it would download platform
        # certificates, a network call on behalf of whoever POSTed this.
        if serial != self._config.public_key_id:
            raise InvalidSignature("The callback is signed with a key the platform does not know.")
        # ASCII digits of a sane length ("²" is a digit to isdigit() but not to int()).
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise InvalidSignature("The callback's timestamp is not a number.")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidSignature("The callback signature does not match its body.") from exc
        if not _verifies(timestamp, nonce, text, signature, self._public_key):
            raise InvalidSignature("The callback signature does not match its body.")
        sent_at = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
        if abs(utcnow() - sent_at) > MAX_CLOCK_SKEW:
            raise InvalidSignature("The callback timestamp is too far from now.",
                                   code="stale_callback")
        try:
            envelope = _object(json.loads(text))
        except ValueError as exc:
            raise InvalidSignature("The callback body is not a valid notification.",
                                   code="malformed_callback") from exc
        # The SDK's AEAD_AES_256_GCM decryption (wechatpayv3.utils.aes_decrypt, what its
        # decrypt_callback calls) of the body verified above: decrypt_callback itself would
        # verify the same signature a second time and parse the body again (a giving day's
        # peak is made of these notifications).
        plaintext = _decrypt_resource(envelope, self._config.apiv3_key)
        if plaintext is None:
            raise InvalidSignature("The callback's resource cannot be decrypted.",
                                   code="malformed_callback")
        try:
            resource = _object(json.loads(plaintext))
            return self._report_of(envelope, resource)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidSignature("The callback body is not a valid notification.",
                                   code="malformed_callback") from exc

    def _report_of(self, envelope: dict[str, Any],
                   resource: dict[str, Any]) -> PaymentReport | RefundReport:
        event_id = _text(envelope, "id")
        event_type = _text(envelope, "event_type")
        if _text(resource, "sp_mchid") != self._config.sp_mchid:
            # Signed by WeChat Pay and decrypted with our key, yet for another service
            # provider's account: not a forgery, not ours (Alipay's wrong app_id).
            raise InvalidSignature("The callback is addressed to another WeChat Pay service "
                                   "provider.", code="wrong_app_id")
        if event_type == "TRANSACTION.SUCCESS":
            report = payment_report(resource, event_id=event_id)
            if report.state is not PaymentState.PAID:
                raise ValueError("TRANSACTION.SUCCESS without trade_state SUCCESS")
            return report
        if event_type in REFUND_EVENTS:
            if _text(resource, "refund_status") != REFUND_EVENTS[event_type]:
                raise ValueError("the refund status disagrees with the event type")
            return refund_report(resource, merchant_id=_text(resource, "sub_mchid"),
                                 event_id=event_id, status_field="refund_status")
        raise ValueError(f"unknown event type {event_type!r}")

    def acknowledge(self, *, ok: bool, message: str = "") -> Acknowledgement:
        """204 without a body when accepted; otherwise 500 ``{"code":"FAIL",…}`` (retry)."""
        if ok:
            return Acknowledgement(204, b"", "application/json")
        body = json.dumps({"code": "FAIL", "message": message or "失败"}, ensure_ascii=False,
                          separators=(",", ":")).encode()
        return Acknowledgement(500, body, "application/json")

    # -- queries and refunds ------------------------------------------------------------------

    def query_payment(self, *, out_trade_no: str,
                      merchant: MerchantRoute) -> PaymentReport | None:
        """The partner order by out_trade_no; None when WeChat Pay does not know it."""
        self._check_merchant(merchant)
        self._check_out_trade_no(out_trade_no)
        status, body = self._call(self._client.query, out_trade_no=out_trade_no,
                                  sub_mchid=merchant.merchant_id)
        if status == 404 and _provider_code(body) in _NOT_FOUND_PROVIDER_CODES:
            return None
        if status != 200:
            raise self._error(status, body)
        answer = self._answer(body)
        try:
            report = payment_report(answer, event_id="")
        except (ValueError, TypeError, KeyError) as exc:
            raise _bad_answer(str(exc)) from exc
        if report.out_trade_no != out_trade_no or report.merchant_id != merchant.merchant_id:
            raise _bad_answer("the answer is about another order")
        return report

    def refund(self, *, out_refund_no: str, out_trade_no: str, amount_fen: int,
               total_fen: int, merchant: MerchantRoute, notify_url: str,
               reason: str = "") -> RefundReport:
        """POST /v3/refund/domestic/refunds (idempotent per out_refund_no at WeChat Pay)."""
        self._check_merchant(merchant)
        self._check_out_trade_no(out_trade_no)
        _check_out_refund_no(out_refund_no)
        _check_amount(total_fen)
        _check_amount(amount_fen)
        if amount_fen > total_fen:
            raise _refuse("the refund is larger than the payment")
        if len(reason) > REASON_MAX_CHARS:
            raise _refuse("the reason must be at most 80 characters")
        _check_url(notify_url, "notify_url", query=False)
        status, body = self._call(
            self._client.refund, out_refund_no=out_refund_no, out_trade_no=out_trade_no,
            amount={"refund": amount_fen, "total": total_fen, "currency": "CNY"},
            reason=reason or None, notify_url=notify_url, sub_mchid=merchant.merchant_id)
        if status != 200:
            raise self._error(status, body)
        return self._refund_answer(body, out_refund_no, out_trade_no, merchant)

    def query_refund(self, *, out_refund_no: str, out_trade_no: str,
                     merchant: MerchantRoute) -> RefundReport | None:
        """GET /v3/refund/domestic/refunds/{out_refund_no}; None when unknown to WeChat Pay."""
        self._check_merchant(merchant)
        self._check_out_trade_no(out_trade_no)
        _check_out_refund_no(out_refund_no)
        status, body = self._call(self._client.query_refund, out_refund_no=out_refund_no,
                                  sub_mchid=merchant.merchant_id)
        if status == 404 and _provider_code(body) in _NOT_FOUND_PROVIDER_CODES:
            return None
        if status != 200:
            raise self._error(status, body)
        return self._refund_answer(body, out_refund_no, out_trade_no, merchant)

    def _refund_answer(self, body: Any, out_refund_no: str, out_trade_no: str,
                       merchant: MerchantRoute) -> RefundReport:
        answer = self._answer(body)
        try:
            report = refund_report(answer, merchant_id=merchant.merchant_id, event_id="",
                                   status_field="status")
        except (ValueError, TypeError, KeyError) as exc:
            raise _bad_answer(str(exc)) from exc
        if report.out_refund_no != out_refund_no or report.out_trade_no != out_trade_no:
            raise _bad_answer("the answer is about another refund or order")
        return report

    # -- the daily bill -----------------------------------------------------------------------

    def download_bill(self, *, day: dt.date,
                      merchant: MerchantRoute | None = None) -> list[BillLine]:
        """The ALL trade bill of ``day`` (China time): payments and refunds, checked, parsed."""
        sub_mchid = None
        if merchant is not None:
            self._check_merchant(merchant)
            sub_mchid = merchant.merchant_id
        status, body = self._call(self._client.trade_bill, bill_date=day.isoformat(),
                                  bill_type="ALL", tar_type="GZIP", sub_mchid=sub_mchid)
        code = _provider_code(body)
        if status == 400 and code == "NO_STATEMENT_EXIST":
            return []  # no payment and no refund that day
        if status == 400 and code == "STATEMENT_CREATING":
            raise GatewayError("WeChat Pay's daily bill is not ready yet.",
                               code="payment_bill_not_ready", params={"day": day.isoformat()})
        if status != 200:
            raise self._error(status, body)
        answer = self._answer(body)
        try:
            url = _text(answer, "download_url")
            hash_type = _text(answer, "hash_type").upper()
            hash_value = _text(answer, "hash_value").lower()
        except (ValueError, TypeError) as exc:
            raise _bad_answer(str(exc)) from exc
        # The SDK signs the download like any request, relative to the gateway URL.
        if not url.startswith(self._gateway_url + "/") or hash_type != "SHA1":
            raise _bad_answer("the bill's download URL or hash type is unexpected")
        status, content = self._call(self._client.download_bill, url)
        if status != 200:
            raise self._error(status, content)
        raw = content if isinstance(content, bytes) else str(content).encode()
        try:
            data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        except (OSError, EOFError) as exc:
            raise _bill_malformed("the bill is not a gzip file") from exc
        # The download is not signed (the SDK skips it): the hash from the signed answer is
        # what ties the file to WeChat Pay.
        if hashlib.sha1(data, usedforsecurity=False).hexdigest() != hash_value:
            raise _bill_malformed("the bill's SHA1 does not match the signed answer")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _bill_malformed("the bill is not UTF-8") from exc
        lines = parse_trade_bill(text)
        if sub_mchid is not None and any(line.merchant_id != sub_mchid for line in lines):
            raise _bill_malformed("the bill has lines of another sub-merchant")
        return lines

    # -- talking to the SDK -------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
        try:
            status, body = method(*args, **kwargs)
        except requests.RequestException as exc:
            raise GatewayError("WeChat Pay could not be reached. Please try again.",
                               code="payment_provider_unreachable",
                               params={"reason": type(exc).__name__}) from exc
        except Exception as exc:  # the SDK raises bare Exception
            if "verify the signature" in str(exc):
                raise GatewayError("WeChat Pay's answer could not be verified.",
                                   code="payment_provider_unsigned") from exc
            raise GatewayError("WeChat Pay refused the request.", code="payment_provider_refused",
                               params={"reason": str(exc)[:200]}) from exc
        return int(status), body

    @staticmethod
    def _answer(body: Any) -> dict[str, Any]:
        try:
            return _object(json.loads(body))
        except (ValueError, TypeError) as exc:
            raise _bad_answer("the answer is not a JSON object") from exc

    @staticmethod
    def _error(status: int, body: Any) -> GatewayError:
        """The GatewayError for a non-2xx answer (codes: ``GATEWAY_ERROR_CODES``)."""
        info: dict[str, Any] = {}
        try:
            info = _object(json.loads(body))
        except (ValueError, TypeError):
            pass
        provider_code = str(info.get("code", ""))[:64]
        provider_message = str(info.get("message", ""))[:200]
        details = {"http_status": status, "provider_code": provider_code,
                   "provider_message": provider_message}
        if status == 401 or provider_code == "SIGN_ERROR":
            return GatewayError("WeChat Pay refused the platform's credentials.",
                                code="payment_provider_auth_failed", params=details)
        if status >= 500 or status == 429 or provider_code in _RETRYABLE_PROVIDER_CODES:
            return GatewayError("WeChat Pay is busy. Please try again later.",
                                code="payment_provider_busy", params=details)
        if provider_code == "MCH_NOT_EXISTS" or "受理关系" in provider_message:
            return GatewayError("WeChat Pay does not know this organization's merchant account.",
                                code="payment_merchant_unknown", params=details)
        if status == 404 and provider_code in _NOT_FOUND_PROVIDER_CODES:
            # Queries answer None for these before coming here: this is a refund (or another
            # call) about an order WeChat Pay never saw.
            return GatewayError("WeChat Pay knows no such order.",
                                code="payment_order_unknown", params=details)
        if provider_code in _CONFLICT_PROVIDER_CODES:
            return GatewayError("This order already exists at WeChat Pay: paid, closed or "
                                "opened with other details.",
                                code="payment_order_conflict", params=details)
        if provider_code == "NOT_ENOUGH":
            return GatewayError("The organization's WeChat Pay balance cannot pay this refund "
                                "yet.", code="payment_refund_unfunded", params=details)
        return GatewayError("WeChat Pay refused the request.", code="payment_provider_refused",
                            params=details)


def _is_a_gateway(gateway: WeChatPayGateway) -> Gateway:
    """Nothing at run time: mypy checks here that the class implements the protocol."""
    return gateway


# --- parsing what WeChat Pay says ------------------------------------------------------------


def payment_report(data: Mapping[str, Any], *, event_id: str) -> PaymentReport:
    """A PaymentReport from a partner transaction (query answer or decrypted callback).

    Raises ValueError/TypeError/KeyError when a field is missing or of the wrong type.
    """
    trade_state = _text(data, "trade_state")
    if trade_state not in TRADE_STATES:
        raise ValueError(f"unknown trade_state {trade_state!r}")
    amount = _object(data["amount"])
    if amount.get("currency", "CNY") != "CNY":
        raise ValueError("not a CNY payment")
    payer = _object(data.get("payer") or {})
    success_time = data.get("success_time")
    return PaymentReport(
        provider=PROVIDER,
        out_trade_no=_text(data, "out_trade_no"),
        state=TRADE_STATES[trade_state],
        amount_fen=_whole(amount, "total"),
        merchant_id=_text(data, "sub_mchid"),
        provider_txn_id=str(data["transaction_id"]) if data.get("transaction_id") else None,
        paid_at=parse_rfc3339(str(success_time)) if success_time else None,
        payer_id=str(payer.get("sub_openid") or payer.get("sp_openid") or ""),
        attach=str(data.get("attach") or ""),
        event_id=event_id,
        raw=dict(data),
    )


def refund_report(data: Mapping[str, Any], *, merchant_id: str, event_id: str,
                  status_field: str) -> RefundReport:
    """A RefundReport from a refund answer (``status``) or callback (``refund_status``)."""
    status = _text(data, status_field)
    if status not in REFUND_STATES:
        raise ValueError(f"unknown refund status {status!r}")
    return RefundReport(
        provider=PROVIDER,
        out_refund_no=_text(data, "out_refund_no"),
        out_trade_no=_text(data, "out_trade_no"),
        state=REFUND_STATES[status],
        amount_fen=_whole(_object(data["amount"]), "refund"),
        merchant_id=merchant_id,
        provider_refund_id=str(data["refund_id"]) if data.get("refund_id") else None,
        event_id=event_id,
        raw=dict(data),
    )


def rfc3339(moment: dt.datetime) -> str:
    """An aware time as WeChat Pay writes it: China time, whole seconds (…T10:34:56+08:00)."""
    return moment.astimezone(CHINA_TZ).replace(microsecond=0).isoformat()


def parse_rfc3339(text: str) -> dt.datetime:
    """An RFC 3339 time with its offset, as aware UTC (ValueError otherwise)."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("a time without an offset")
    return moment.astimezone(dt.UTC)


def _decrypt_resource(envelope: Mapping[str, Any], apiv3_key: str) -> str | None:
    """A notification's resource decrypted as the SDK's ``decrypt_callback`` does (an
    ``encrypt-resource`` under AEAD_AES_256_GCM); None when it cannot be."""
    resource = envelope.get("resource")
    if envelope.get("resource_type") != "encrypt-resource" or not isinstance(resource, dict):
        return None
    nonce, ciphertext = resource.get("nonce"), resource.get("ciphertext")
    associated = resource.get("associated_data") or ""
    if (resource.get("algorithm") != "AEAD_AES_256_GCM" or not isinstance(nonce, str)
            or not isinstance(ciphertext, str) or not nonce or not ciphertext
            or not isinstance(associated, str)):
        return None
    try:
        plaintext = aes_decrypt(nonce=nonce, ciphertext=ciphertext,
                                associated_data=associated, apiv3_key=apiv3_key)
    except Exception:  # noqa: BLE001 - bad base64, a wrong nonce length: not decryptable
        return None
    return plaintext if isinstance(plaintext, str) else None


def _verifies(timestamp: str, nonce: str, body: str, signature: str, key: Any) -> bool:
    try:
        return bool(rsa_verify(timestamp, nonce, body, signature, key))
    except Exception:  # any failure to verify is a failure to verify
        return False


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is not a non-empty string")
    return value


def _whole(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    if type(value) is not int or value < 0:
        raise ValueError(f"{key} is not a whole number of fen")
    return value


def _provider_code(body: Any) -> str:
    try:
        return str(_object(json.loads(body)).get("code", ""))
    except (ValueError, TypeError):
        return ""


def _check_amount(amount_fen: int) -> None:
    if type(amount_fen) is not int or amount_fen < 1:
        raise _refuse("amounts are whole fen, at least 1")


def _check_out_refund_no(out_refund_no: str) -> None:
    if not OUT_REFUND_NO_RE.match(out_refund_no):
        raise _refuse("out_refund_no must be 1 to 64 of A-Z a-z 0-9 _ - | * @")


def _check_url(url: str, name: str, *, query: bool) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _refuse(f"{name} must be an http(s) URL") from exc
    if parts.scheme not in ("http", "https") or not parts.netloc or (parts.query and not query):
        # WeChat Pay refuses a notify_url that carries a query string.
        raise _refuse(f"{name} must be an http(s) URL")


def _bad_answer(problem: str) -> GatewayError:
    return GatewayError("WeChat Pay's answer is not what its API documents.",
                        code="payment_provider_bad_answer", params={"problem": problem})


def _bill_malformed(problem: str) -> GatewayError:
    return GatewayError("WeChat Pay's daily bill could not be read.",
                        code="payment_bill_malformed", params={"problem": problem})


# --- the trade bill --------------------------------------------------------------------------

BILL_REQUIRED = ("交易时间", "特约商户号", "微信订单号", "商户订单号", "交易状态", "微信退款单号",
                 "商户退款单号", "退款状态", "订单金额", "申请退款金额")
BILL_FREE_TEXT = ("商品名称", "商户数据包")  # the payer-visible texts: may contain commas
BILL_SUMMARY_FIRST = "总交易单数"
_YUAN_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def parse_trade_bill(text: str, *, provider: str = PROVIDER) -> list[BillLine]:
    """Parse a WeChat Pay trade bill (the ALL type) into payment and refund lines.

    The file: a header line; one line per payment (交易状态 ``SUCCESS``) or refund (``REFUND``)
    with every field prefixed by a backquote (so spreadsheets keep long numbers); a summary
    header (总交易单数,…) and its backquoted values. Columns are found by their header names
    (WeChat Pay says their order may change). The free texts (商品名称, 商户数据包) are not
    quoted and may contain commas, so the columns before them are read from the left and the
    ones after from the right. Amounts are yuan strings, converted to fen exactly. The
    summary's count (and its requested-refund total, when present) must agree with the lines.
    Raises GatewayError ``payment_bill_malformed``.
    """
    lines = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if not lines:
        raise _bill_malformed("the bill is empty")
    header = [name.strip() for name in lines[0].split(",")]
    missing = [name for name in BILL_REQUIRED if name not in header]
    if missing:
        raise _bill_malformed("the bill lacks the columns " + ",".join(missing))
    summary_at = next((i for i, line in enumerate(lines)
                       if i > 0 and _bill_field(line.split(",")[0]) == BILL_SUMMARY_FIRST), None)
    if summary_at is None or summary_at + 1 >= len(lines):
        raise _bill_malformed("the bill has no summary")
    rows = [_bill_row(header, line) for line in lines[1:summary_at]]
    summary_names = [_bill_field(name) for name in lines[summary_at].split(",")]
    summary_values = [_bill_field(value) for value in lines[summary_at + 1].split(",")]
    if len(summary_names) != len(summary_values):
        raise _bill_malformed("the summary's names and values disagree")
    summary = dict(zip(summary_names, summary_values, strict=True))
    result = [_bill_line(row, provider) for row in rows]
    try:
        if int(summary[BILL_SUMMARY_FIRST]) != len(rows):
            raise _bill_malformed("the summary counts another number of lines")
    except ValueError as exc:
        raise _bill_malformed("the summary's count is not a number") from exc
    if "申请退款总金额" in summary and yuan_to_fen(summary["申请退款总金额"]) != sum(
            yuan_to_fen(row["申请退款金额"]) for row in rows):
        raise _bill_malformed("the summary's refund total disagrees with the lines")
    return result


def yuan_to_fen(text: str) -> int:
    """``"12.34"`` → 1234, exactly (no float); a third decimal other than 0 is refused."""
    value = text.strip()
    if not _YUAN_RE.match(value):
        raise _bill_malformed(f"{value!r} is not an amount in yuan")
    try:
        fen = Decimal(value) * 100
    except InvalidOperation as exc:
        raise _bill_malformed(f"{value!r} is not an amount in yuan") from exc
    if fen != fen.to_integral_value():
        raise _bill_malformed(f"{value!r} is not a whole number of fen")
    return int(fen)


def _bill_field(value: str) -> str:
    value = value.strip()
    return value[1:] if value.startswith("`") else value


def _bill_row(header: list[str], line: str) -> dict[str, str]:
    values = line.split(",")
    if len(values) < len(header):
        raise _bill_malformed("a bill line has too few fields")
    if len(values) > len(header):
        free = [header.index(name) for name in BILL_FREE_TEXT if name in header]
        if not free:
            raise _bill_malformed("a bill line has too many fields")
        first, last = min(free), max(free)
        extra = len(values) - len(header)
        values = (values[:first] + [",".join(values[first:last + 1 + extra])]
                  + [""] * (last - first) + values[last + 1 + extra:])
        # The free texts are merged into the first one; the others are left empty: nothing
        # here reads them, and which comma belonged to which cannot be known.
    return {name: _bill_field(value) for name, value in zip(header, values, strict=True)}


def _bill_line(row: dict[str, str], provider: str) -> BillLine:
    try:
        # Bill times are China time without an offset.
        local = dt.datetime.strptime(row["交易时间"] + " +0800", "%Y-%m-%d %H:%M:%S %z")
    except ValueError as exc:
        raise _bill_malformed(f"{row['交易时间']!r} is not a bill time") from exc
    happened_at = local.astimezone(dt.UTC)
    status = row["交易状态"]
    out_trade_no, txn_id, merchant_id = row["商户订单号"], row["微信订单号"], row["特约商户号"]
    if not (out_trade_no and txn_id and merchant_id):
        raise _bill_malformed("a bill line lacks its order numbers or merchant")
    if status == "REFUND":
        if not (row["商户退款单号"] and row["微信退款单号"]):
            raise _bill_malformed("a refund line lacks its refund numbers")
        return BillLine(provider=provider, kind=BillKind.REFUND, out_trade_no=out_trade_no,
                        provider_txn_id=txn_id, amount_fen=yuan_to_fen(row["申请退款金额"]),
                        merchant_id=merchant_id, happened_at=happened_at,
                        out_refund_no=row["商户退款单号"], provider_refund_id=row["微信退款单号"],
                        status=row["退款状态"])
    return BillLine(provider=provider, kind=BillKind.PAYMENT, out_trade_no=out_trade_no,
                    provider_txn_id=txn_id, amount_fen=yuan_to_fen(row["订单金额"]),
                    merchant_id=merchant_id, happened_at=happened_at, status=status)
