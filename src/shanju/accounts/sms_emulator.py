"""A local emulator of Alibaba Cloud SMS's ``SendSms`` (as the payment emulators are for the
payment providers): the production :class:`~shanju.accounts.sms.AliyunSmsSender` talks to it
unchanged, only the endpoint and the keys differ.

What it checks, as Alibaba Cloud does:

* the V3 signature: ``Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,
  SignedHeaders=…,Signature=…`` over the canonical request (method, path, sorted query,
  the signed headers, the body's SHA-256) — 400 ``SignatureDoesNotMatch`` otherwise; an
  unknown key id is 404 ``InvalidAccessKeyId.NotFound``; ``x-acs-date`` more than 15 minutes
  away is 400 ``InvalidTimeStamp.Expired``; a nonce used before is 400 ``SignatureNonceUsed``;
  another ``x-acs-action`` is 404 ``InvalidAction.NotFound``;
* ``SendSms``'s parameters (answered HTTP 200 with the error ``Code``): the number
  (``isv.MOBILE_NUMBER_ILLEGAL``), the signature (``isv.SMS_SIGNATURE_ILLEGAL``) and template
  (``isv.SMS_TEMPLATE_ILLEGAL``) approved for the account, the template's variables
  (``isv.INVALID_JSON_PARAM``, ``isv.TEMPLATE_MISSING_PARAMETERS``), and Alibaba Cloud's
  default flow control for codes to one number (1 a minute, 5 an hour, 10 a day:
  ``isv.BUSINESS_LIMIT_CONTROL``).

A message it accepts is kept (newest 500) and shown on ``GET /emulator/inbox``, a phone-sized
page — the demo's phone — and as JSON on ``GET /emulator/messages``. Kept in memory, guarded
by one lock. Never used in production: nothing here sends a text message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from shanju.accounts import sms
from shanju.core.clock import CHINA_TZ, utcnow
from shanju.core.errors import InvalidInput

DEFAULT_SIGN_NAME = "善举"
DEFAULT_TEMPLATE_CODE = "SMS_000000001"
DEFAULT_TEMPLATE = "您的验证码为${code}，5分钟内有效。如非本人操作，请忽略本短信。"
DATE_SKEW = dt.timedelta(minutes=15)
# Alibaba Cloud's default flow control of code messages to one number.
FLOW_LIMITS = ((dt.timedelta(minutes=1), 1), (dt.timedelta(hours=1), 5), (dt.timedelta(days=1), 10))
KEEP = 500
_AUTH = re.compile(r"ACS3-HMAC-SHA256 Credential=([^,\s]+),SignedHeaders=([^,\s]+),"
                   r"Signature=([0-9a-f]{64})")
_VARIABLE = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class ReceivedSms:
    """A text message the emulator accepted."""

    phone: str          # the 11 digits, as sent
    sign_name: str
    template_code: str
    params: dict[str, str]
    text: str           # what the phone shows: 【签名】 and the filled template
    biz_id: str
    at: dt.datetime

    @property
    def code(self) -> str:
        """The ``code`` variable (what a sign-in code message carries)."""
        return self.params.get("code", "")


@dataclass
class AliyunSmsEmulator:
    """The emulated account: its AccessKeys, approved signatures and templates, and inbox."""

    access_keys: dict[str, str]
    sign_names: set[str] = field(default_factory=lambda: {DEFAULT_SIGN_NAME})
    templates: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_TEMPLATE_CODE: DEFAULT_TEMPLATE})
    clock: Callable[[], dt.datetime] = utcnow
    flow_limits: tuple[tuple[dt.timedelta, int], ...] = FLOW_LIMITS
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _messages: deque[ReceivedSms] = field(default_factory=lambda: deque(maxlen=KEEP))
    _nonces: dict[str, dt.datetime] = field(default_factory=dict)
    _sent_to: dict[str, list[dt.datetime]] = field(default_factory=dict)

    @property
    def messages(self) -> list[ReceivedSms]:
        """Every message kept, oldest first."""
        with self._lock:
            return list(self._messages)

    def latest_code(self, phone: str) -> str | None:
        """The code of the newest message to ``phone`` (E.164 or 11 digits), if any."""
        digits = sms.national(phone)
        for message in reversed(self.messages):
            if message.phone == digits:
                return message.code
        return None

    # --- the API --------------------------------------------------------------------------

    def handle(self, *, method: str, path: str, headers: dict[str, str],
               query: list[tuple[str, str]], body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one API call: (HTTP status, JSON body)."""
        request_id = str(uuid.uuid4()).upper()
        refused = self._check_signature(method=method, path=path, headers=headers,
                                        query=query, body=body)
        if refused is not None:
            status, code, message = refused
            return status, {"RequestId": request_id, "HostId": "dysmsapi.aliyuncs.com",
                            "Code": code, "Message": message}
        params = dict(query)
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        code, message, biz_id = self._send(params)
        answer = {"RequestId": request_id, "Code": code, "Message": message}
        if biz_id:
            answer["BizId"] = biz_id
        return 200, answer

    def _check_signature(self, *, method: str, path: str, headers: dict[str, str],
                         query: list[tuple[str, str]], body: bytes
                         ) -> tuple[int, str, str] | None:
        match = _AUTH.fullmatch(headers.get("authorization", "").strip())
        if match is None:
            return 400, "IncompleteSignature", "The request signature does not conform to " \
                                               "Aliyun standards."
        key_id, signed, given = match.groups()
        secret = self.access_keys.get(key_id)
        if secret is None:
            return 404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
        if headers.get("x-acs-action") != sms.SEND_SMS:
            return 404, "InvalidAction.NotFound", "Specified api is not found, please check " \
                                                  "your url and method."
        if headers.get("x-acs-version") != sms.API_VERSION:
            return 400, "InvalidVersion", "Specified parameter Version is not valid."
        try:
            date = dt.datetime.strptime(headers.get("x-acs-date", ""),
                                        "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return 400, "InvalidTimeStamp.Format", "Specified time stamp or date value is " \
                                                   "not well formatted."
        now = self.clock()
        if abs(now - date) > DATE_SKEW:
            return 400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is " \
                                                    "expired."
        payload = hashlib.sha256(body).hexdigest()
        names = sms.signed_header_names(headers)
        if (signed != ";".join(names) or "host" not in names
                or headers.get("x-acs-content-sha256") != payload):
            return 400, "SignatureDoesNotMatch", "Specified signature is not matched with " \
                                                 "our calculation."
        request, _ = sms.canonical_request(
            method=method, path=path, query=sms.canonical_query(dict(query)),
            headers={n: headers[n] for n in names}, payload_sha256=payload)
        if not secrets.compare_digest(sms.signature(secret, request), given):
            return 400, "SignatureDoesNotMatch", "Specified signature is not matched with " \
                                                 "our calculation."
        nonce = headers.get("x-acs-signature-nonce", "")
        with self._lock:
            self._nonces = {n: t for n, t in self._nonces.items() if now - t <= DATE_SKEW}
            if not nonce or nonce in self._nonces:
                return 400, "SignatureNonceUsed", "Specified signature nonce was used already."
            self._nonces[nonce] = now
        return None

    def _send(self, params: dict[str, str]) -> tuple[str, str, str]:
        phone = params.get("PhoneNumbers", "").strip()
        try:
            digits = sms.national(sms.check_phone(phone))
        except InvalidInput:
            return "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号", ""
        sign_name = params.get("SignName", "")
        if sign_name not in self.sign_names:
            return "isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名", ""
        template = self.templates.get(params.get("TemplateCode", ""))
        if template is None:
            return "isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板", ""
        try:
            variables = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            return "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值", ""
        if not isinstance(variables, dict) or not all(
                isinstance(v, str) for v in variables.values()):
            return "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值", ""
        missing = [name for name in _VARIABLE.findall(template) if name not in variables]
        if missing:
            return "isv.TEMPLATE_MISSING_PARAMETERS", "模版缺少变量", ""
        now = self.clock()
        with self._lock:
            sent = [t for t in self._sent_to.get(digits, []) if now - t < FLOW_LIMITS[-1][0]]
            for window, amount in self.flow_limits:
                if sum(1 for t in sent if now - t < window) >= amount:
                    self._sent_to[digits] = sent
                    return ("isv.BUSINESS_LIMIT_CONTROL",
                            f"触发号码流控Permits:{amount}（{_window_name(window)}）", "")
            sent.append(now)
            self._sent_to[digits] = sent
            biz_id = f"{secrets.randbelow(10**15):015d}^0"
            text = f"【{sign_name}】" + _VARIABLE.sub(lambda m: str(variables[m.group(1)]),
                                                     template)
            self._messages.append(ReceivedSms(
                phone=digits, sign_name=sign_name, template_code=params["TemplateCode"],
                params={str(k): str(v) for k, v in variables.items()}, text=text,
                biz_id=biz_id, at=now))
        return "OK", "OK", biz_id


def _window_name(window: dt.timedelta) -> str:
    if window <= dt.timedelta(minutes=1):
        return "分钟级"
    return "小时级" if window <= dt.timedelta(hours=1) else "天级"


# --- the web app ------------------------------------------------------------------------------

_STYLE = """
body{margin:0;background:#f2f2f7;font-family:-apple-system,"PingFang SC","Microsoft YaHei",
sans-serif;color:#1c1c1e}
main{max-width:390px;margin:0 auto;min-height:100vh;padding:16px;box-sizing:border-box}
h1{font-size:18px;margin:8px 0 4px}
.note{color:#8e8e93;font-size:13px;margin:0 0 16px}
.sms{background:#fff;border-radius:14px;padding:12px 14px;margin:0 0 12px}
.meta{color:#8e8e93;font-size:12px;margin:0 0 6px}
.text{font-size:15px;line-height:1.5;margin:0;word-break:break-all}
.code{font-size:22px;font-weight:600;letter-spacing:2px;margin:8px 0 0}
"""


def _inbox(emulator: AliyunSmsEmulator) -> HTMLResponse:
    items = []
    for message in reversed(emulator.messages):
        at = message.at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
        number = f"{message.phone[:3]} {message.phone[3:7]} {message.phone[7:]}"
        code = (f'<p class="code" data-sms-code="{html.escape(message.code)}" '
                f'data-phone="{html.escape(message.phone)}">{html.escape(message.code)}</p>'
                if message.code else "")
        items.append(
            f'<article class="sms" data-sms><p class="meta">{html.escape(number)} · {at}</p>'
            f'<p class="text">{html.escape(message.text)}</p>{code}</article>')
    content = "".join(items) or '<p class="sms">还没有短信。</p>'
    body = ('<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>短信收件箱 - 阿里云短信模拟器</title><style>{_STYLE}</style></head>'
            '<body><main><h1>短信收件箱</h1><p class="note">阿里云短信服务的本地模拟器：'
            '平台发出的验证码短信显示在这里，不会发到真实手机。刷新页面查看新短信。</p>'
            f"{content}</main></body></html>")
    policy = ("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'self'")
    return HTMLResponse(body, headers={"Content-Security-Policy": policy,
                                       "Cache-Control": "no-store"})


def create_app(emulator: AliyunSmsEmulator) -> Starlette:
    """The emulator's web app: the API at ``/`` and its inbox under ``/emulator/``."""

    async def api(request: Request) -> Response:
        body = await request.body()
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        status, answer = emulator.handle(
            method=request.method, path=unquote(raw_path.decode("latin-1")),
            headers={k.lower(): v for k, v in request.headers.items()},
            query=parse_qsl(request.url.query, keep_blank_values=True), body=body)
        return JSONResponse(answer, status_code=status)

    async def inbox(request: Request) -> Response:
        del request
        return _inbox(emulator)

    async def messages(request: Request) -> Response:
        del request
        return JSONResponse([
            {"phone": m.phone, "sign_name": m.sign_name, "template_code": m.template_code,
             "params": m.params, "text": m.text, "biz_id": m.biz_id, "at": m.at.isoformat()}
            for m in reversed(emulator.messages)])

    return Starlette(routes=[
        Route("/", api, methods=["GET", "POST"]),
        Route("/emulator/inbox", inbox, methods=["GET"]),
        Route("/emulator/messages", messages, methods=["GET"]),
    ])


def setup(url: str, *, clock: Callable[[], dt.datetime] = utcnow
          ) -> tuple[AliyunSmsEmulator, sms.AliyunSmsConfig]:
    """An emulator with a fresh AccessKey, and the sender's configuration pointing at ``url``
    (where the emulator's app is served)."""
    key_id = "LTAI" + secrets.token_hex(10)
    secret = secrets.token_urlsafe(24)
    emulator = AliyunSmsEmulator(access_keys={key_id: secret}, clock=clock)
    config = sms.AliyunSmsConfig(access_key_id=key_id, access_key_secret=secret,
                                 sign_name=DEFAULT_SIGN_NAME,
                                 template_code=DEFAULT_TEMPLATE_CODE, endpoint=url)
    return emulator, config
