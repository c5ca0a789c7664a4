"""Text messages with sign-in codes: mainland phone numbers, the :class:`SmsSender` protocol,
Alibaba Cloud SMS (``SendSms``) and the log.

:class:`AliyunSmsSender` calls Alibaba Cloud's short message service the way its
documentation describes, without its SDK (ADR 0033): ``POST https://dysmsapi.aliyuncs.com/``
with the operation's parameters in the query (``PhoneNumbers``, ``SignName``, ``TemplateCode``,
``TemplateParam``), the ``x-acs-action: SendSms`` / ``x-acs-version: 2017-05-25`` headers and
a V3 signature (``Authorization: ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…``,
:func:`authorization`). The answer is JSON: ``{"Code": "OK", "BizId": …, "RequestId": …}``, or
another ``Code`` (``isv.BUSINESS_LIMIT_CONTROL``, ``isv.MOBILE_NUMBER_ILLEGAL``,
``SignatureDoesNotMatch`` …) that is raised as :class:`SmsError`. The demo and the tests point
it at :mod:`shanju.accounts.sms_emulator`, which checks the same signature.

:class:`LogSmsSender` writes the code to the log (``sms.sent``): development and tests without
the emulator. Production sends no code unless Alibaba Cloud SMS is configured: phone sign-in
is then off (:func:`sms_sender_for` returns None).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit

import structlog

from shanju.core.clock import utcnow
from shanju.core.errors import InvalidInput

if TYPE_CHECKING:
    from shanju.core.config import Settings

log = structlog.get_logger(__name__)

# A mainland China mobile number: 11 digits, 1 then 3-9 (no mobile number starts 10, 11 or 12).
MAINLAND_MOBILE = re.compile(r"1[3-9]\d{9}")
_SEPARATORS = re.compile(r"[\s\-()（）]")


def check_phone(value: str) -> str:
    """Return a mainland mobile number in E.164 (``+8613800138000``) or raise ``invalid_phone``.

    Accepted: the 11 digits, with ``+86``, ``86`` or ``0086`` in front, spaces, dashes or
    brackets between. Anything else — another country, a landline, too few digits — is refused.
    """
    digits = _SEPARATORS.sub("", value.strip())
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix):]
            break
    if not digits.isascii() or not MAINLAND_MOBILE.fullmatch(digits):
        raise InvalidInput(
            "Enter a mainland China mobile number: 11 digits starting with 1.",
            code="invalid_phone", field="phone")
    return "+86" + digits


def national(phone: str) -> str:
    """The 11 digits of an E.164 mainland number (``+8613800138000`` → ``13800138000``)."""
    return phone.removeprefix("+86")


def mask_phone(phone: str) -> str:
    """The number as shown to its owner and in logs: ``138****8000``."""
    digits = national(phone)
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) == 11 else "****"


class SmsError(Exception):
    """The provider did not take the message: its ``code`` and ``message``."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class SmsSender(Protocol):
    """Something that sends a sign-in code to a phone, or raises :class:`SmsError`."""

    def send_code(self, *, phone: str, code: str) -> None:
        """Send ``code`` to ``phone`` (E.164)."""


@dataclass(frozen=True)
class SentSms:
    """A code the log sender "sent"."""

    phone: str
    code: str


class LogSmsSender:
    """Writes every code to the log and keeps the newest 100 (development, tests)."""

    def __init__(self) -> None:
        self.sent: deque[SentSms] = deque(maxlen=100)

    def send_code(self, *, phone: str, code: str) -> None:
        """Log the code (development has no phone to send it to)."""
        self.sent.append(SentSms(phone=phone, code=code))
        log.info("sms.sent", phone=mask_phone(phone), code=code)


# --- Alibaba Cloud SMS ------------------------------------------------------------------------

ALGORITHM = "ACS3-HMAC-SHA256"
SEND_SMS = "SendSms"
API_VERSION = "2017-05-25"
DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding of UTF-8, as the signature wants it: only ``A-Za-z0-9-_.~``
    stay as they are (a space is ``%20``, ``*`` is ``%2A``)."""
    return quote(value, safe="-_.~", encoding="utf-8")


def canonical_query(params: Mapping[str, str]) -> str:
    """The query string in the signature's canonical form: sorted by name, both encoded."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}"
                    for k, v in sorted(params.items()))


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """Which headers a V3 signature covers: ``host``, ``content-type`` and every ``x-acs-*``."""
    return sorted(name for name in (h.lower() for h in headers)
                  if name in ("host", "content-type") or name.startswith("x-acs-"))


def canonical_request(*, method: str, path: str, query: str, headers: Mapping[str, str],
                      payload_sha256: str) -> tuple[str, str]:
    """The V3 canonical request and its ``SignedHeaders`` list (``host;x-acs-action;…``)."""
    lowered = {k.lower(): v.strip() for k, v in headers.items()}
    names = signed_header_names(lowered)
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in names)
    signed = ";".join(names)
    uri = quote(path or "/", safe="/-_.~", encoding="utf-8")
    return (f"{method.upper()}\n{uri}\n{query}\n{canonical_headers}\n{signed}\n"
            f"{payload_sha256}"), signed


def signature(secret: str, request: str) -> str:
    """``HexEncode(HMAC-SHA256(secret, "ACS3-HMAC-SHA256\\n" + HexEncode(SHA256(request))))``."""
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(request.encode()).hexdigest()}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(*, key_id: str, secret: str, method: str, path: str, query: str,
                  headers: Mapping[str, str], payload_sha256: str) -> str:
    """The ``Authorization`` header of a V3-signed request."""
    request, signed = canonical_request(method=method, path=path, query=query,
                                        headers=headers, payload_sha256=payload_sha256)
    return (f"{ALGORITHM} Credential={key_id},SignedHeaders={signed},"
            f"Signature={signature(secret, request)}")


def acs_date(moment: dt.datetime) -> str:
    """``x-acs-date``: UTC, ISO 8601 to the second (``2026-01-02T03:04:05Z``)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class AliyunSmsConfig:
    """An Alibaba Cloud SMS account: its RAM AccessKey, approved signature and code template."""

    access_key_id: str
    access_key_secret: str
    sign_name: str
    template_code: str
    endpoint: str = DEFAULT_ENDPOINT

    @classmethod
    def from_settings(cls, settings: Settings) -> AliyunSmsConfig | None:
        """The account ``SHANJU_SMS_ALIYUN_*`` describe, or None when they are not all set."""
        values = (settings.sms_aliyun_access_key_id, settings.sms_aliyun_access_key_secret,
                  settings.sms_aliyun_sign_name, settings.sms_aliyun_template_code)
        if not all(values):
            if any(values):
                log.warning("sms.partly_configured", hint="set all of SHANJU_SMS_ALIYUN_"
                            "ACCESS_KEY_ID, _ACCESS_KEY_SECRET, _SIGN_NAME and _TEMPLATE_CODE")
            return None
        return cls(*values, endpoint=settings.sms_aliyun_endpoint or DEFAULT_ENDPOINT)


class AliyunSmsSender:
    """Sends codes with Alibaba Cloud SMS's ``SendSms`` (template variable ``code``)."""

    def __init__(self, config: AliyunSmsConfig, *, timeout: float = 5.0,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        parts = urlsplit(config.endpoint)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"not an http(s) endpoint: {config.endpoint!r}")
        self.config = config
        self.timeout = timeout
        self.clock = clock
        self._host = parts.netloc
        self._path = parts.path.rstrip("/") + "/"
        self._base = f"{parts.scheme}://{parts.netloc}{self._path}"

    def signed_request(self, params: Mapping[str, str], *, nonce: str | None = None
                       ) -> tuple[str, dict[str, str]]:
        """The URL and headers of a signed ``SendSms`` call with ``params`` (empty body)."""
        query = canonical_query(params)
        headers = {
            "host": self._host,
            # Said (and so signed) here: urllib would add it to a POST unsigned otherwise.
            "content-type": "application/x-www-form-urlencoded",
            "x-acs-action": SEND_SMS,
            "x-acs-version": API_VERSION,
            "x-acs-date": acs_date(self.clock()),
            "x-acs-signature-nonce": nonce or secrets.token_hex(16),
            "x-acs-content-sha256": EMPTY_SHA256,
        }
        headers["Authorization"] = authorization(
            key_id=self.config.access_key_id, secret=self.config.access_key_secret,
            method="POST", path=self._path, query=query, headers=headers,
            payload_sha256=EMPTY_SHA256)
        return f"{self._base}?{query}", headers

    def send_code(self, *, phone: str, code: str) -> None:
        """Send the template with ``{"code": code}`` to ``phone``; raise :class:`SmsError`."""
        url, headers = self.signed_request({
            "PhoneNumbers": national(phone),
            "SignName": self.config.sign_name,
            "TemplateCode": self.config.template_code,
            "TemplateParam": json.dumps({"code": code}, separators=(",", ":")),
        })
        request = urllib.request.Request(url, data=b"", method="POST", headers=headers)  # noqa: S310 - http(s) only, checked in __init__
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - as above
                answer = _json(response.read())
        except urllib.error.HTTPError as exc:
            answer = _json(exc.read())
            raise SmsError(str(answer.get("Code") or f"HTTP {exc.code}"),
                           str(answer.get("Message") or "")) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise SmsError("unreachable", str(exc)) from None
        if answer.get("Code") != "OK":
            raise SmsError(str(answer.get("Code") or "unknown"), str(answer.get("Message") or ""))
        log.info("sms.sent", phone=mask_phone(phone), provider="aliyun",
                 biz_id=answer.get("BizId"), request_id=answer.get("RequestId"))


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def sms_sender_for(settings: Settings) -> SmsSender | None:
    """The sender of ``settings``: Alibaba Cloud SMS when configured; else the log outside
    production, and none in production (phone sign-in is then off)."""
    config = AliyunSmsConfig.from_settings(settings)
    if config is not None:
        return AliyunSmsSender(config)
    if settings.environment == "production":
        return None
    return LogSmsSender()
