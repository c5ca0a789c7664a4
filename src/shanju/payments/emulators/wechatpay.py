"""A local emulator of WeChat Pay API v3 in service-provider mode (as stripe-mock is for Stripe).

The production gateway (:class:`shanju.payments.wechatpay.WeChatPayGateway`, the real
``wechatpayv3`` SDK) runs against it unchanged: only the base URL and the keys differ. What it
does, as WeChat Pay does it:

* verifies each request's ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,
  signature=…,timestamp=…,serial_no=…`` with the merchant's public key over
  ``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n`` (401 ``SIGN_ERROR`` otherwise; the URL is the
  path and query *below* the emulator's mount point, so it can be mounted under a prefix);
* signs every answer with the emulated platform key (``Wechatpay-Signature``, ``-Timestamp``,
  ``-Nonce``, ``-Serial`` = the public key id, ``-Signature-Type``);
* partner orders (JSAPI, H5, Native), the partner order query, close, refunds and their query,
  the ALL trade bill (``/v3/bill/tradebill`` → ``download_url`` → a gzip CSV and its SHA1);
* knows which sub-merchants are bound to the service provider (another ``sub_mchid``:
  400 ``INVALID_REQUEST`` 受理关系不存在);
* sends ``TRANSACTION.SUCCESS`` and ``REFUND.*`` callbacks, their resource encrypted with the
  APIv3 key (AEAD_AES_256_GCM) and the body signed, through an
  :class:`~shanju.payments.emulators.outbox.Outbox` (delay, duplicate, hold/reorder, drop).

The payer's side: ``GET /emulator/pay/{token}`` is a phone-sized (390 px) zh-CN page showing
the merchant and the amount (an H5 order's ``h5_url`` and a Native order's ``code_url`` both
lead there); ``POST`` to it pays, sends the callback and redirects to ``redirect_url``. The
``/emulator/…`` JSON control endpoints drive tests and the demo (see :func:`create_app`).

Kept in memory, guarded by one lock (handlers run on uvicorn's loop, callbacks on threads).
Never used in production: nothing here moves money.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import hashlib
import html
import ipaddress
import json
import re
import secrets
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from shanju.core.clock import CHINA_TZ, utcnow
from shanju.payments.emulators.keys import KeyPair, key_pair_in
from shanju.payments.emulators.outbox import Callback, Faults, Outbox
from shanju.payments.wechatpay import (
    ENV_APIV3_KEY,
    ENV_BASE_URL,
    ENV_CERT_SERIAL_NO,
    ENV_PRIVATE_KEY_FILE,
    ENV_PUBLIC_KEY_FILE,
    ENV_PUBLIC_KEY_ID,
    ENV_SP_APPID,
    ENV_SP_MCHID,
    WeChatPayConfig,
    rfc3339,
)

DEFAULT_SP_MCHID = "1900000100"
DEFAULT_SP_APPID = "wx8888888888888888"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
REQUEST_CLOCK_SKEW = dt.timedelta(minutes=5)   # WeChat Pay refuses older request signatures
BILL_LINK_LIFETIME = dt.timedelta(minutes=5)
OUT_TRADE_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
OUT_REFUND_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
OPENID_RE = re.compile(r"^[0-9A-Za-z_-]{1,128}$")
TRADE_TYPES = {"jsapi": "JSAPI", "h5": "MWEB", "native": "NATIVE"}
TRADE_STATE_DESC = {"NOTPAY": "订单未支付", "SUCCESS": "支付成功", "REFUND": "转入退款",
                    "CLOSED": "订单已关闭"}
REFUND_EVENTS = {"SUCCESS": ("REFUND.SUCCESS", "退款成功"),
                 "ABNORMAL": ("REFUND.ABNORMAL", "退款异常"),
                 "CLOSED": ("REFUND.CLOSED", "退款关闭")}
BILL_HEADER = ",".join((
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
    "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
    "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态",
    "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注"))
BILL_SUMMARY_HEADER = ",".join(("总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额",
                                "手续费总金额", "订单总金额", "申请退款总金额"))


# --- keys and configuration ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WeChatPayEmulatorKeys:
    """Everything the emulator and the platform share, generated locally, kept in ``directory``.

    ``merchant``: the service provider's API key pair (the platform signs with its private
    key; the emulator verifies with the public one). ``platform``: WeChat Pay's key pair
    (微信支付公钥; the emulator signs answers and callbacks, the platform verifies).
    """

    directory: Path
    merchant: KeyPair
    platform: KeyPair
    apiv3_key: str = field(repr=False)
    cert_serial_no: str
    public_key_id: str
    sp_mchid: str = DEFAULT_SP_MCHID
    sp_appid: str = DEFAULT_SP_APPID

    @classmethod
    def in_directory(cls, directory: Path, *, sp_mchid: str = DEFAULT_SP_MCHID,
                     sp_appid: str = DEFAULT_SP_APPID) -> WeChatPayEmulatorKeys:
        """The keys kept in ``directory``, generated there on first use (so a demo keeps them)."""
        merchant = key_pair_in(directory, "wechatpay-merchant")
        platform = key_pair_in(directory, "wechatpay-platform")
        apiv3_path = directory / "wechatpay-apiv3.key"
        if not apiv3_path.exists():
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
            apiv3_path.write_text("".join(secrets.choice(alphabet) for _ in range(32)))
            apiv3_path.chmod(0o600)
        # A certificate serial is 40 hex digits; a public key id PUB_KEY_ID_ and 28 digits.
        # Derived from the keys, so the same directory always gives the same identifiers.
        serial = hashlib.sha256(merchant.public_pem.encode()).hexdigest()[:40].upper()
        digits = str(int(hashlib.sha256(platform.public_pem.encode()).hexdigest(), 16))
        return cls(directory=directory, merchant=merchant, platform=platform,
                   apiv3_key=apiv3_path.read_text().strip(), cert_serial_no=serial,
                   public_key_id="PUB_KEY_ID_01" + digits[:26], sp_mchid=sp_mchid,
                   sp_appid=sp_appid)

    def config(self, base_url: str) -> WeChatPayConfig:
        """A ready :class:`WeChatPayConfig` for the platform, talking to ``base_url``."""
        return WeChatPayConfig(
            sp_mchid=self.sp_mchid, sp_appid=self.sp_appid, cert_serial_no=self.cert_serial_no,
            private_key_file=self.directory / "wechatpay-merchant.key.pem",
            apiv3_key=self.apiv3_key,
            public_key_file=self.directory / "wechatpay-platform.pub.pem",
            public_key_id=self.public_key_id, base_url=base_url,
        )

    def environ(self, base_url: str) -> dict[str, str]:
        """The same configuration as the ``SHANJU_WECHATPAY_*`` variables an operator sets
        (what :meth:`WeChatPayConfig.from_env` and the app's gateway registry read)."""
        return {
            ENV_SP_MCHID: self.sp_mchid, ENV_SP_APPID: self.sp_appid,
            ENV_CERT_SERIAL_NO: self.cert_serial_no,
            ENV_PRIVATE_KEY_FILE: str(self.directory / "wechatpay-merchant.key.pem"),
            ENV_APIV3_KEY: self.apiv3_key,
            ENV_PUBLIC_KEY_FILE: str(self.directory / "wechatpay-platform.pub.pem"),
            ENV_PUBLIC_KEY_ID: self.public_key_id, ENV_BASE_URL: base_url,
        }


# --- state -----------------------------------------------------------------------------------


class EmulatorError(Exception):
    """An answer in WeChat Pay's error format: ``{"code": …, "message": …}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ApiFaults:
    """What goes wrong with the next API requests (after their signature is checked)."""

    fail_next: int = 0           # answer this many requests with the error below
    status: int = 500
    code: str = "SYSTEM_ERROR"
    message: str = "系统错误"
    delay: float = 0.0           # seconds before answering each request (a slow provider)


@dataclass(slots=True)
class EmulatedRefund:
    """One refund of an order."""

    out_refund_no: str
    refund_id: str
    amount: int
    reason: str
    notify_url: str | None
    created_at: dt.datetime
    status: str = "PROCESSING"   # PROCESSING → SUCCESS | ABNORMAL | CLOSED
    success_time: dt.datetime | None = None


@dataclass(slots=True)
class EmulatedOrder:
    """One partner order (the fields WeChat Pay keeps and answers with)."""

    sp_appid: str
    sp_mchid: str
    sub_mchid: str
    sub_appid: str | None
    out_trade_no: str
    description: str
    total: int
    attach: str
    notify_url: str
    trade_type: str                      # JSAPI, MWEB (H5), NATIVE
    time_expire: dt.datetime | None
    request: dict[str, Any]              # the creating request, to recognise a repeat
    token: str                           # the payer page's /emulator/pay/{token}
    prepay_id: str
    created_at: dt.datetime
    jsapi_openid: str | None = None      # JSAPI: the payer named at creation
    paid: bool = False
    closed: bool = False
    transaction_id: str | None = None
    success_time: dt.datetime | None = None
    payer_openid: str | None = None      # the payer's sp_openid once paid
    refunds: list[EmulatedRefund] = field(default_factory=list)

    def trade_state(self, now: dt.datetime) -> str:
        """NOTPAY, SUCCESS, REFUND (paid, a refund under way or done) or CLOSED."""
        if self.paid:
            return "REFUND" if any(r.status != "CLOSED" for r in self.refunds) else "SUCCESS"
        if self.closed or (self.time_expire is not None and now > self.time_expire):
            return "CLOSED"
        return "NOTPAY"

    def refundable(self) -> int:
        """What may still be refunded (refunds under way count as spent)."""
        return self.total - sum(r.amount for r in self.refunds if r.status in
                                ("PROCESSING", "SUCCESS", "ABNORMAL"))


# --- the emulator ----------------------------------------------------------------------------


class WeChatPayEmulator:
    """WeChat Pay's state and behaviour; :func:`create_app` serves it over HTTP."""

    def __init__(self, keys: WeChatPayEmulatorKeys, *,
                 sub_merchants: Mapping[str, str] | None = None,
                 outbox: Outbox | None = None,
                 clock: Callable[[], dt.datetime] = utcnow,
                 payer_openid: str | None = None,
                 public_url: str | None = None,
                 fee_rate: Decimal = Decimal("0.006")) -> None:
        self.keys = keys
        self.outbox = outbox or Outbox()
        self.clock = clock
        # Where payers and the SDK reach the emulator; None: the URL each request came to
        # (scheme, Host header and mount point).
        self.public_url = public_url.rstrip("/") if public_url else None
        self.default_openid = payer_openid or "o" + secrets.token_urlsafe(20)[:27]
        self.fee_rate = fee_rate
        self.api_faults = ApiFaults()
        self.refund_mode = "auto"  # "auto": settled SUCCESS at once; "manual": settle_refund()
        self._lock = threading.RLock()
        self._sub_merchants: dict[str, str] = dict(sub_merchants or {})
        self._orders: dict[tuple[str, str], EmulatedOrder] = {}
        self._by_token: dict[str, EmulatedOrder] = {}
        self._by_prepay: dict[str, EmulatedOrder] = {}
        self._refunds: dict[tuple[str, str], EmulatedRefund] = {}
        self._refund_orders: dict[int, EmulatedOrder] = {}
        self._bills: dict[str, tuple[bytes, dt.datetime]] = {}
        self._events: dict[str, Callback] = {}
        self._sequence = 0
        self._merchant_key = _public_key(keys.merchant.public_pem)
        self._platform_key = _private_key(keys.platform.private_pem)

    # -- sub-merchants and faults -------------------------------------------------------------

    def add_sub_merchant(self, sub_mchid: str, name: str) -> None:
        """Bind a sub-merchant (an organization's merchant account) to the service provider."""
        if not re.match(r"^[0-9]{1,32}$", sub_mchid) or not name.strip():
            raise EmulatorError(400, "PARAM_ERROR", "sub_mchid须为数字，name不能为空")
        with self._lock:
            self._sub_merchants[sub_mchid] = name.strip()

    @property
    def sub_merchants(self) -> dict[str, str]:
        """The bound sub-merchants: sub_mchid → name."""
        with self._lock:
            return dict(self._sub_merchants)

    def set_faults(self, *, callbacks: Mapping[str, Any] | None = None,
                   api: Mapping[str, Any] | None = None,
                   refunds: str | None = None) -> dict[str, Any]:
        """Replace the plans given (each from its defaults); the whole plan now in force."""
        if refunds is not None and refunds not in ("auto", "manual"):
            raise EmulatorError(400, "PARAM_ERROR", "refunds须为auto或manual")
        with self._lock:
            try:
                if callbacks is not None:
                    self.outbox.set_faults(**_only(callbacks, Faults))
                if api is not None:
                    self.api_faults = replace(ApiFaults(), **_only(api, ApiFaults))
            except (TypeError, ValueError) as exc:
                raise EmulatorError(400, "PARAM_ERROR", f"故障设置无效: {exc}") from exc
            if refunds is not None:
                self.refund_mode = refunds
            return self.faults()

    def faults(self) -> dict[str, Any]:
        """The fault plans in force (JSON-ready)."""
        out, api = self.outbox.faults, self.api_faults
        return {
            "callbacks": {"delay": out.delay, "duplicates": out.duplicates, "hold": out.hold,
                          "drop": out.drop},
            "api": {"fail_next": api.fail_next, "status": api.status, "code": api.code,
                    "message": api.message, "delay": api.delay},
            "refunds": self.refund_mode,
        }

    def _take_api_fault(self) -> tuple[float, EmulatorError | None]:
        with self._lock:
            faults = self.api_faults
            if faults.fail_next > 0:
                self.api_faults = replace(faults, fail_next=faults.fail_next - 1)
                return faults.delay, EmulatorError(faults.status, faults.code, faults.message)
            return faults.delay, None

    # -- signatures ---------------------------------------------------------------------------

    def verify_request(self, method: str, url: str, body: bytes,
                       authorization: str) -> None:
        """Check a merchant request's signature as WeChat Pay does (EmulatorError 401)."""
        scheme, _, rest = authorization.partition(" ")
        if scheme != SIGNATURE_TYPE:
            raise EmulatorError(401, "SIGN_ERROR", "Authorization头缺失或认证类型不支持")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        timestamp = fields.get("timestamp", "")
        if fields.get("mchid") != self.keys.sp_mchid:
            raise EmulatorError(401, "SIGN_ERROR", "商户号与签名信息不匹配")
        if fields.get("serial_no", "").upper() != self.keys.cert_serial_no.upper():
            raise EmulatorError(401, "SIGN_ERROR", "商户证书序列号有误")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise EmulatorError(401, "SIGN_ERROR", "时间戳格式错误")
        sent = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
        if abs(self.clock() - sent) > REQUEST_CLOCK_SKEW:
            raise EmulatorError(401, "SIGN_ERROR", "请求时间戳已过期")
        message = b"\n".join([method.encode(), url.encode(), timestamp.encode(),
                              fields.get("nonce_str", "").encode(), body]) + b"\n"
        try:
            signature = base64.b64decode(fields.get("signature", ""), validate=True)
            self._merchant_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, CryptoInvalidSignature) as exc:
            raise EmulatorError(401, "SIGN_ERROR", "签名错误") from exc

    def signed_headers(self, body: bytes, *, when: dt.datetime | None = None) -> dict[str, str]:
        """The ``Wechatpay-*`` headers of an answer or callback ``body``, signed now (or when)."""
        timestamp = str(int((when or self.clock()).timestamp()))
        nonce = secrets.token_hex(16).upper()
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = self._platform_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": base64.b64encode(signature).decode(),
            "Wechatpay-Serial": self.keys.public_key_id,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
        }

    def signed_answer(self, status: int, payload: Mapping[str, Any] | None) -> Response:
        """A JSON answer (or an empty one) signed with the platform key."""
        body = b"" if payload is None else _json_bytes(payload)
        headers = self.signed_headers(body) | {"Request-ID": str(uuid.uuid4())}
        media_type = None if payload is None else "application/json; charset=utf-8"
        return Response(body, status_code=status, headers=headers, media_type=media_type)

    # -- orders -------------------------------------------------------------------------------

    def create_order(self, kind: str, data: Mapping[str, Any], base_url: str
                     ) -> dict[str, str]:
        """POST /v3/pay/partner/transactions/{jsapi,h5,native}: the prepay answer."""
        trade_type = TRADE_TYPES.get(kind)
        if trade_type is None:
            raise EmulatorError(404, "NOT_FOUND", "接口不存在")
        sub_mchid = self._check_partner(data)
        out_trade_no = _string(data, "out_trade_no")
        if not OUT_TRADE_NO_RE.match(out_trade_no):
            raise EmulatorError(400, "PARAM_ERROR", "out_trade_no字段格式或长度不正确")
        description = _string(data, "description")
        if len(description.encode()) > 127:
            raise EmulatorError(400, "PARAM_ERROR", "description字段长度超出限制")
        amount = data.get("amount")
        if not isinstance(amount, dict) or type(amount.get("total")) is not int or (
                amount["total"] < 1) or amount.get("currency", "CNY") != "CNY":
            raise EmulatorError(400, "PARAM_ERROR", "amount.total须为正整数（分），币种CNY")
        notify_url = _string(data, "notify_url")
        _check_notify_url(notify_url)
        attach = data.get("attach", "")
        if not isinstance(attach, str) or len(attach) > 128:
            raise EmulatorError(400, "PARAM_ERROR", "attach字段长度超出限制")
        time_expire = None
        if "time_expire" in data:
            time_expire = _rfc3339(data["time_expire"], "time_expire")
        sub_appid = data.get("sub_appid")
        if sub_appid is not None and not (isinstance(sub_appid, str) and sub_appid):
            raise EmulatorError(400, "PARAM_ERROR", "sub_appid字段格式不正确")
        jsapi_openid = None
        if trade_type == "JSAPI":
            payer = data.get("payer")
            if not isinstance(payer, dict):
                raise EmulatorError(400, "PARAM_ERROR", "JSAPI下单须提供payer")
            jsapi_openid = payer.get("sp_openid") or payer.get("sub_openid")
            if not isinstance(jsapi_openid, str) or not OPENID_RE.match(jsapi_openid):
                raise EmulatorError(400, "PARAM_ERROR", "payer.sp_openid与payer.sub_openid"
                                                        "不能同时为空")
            if payer.get("sub_openid") and not sub_appid:
                raise EmulatorError(400, "PARAM_ERROR", "传入sub_openid时sub_appid必填")
        scene = data.get("scene_info")
        if trade_type == "MWEB" or scene is not None:
            if not isinstance(scene, dict) or not _is_ip(scene.get("payer_client_ip")):
                raise EmulatorError(400, "PARAM_ERROR", "scene_info.payer_client_ip字段格式不正确")
            if trade_type == "MWEB" and not (isinstance(scene.get("h5_info"), dict)
                                             and scene["h5_info"].get("type")):
                raise EmulatorError(400, "PARAM_ERROR", "H5下单须提供scene_info.h5_info.type")
        now = self.clock()
        with self._lock:
            order = self._orders.get((sub_mchid, out_trade_no))
            if order is not None:
                state = order.trade_state(now)
                if order.paid:
                    raise EmulatorError(400, "ORDERPAID", "该订单已支付")
                if state == "CLOSED":
                    raise EmulatorError(400, "ORDER_CLOSED", "订单已关闭")
                if order.request != dict(data):
                    raise EmulatorError(403, "OUT_TRADE_NO_USED", "商户订单号重复")
            else:
                self._sequence += 1
                order = EmulatedOrder(
                    sp_appid=self.keys.sp_appid, sp_mchid=self.keys.sp_mchid,
                    sub_mchid=sub_mchid, sub_appid=sub_appid, out_trade_no=out_trade_no,
                    description=description, total=amount["total"], attach=attach,
                    notify_url=notify_url, trade_type=trade_type, time_expire=time_expire,
                    request=dict(data), token=secrets.token_urlsafe(16),
                    prepay_id=f"wx{now.astimezone(CHINA_TZ):%d%H%M%S}{secrets.token_hex(14)}",
                    created_at=now, jsapi_openid=jsapi_openid,
                )
                self._orders[(sub_mchid, out_trade_no)] = order
                self._by_token[order.token] = order
                self._by_prepay[order.prepay_id] = order
        page = f"{base_url}/emulator/pay/{order.token}"
        if trade_type == "MWEB":
            return {"h5_url": f"{page}?prepay_id={order.prepay_id}"}
        if trade_type == "NATIVE":
            # WeChat Pay answers weixin://wxpay/bizpayurl?pr=…, which only WeChat opens; the
            # emulator's code_url is its payer page, so a phone can scan the demo's QR code.
            return {"code_url": page}
        return {"prepay_id": order.prepay_id}

    def query_order(self, out_trade_no: str, query: Mapping[str, str]) -> dict[str, Any]:
        """GET /v3/pay/partner/transactions/out-trade-no/{out_trade_no}?sp_mchid&sub_mchid."""
        sub_mchid = self._check_partner(query)
        with self._lock:
            order = self._orders.get((sub_mchid, out_trade_no))
            if order is None:
                raise EmulatorError(404, "ORDER_NOT_EXIST", "订单不存在")
            return self.transaction(order)

    def query_order_by_id(self, transaction_id: str, query: Mapping[str, str]
                          ) -> dict[str, Any]:
        """GET /v3/pay/partner/transactions/id/{transaction_id}?sp_mchid&sub_mchid."""
        sub_mchid = self._check_partner(query)
        with self._lock:
            for order in self._orders.values():
                if order.sub_mchid == sub_mchid and order.transaction_id == transaction_id:
                    return self.transaction(order)
        raise EmulatorError(404, "ORDER_NOT_EXIST", "订单不存在")

    def close_order(self, out_trade_no: str, data: Mapping[str, Any]) -> None:
        """POST …/out-trade-no/{out_trade_no}/close: 204, or ORDERPAID."""
        sub_mchid = self._check_partner(data, appid=False)
        with self._lock:
            order = self._orders.get((sub_mchid, out_trade_no))
            if order is None:
                raise EmulatorError(404, "ORDER_NOT_EXIST", "订单不存在")
            if order.paid:
                raise EmulatorError(400, "ORDERPAID", "该订单已支付")
            order.closed = True

    def transaction(self, order: EmulatedOrder, *, amount: int | None = None,
                    sub_mchid: str | None = None) -> dict[str, Any]:
        """The order as the partner query and TRANSACTION.SUCCESS callbacks show it."""
        state = order.trade_state(self.clock())
        data: dict[str, Any] = {
            "sp_appid": order.sp_appid, "sp_mchid": order.sp_mchid,
            "sub_mchid": sub_mchid or order.sub_mchid, "out_trade_no": order.out_trade_no,
            "trade_type": order.trade_type, "trade_state": state,
            "trade_state_desc": TRADE_STATE_DESC[state],
            "amount": {"total": order.total if amount is None else amount, "currency": "CNY"},
        }
        if order.sub_appid:
            data["sub_appid"] = order.sub_appid
        if order.attach:
            data["attach"] = order.attach
        if order.paid and order.success_time is not None and order.payer_openid:
            total = data["amount"]["total"]
            data["amount"] |= {"payer_total": total, "payer_currency": "CNY"}
            data |= {"transaction_id": order.transaction_id, "bank_type": "OTHERS",
                     "success_time": rfc3339(order.success_time),
                     "payer": self._payer(order, order.payer_openid),
                     "promotion_detail": []}
        return data

    def _payer(self, order: EmulatedOrder, sp_openid: str) -> dict[str, str]:
        payer = {"sp_openid": sp_openid}
        if order.sub_appid:  # the same person under the sub-merchant's own AppID
            digest = hashlib.sha256(f"{order.sub_appid}:{sp_openid}".encode()).digest()
            payer["sub_openid"] = "o" + base64.urlsafe_b64encode(digest).decode()[:27]
        return payer

    def _check_partner(self, data: Mapping[str, Any], *, appid: bool = True) -> str:
        """The request's sub_mchid, after checking sp_mchid, sp_appid and the binding."""
        if data.get("sp_mchid") != self.keys.sp_mchid:
            raise EmulatorError(400, "PARAM_ERROR", "sp_mchid与请求头中的商户号不一致")
        if appid and "sp_appid" in data and data["sp_appid"] != self.keys.sp_appid:
            raise EmulatorError(400, "APPID_MCHID_NOT_MATCH", "sp_appid和sp_mchid不匹配")
        sub_mchid = data.get("sub_mchid")
        if not isinstance(sub_mchid, str) or not sub_mchid:
            raise EmulatorError(400, "PARAM_ERROR", "sub_mchid不能为空")
        with self._lock:
            if sub_mchid not in self._sub_merchants:
                raise EmulatorError(400, "INVALID_REQUEST", "受理关系不存在")
        return sub_mchid

    # -- paying -------------------------------------------------------------------------------

    def find_order(self, out_trade_no: str, sub_mchid: str | None = None) -> EmulatedOrder:
        """The order numbered ``out_trade_no`` (of ``sub_mchid`` when two share the number)."""
        with self._lock:
            found = [o for (sub, no), o in self._orders.items()
                     if no == out_trade_no and sub_mchid in (None, sub)]
        if not found:
            raise EmulatorError(404, "ORDER_NOT_EXIST", "订单不存在")
        if len(found) > 1:
            raise EmulatorError(409, "PARAM_ERROR", "多个特约商户有此订单号，请指定sub_mchid")
        return found[0]

    def order_by_token(self, token: str) -> EmulatedOrder | None:
        """The order whose payer page is ``/emulator/pay/{token}``."""
        with self._lock:
            return self._by_token.get(token)

    def pay(self, out_trade_no: str, *, sub_mchid: str | None = None,
            openid: str | None = None) -> EmulatedOrder:
        """The payer pays: SUCCESS, then TRANSACTION.SUCCESS through the outbox (once)."""
        order = self.find_order(out_trade_no, sub_mchid)
        if openid is not None and not OPENID_RE.match(openid):
            raise EmulatorError(400, "PARAM_ERROR", "openid格式不正确")
        now = self.clock()
        with self._lock:
            if order.paid:
                return order  # paying twice is refused by WeChat; nothing happens again
            if order.trade_state(now) == "CLOSED":
                raise EmulatorError(400, "ORDER_CLOSED", "订单已关闭")
            if order.jsapi_openid and openid and openid != order.jsapi_openid:
                raise EmulatorError(400, "PARAM_ERROR", "付款人与下单时的openid不一致")
            self._sequence += 1
            order.paid = True
            order.success_time = now
            order.payer_openid = order.jsapi_openid or openid or self.default_openid
            order.transaction_id = (f"4200{self._sequence % 1000000:06d}"
                                    f"{now.astimezone(CHINA_TZ):%Y%m%d}"
                                    f"{secrets.randbelow(10**10):010d}")
            resource = self.transaction(order)
        self._send(self.build_callback(order.notify_url, "TRANSACTION.SUCCESS", "支付成功",
                                  "transaction", resource, kind="payment",
                                  ref=order.out_trade_no))
        return order

    def pay_jsapi(self, params: Mapping[str, Any]) -> EmulatedOrder:
        """WeixinJSBridge getBrandWCPayRequest: check paySign, then pay as the order's payer."""
        names = ("appId", "timeStamp", "nonceStr", "package", "signType", "paySign")
        values = {name: params.get(name) for name in names}
        if not all(isinstance(v, str) and v for v in values.values()):
            raise EmulatorError(400, "PARAM_ERROR", "调起支付参数不完整")
        package = str(values["package"])
        with self._lock:
            order = self._by_prepay.get(package.removeprefix("prepay_id="))
        if order is None or not package.startswith("prepay_id="):
            raise EmulatorError(404, "ORDER_NOT_EXIST", "prepay_id不存在")
        if values["signType"] != "RSA" or values["appId"] not in (order.sp_appid,
                                                                   order.sub_appid):
            raise EmulatorError(400, "PARAM_ERROR", "appId或signType不正确")
        message = "".join(f"{values[n]}\n" for n in ("appId", "timeStamp", "nonceStr",
                                                      "package")).encode()
        try:
            signature = base64.b64decode(str(values["paySign"]), validate=True)
            self._merchant_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, CryptoInvalidSignature) as exc:
            raise EmulatorError(400, "SIGN_ERROR", "支付验证签名失败") from exc
        return self.pay(order.out_trade_no, sub_mchid=order.sub_mchid)

    def notify(self, out_trade_no: str, *, sub_mchid: str | None = None,
               amount_fen: int | None = None, as_sub_mchid: str | None = None) -> str:
        """Send a validly signed TRANSACTION.SUCCESS about an order, saying what a test asks.

        ``amount_fen``: another amount than the order's; ``as_sub_mchid``: another
        sub-merchant than the order's. The order itself does not change. The event id.
        """
        order = self.find_order(out_trade_no, sub_mchid)
        if amount_fen is not None and (type(amount_fen) is not int or amount_fen < 0):
            raise EmulatorError(400, "PARAM_ERROR", "amount_fen须为非负整数")
        now = self.clock()
        with self._lock:
            resource = self.transaction(order, amount=amount_fen, sub_mchid=as_sub_mchid)
            if not order.paid:
                self._sequence += 1
                resource |= {
                    "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
                    "transaction_id": f"4200{self._sequence % 1000000:06d}"
                                      f"{now.astimezone(CHINA_TZ):%Y%m%d}"
                                      f"{secrets.randbelow(10**10):010d}",
                    "bank_type": "OTHERS", "success_time": rfc3339(now),
                    "payer": self._payer(order, order.jsapi_openid or self.default_openid),
                }
        callback = self.build_callback(order.notify_url, "TRANSACTION.SUCCESS", "支付成功",
                                  "transaction", resource, kind="payment",
                                  ref=order.out_trade_no)
        self._send(callback)
        return _event_id(callback)

    # -- refunds ------------------------------------------------------------------------------

    def create_refund(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v3/refund/domestic/refunds: PROCESSING (idempotent per out_refund_no)."""
        sub_mchid = data.get("sub_mchid")
        if not isinstance(sub_mchid, str) or not sub_mchid:
            raise EmulatorError(400, "PARAM_ERROR", "服务商模式下sub_mchid必填")
        with self._lock:
            if sub_mchid not in self._sub_merchants:
                raise EmulatorError(400, "INVALID_REQUEST", "受理关系不存在")
        out_refund_no = _string(data, "out_refund_no")
        if not OUT_REFUND_NO_RE.match(out_refund_no):
            raise EmulatorError(400, "PARAM_ERROR", "out_refund_no字段格式或长度不正确")
        amount = data.get("amount")
        if not isinstance(amount, dict) or type(amount.get("refund")) is not int or type(
                amount.get("total")) is not int or amount["refund"] < 1 or amount.get(
                "currency", "CNY") != "CNY":
            raise EmulatorError(400, "PARAM_ERROR", "amount.refund与amount.total须为正整数（分）")
        notify_url = data.get("notify_url")
        if notify_url is not None:
            _check_notify_url(str(notify_url))
        reason = str(data.get("reason") or "")
        with self._lock:
            order = self._order_for_refund(sub_mchid, data)
            existing = self._refunds.get((sub_mchid, out_refund_no))
            if existing is not None:
                if (self._refund_orders[id(existing)] is not order
                        or existing.amount != amount["refund"]):
                    raise EmulatorError(400, "INVALID_REQUEST",
                                        "同一退款单号对应的订单或金额与之前请求不一致")
                return self.refund_view(order, existing)
            if not order.paid:
                raise EmulatorError(400, "INVALID_REQUEST", "订单未支付，不能退款")
            if amount["total"] != order.total:
                raise EmulatorError(400, "PARAM_ERROR", "订单金额与原订单不一致")
            if amount["refund"] > order.refundable():
                raise EmulatorError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
            self._sequence += 1
            now = self.clock()
            refund = EmulatedRefund(
                out_refund_no=out_refund_no,
                refund_id=f"503{self._sequence % 1000000:06d}{now.astimezone(CHINA_TZ):%Y%m%d}"
                          f"{secrets.randbelow(10**12):012d}",
                amount=amount["refund"], reason=reason,
                notify_url=str(notify_url) if notify_url else None, created_at=now,
            )
            order.refunds.append(refund)
            self._refunds[(sub_mchid, out_refund_no)] = refund
            self._refund_orders[id(refund)] = order
            answer = self.refund_view(order, refund)
        if self.refund_mode == "auto":
            try:
                self.settle_refund(out_refund_no, "SUCCESS", sub_mchid=sub_mchid)
            except EmulatorError:
                pass  # a control call settled it first: the refund was still accepted
        return answer

    def _order_for_refund(self, sub_mchid: str, data: Mapping[str, Any]) -> EmulatedOrder:
        if isinstance(data.get("transaction_id"), str):
            for order in self._orders.values():
                if order.sub_mchid == sub_mchid and order.transaction_id == data[
                        "transaction_id"]:
                    return order
        elif isinstance(data.get("out_trade_no"), str):
            found = self._orders.get((sub_mchid, data["out_trade_no"]))
            if found is not None:
                return found
        else:
            raise EmulatorError(400, "PARAM_ERROR", "transaction_id与out_trade_no不能同时为空")
        raise EmulatorError(404, "RESOURCE_NOT_EXISTS", "订单不存在")

    def query_refund(self, out_refund_no: str, query: Mapping[str, str]) -> dict[str, Any]:
        """GET /v3/refund/domestic/refunds/{out_refund_no}?sub_mchid."""
        sub_mchid = query.get("sub_mchid", "")
        with self._lock:
            if sub_mchid not in self._sub_merchants:
                raise EmulatorError(400, "INVALID_REQUEST", "受理关系不存在")
            refund = self._refunds.get((sub_mchid, out_refund_no))
            if refund is None:
                raise EmulatorError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
            return self.refund_view(self._refund_orders[id(refund)], refund)

    def refund_view(self, order: EmulatedOrder, refund: EmulatedRefund) -> dict[str, Any]:
        """A refund as the refund API answers it."""
        view: dict[str, Any] = {
            "refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
            "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
            "create_time": rfc3339(refund.created_at), "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {"total": order.total, "refund": refund.amount, "payer_total": order.total,
                       "payer_refund": refund.amount, "settlement_total": order.total,
                       "settlement_refund": refund.amount, "discount_refund": 0,
                       "currency": "CNY", "refund_fee": 0, "from": []},
            "promotion_detail": [],
        }
        if refund.success_time is not None:
            view["success_time"] = rfc3339(refund.success_time)
        return view

    def settle_refund(self, out_refund_no: str, status: str = "SUCCESS", *,
                      sub_mchid: str | None = None) -> EmulatedRefund:
        """A PROCESSING refund ends (SUCCESS, ABNORMAL or CLOSED); its callback is sent."""
        if status not in REFUND_EVENTS:
            raise EmulatorError(400, "PARAM_ERROR", "status须为SUCCESS、ABNORMAL或CLOSED")
        with self._lock:
            found = [(r, self._refund_orders[id(r)]) for (sub, no), r in self._refunds.items()
                     if no == out_refund_no and sub_mchid in (None, sub)]
            if len(found) != 1:
                raise EmulatorError(404, "RESOURCE_NOT_EXISTS", "退款单不存在或不唯一")
            refund, order = found[0]
            if refund.status != "PROCESSING":
                raise EmulatorError(400, "INVALID_REQUEST", "退款已处理")
            refund.status = status
            if status == "SUCCESS":
                refund.success_time = self.clock()
            resource: dict[str, Any] = {
                "sp_mchid": order.sp_mchid, "sub_mchid": order.sub_mchid,
                "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
                "refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
                "refund_status": status, "user_received_account": "支付用户零钱",
                "amount": {"total": order.total, "refund": refund.amount,
                           "payer_total": order.total, "payer_refund": refund.amount},
            }
            if refund.success_time is not None:
                resource["success_time"] = rfc3339(refund.success_time)
        if refund.notify_url:
            event_type, summary = REFUND_EVENTS[status]
            self._send(self.build_callback(refund.notify_url, event_type, summary, "refund",
                                      resource, kind="refund", ref=refund.out_refund_no))
        return refund

    # -- callbacks ----------------------------------------------------------------------------

    def build_callback(self, url: str, event_type: str, summary: str, original_type: str,
                  resource: Mapping[str, Any], *, kind: str, ref: str) -> Callback:
        """A notification as WeChat Pay POSTs it: resource encrypted, body signed."""
        now = self.clock()
        nonce = secrets.token_urlsafe(9)[:12]
        ciphertext = AESGCM(self.keys.apiv3_key.encode()).encrypt(
            nonce.encode(), _json_bytes(resource), original_type.encode())
        envelope = {
            "id": str(uuid.uuid4()), "create_time": rfc3339(now),
            "resource_type": "encrypt-resource", "event_type": event_type, "summary": summary,
            "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": base64.b64encode(ciphertext).decode(),
                         "associated_data": original_type, "nonce": nonce},
        }
        body = _json_bytes(envelope)
        headers = {"Content-Type": "application/json"} | self.signed_headers(body, when=now)
        return Callback(url, body, headers, kind=kind, ref=ref)

    def _send(self, callback: Callback) -> None:
        with self._lock:
            self._events[_event_id(callback)] = callback
        self.outbox.send(callback)

    def replay(self, event_id: str, *, age_seconds: int = 0) -> None:
        """Send an earlier notification again (the same body), under the current faults.

        ``age_seconds=0``: the very same bytes and headers, as a network replay would.
        Otherwise the body is signed as of ``age_seconds`` ago: a capture that old.
        """
        with self._lock:
            original = self._events.get(event_id)
        if original is None:
            raise EmulatorError(404, "RESOURCE_NOT_EXISTS", "通知不存在")
        headers = dict(original.headers)
        if age_seconds:
            when = self.clock() - dt.timedelta(seconds=age_seconds)
            headers |= self.signed_headers(original.body, when=when)
        self.outbox.send(Callback(original.url, original.body, headers, kind=original.kind,
                                  ref=original.ref))

    def release(self, *, reverse: bool = False) -> int:
        """Send the held callbacks now (reversed if asked); how many."""
        return self.outbox.release(reverse=reverse)

    def callbacks(self) -> dict[str, list[dict[str, Any]]]:
        """What was sent (each delivery, with the status codes answered), held and dropped."""
        def view(callback: Callback) -> dict[str, Any]:
            envelope = json.loads(callback.body)
            return {"event_id": envelope.get("id"), "event_type": envelope.get("event_type"),
                    "kind": callback.kind, "ref": callback.ref, "url": callback.url,
                    "attempts": list(callback.attempts)}
        return {"sent": [view(c) for c in list(self.outbox.log)],
                "held": [view(c) for c in list(self.outbox.held)],
                "dropped": [view(c) for c in list(self.outbox.dropped)]}

    # -- the trade bill -----------------------------------------------------------------------

    def trade_bill(self, day: dt.date, *, sub_mchid: str | None = None,
                   bill_type: str = "ALL") -> str | None:
        """The day's trade bill (China time) as WeChat Pay writes it; None: nothing that day.

        Payments at their success time, refunds at the time WeChat Pay accepted them, each
        refund a line of its own with its status as of now.
        """
        rows: list[tuple[dt.datetime, list[str]]] = []
        with self._lock:
            for order in self._orders.values():
                if sub_mchid is not None and order.sub_mchid != sub_mchid:
                    continue
                if (bill_type in ("ALL", "SUCCESS") and order.success_time is not None
                        and _china_day(order.success_time) == day):
                    rows.append((order.success_time, self._bill_payment(order)))
                if bill_type in ("ALL", "REFUND"):
                    rows.extend((refund.created_at, self._bill_refund(order, refund))
                                for refund in order.refunds
                                if _china_day(refund.created_at) == day)
        if not rows:
            return None
        rows.sort(key=lambda row: row[0])
        details = [row for _, row in rows]

        def total(column: int) -> Decimal:
            return sum((Decimal(row[column]) for row in details), Decimal(0))

        summary = [str(len(details)), f"{total(12):.2f}", f"{total(16):.2f}", "0.00",
                   f"{total(22):.5f}", f"{total(24):.2f}", f"{total(25):.2f}"]
        lines = [BILL_HEADER, *(",".join("`" + v for v in row) for row in details),
                 BILL_SUMMARY_HEADER, ",".join("`" + v for v in summary)]
        return "\r\n".join(lines) + "\r\n"

    def _bill_payment(self, order: EmulatedOrder) -> list[str]:
        assert order.success_time is not None and order.transaction_id is not None  # noqa: S101
        yuan = _yuan(order.total)
        fee = Decimal(order.total) * self.fee_rate / 100
        return [_bill_time(order.success_time), order.sp_appid, order.sp_mchid, order.sub_mchid,
                "", order.transaction_id, order.out_trade_no, order.payer_openid or "",
                order.trade_type, "SUCCESS", "OTHERS", "CNY", yuan, "0.00", "0", "0", "0.00",
                "0.00", "", "", _bill_text(order.description), _bill_text(order.attach),
                f"{fee:.5f}", f"{self.fee_rate * 100:.2f}%", yuan, "0.00", ""]

    def _bill_refund(self, order: EmulatedOrder, refund: EmulatedRefund) -> list[str]:
        fee = -Decimal(refund.amount) * self.fee_rate / 100
        refunded = _yuan(refund.amount)
        return [_bill_time(refund.created_at), order.sp_appid, order.sp_mchid, order.sub_mchid,
                "", order.transaction_id or "", order.out_trade_no, order.payer_openid or "",
                order.trade_type, "REFUND", "OTHERS", "CNY", "0.00", "0.00", refund.refund_id,
                refund.out_refund_no, refunded, "0.00", "ORIGINAL", refund.status,
                _bill_text(order.description), _bill_text(order.attach), f"{fee:.5f}",
                f"{self.fee_rate * 100:.2f}%", "0.00", refunded, ""]

    def request_bill(self, query: Mapping[str, str], base_url: str) -> dict[str, str]:
        """GET /v3/bill/tradebill: the signed answer naming the download URL and the SHA1."""
        try:
            day = dt.date.fromisoformat(query.get("bill_date", ""))
        except ValueError as exc:
            raise EmulatorError(400, "PARAM_ERROR", "bill_date格式不正确") from exc
        bill_type = query.get("bill_type", "ALL")
        tar_type = query.get("tar_type")
        if bill_type not in ("ALL", "SUCCESS", "REFUND") or tar_type not in (None, "GZIP"):
            raise EmulatorError(400, "PARAM_ERROR", "bill_type或tar_type不正确")
        sub_mchid = query.get("sub_mchid")
        if sub_mchid is not None and sub_mchid not in self.sub_merchants:
            raise EmulatorError(400, "INVALID_REQUEST", "受理关系不存在")
        text = self.trade_bill(day, sub_mchid=sub_mchid, bill_type=bill_type)
        if text is None:
            raise EmulatorError(400, "NO_STATEMENT_EXIST", "账单文件不存在")
        raw = text.encode()
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._bills[token] = (gzip.compress(raw) if tar_type == "GZIP" else raw,
                                  self.clock() + BILL_LINK_LIFETIME)
        return {"hash_type": "SHA1",
                "hash_value": hashlib.sha1(raw, usedforsecurity=False).hexdigest(),
                "download_url": f"{base_url}/v3/billdownload/file?token={token}"}

    def bill_file(self, token: str) -> bytes:
        """GET /v3/billdownload/file?token=…: the file (unsigned, as WeChat Pay serves it)."""
        with self._lock:
            found = self._bills.get(token)
        if found is None or found[1] < self.clock():
            raise EmulatorError(400, "INVALID_REQUEST", "下载链接已失效")
        return found[0]

    # -- views for the control API ------------------------------------------------------------

    def order_view(self, order: EmulatedOrder, base_url: str) -> dict[str, Any]:
        """An order for tests and the demo (JSON-ready)."""
        with self._lock:
            return {
                "out_trade_no": order.out_trade_no, "sub_mchid": order.sub_mchid,
                "trade_type": order.trade_type, "trade_state": order.trade_state(self.clock()),
                "amount_fen": order.total, "description": order.description,
                "transaction_id": order.transaction_id, "payer_openid": order.payer_openid,
                "prepay_id": order.prepay_id, "pay_url": f"{base_url}/emulator/pay/{order.token}",
                "refunds": [{"out_refund_no": r.out_refund_no, "refund_id": r.refund_id,
                             "amount_fen": r.amount, "status": r.status}
                            for r in order.refunds],
            }

    def orders(self) -> list[EmulatedOrder]:
        """Every order, oldest first."""
        with self._lock:
            return sorted(self._orders.values(), key=lambda o: o.created_at)


# --- HTTP ------------------------------------------------------------------------------------

Handler = Callable[[Request, dict[str, Any]], "Response | tuple[int, Mapping[str, Any] | None]"]


def create_app(emulator: WeChatPayEmulator) -> Starlette:
    """The emulator over HTTP: serve it alone or mount it (``app.mount("/wxpay", …)``).

    WeChat Pay's API (signed requests, signed answers):

    * ``POST /v3/pay/partner/transactions/{jsapi|h5|native}``
    * ``GET  /v3/pay/partner/transactions/out-trade-no/{out_trade_no}`` and ``…/id/{id}``
    * ``POST /v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close``
    * ``POST /v3/refund/domestic/refunds``, ``GET /v3/refund/domestic/refunds/{out_refund_no}``
    * ``GET  /v3/bill/tradebill``, ``GET /v3/billdownload/file``

    The payer: ``GET|POST /emulator/pay/{token}``. Control (JSON, unauthenticated: never
    expose the emulator in production): ``GET /emulator/orders``, ``GET /emulator/orders/{no}``,
    ``POST /emulator/orders/{no}/pay`` ``{"openid"?, "sub_mchid"?}``,
    ``POST /emulator/orders/{no}/notify`` ``{"amount_fen"?, "as_sub_mchid"?, "sub_mchid"?}``,
    ``POST /emulator/jsapi/pay`` (the signed JSAPI parameters),
    ``POST /emulator/refunds/{out_refund_no}/settle`` ``{"status", "sub_mchid"?}``,
    ``GET|POST /emulator/faults`` ``{"callbacks"?: {delay, duplicates, hold, drop},
    "api"?: {fail_next, status, code, message, delay}, "refunds"?: "auto"|"manual"}``,
    ``GET /emulator/callbacks``, ``POST /emulator/callbacks/release`` ``{"reverse"?}``,
    ``POST /emulator/callbacks/replay`` ``{"event_id", "age_seconds"?}``,
    ``GET|POST /emulator/sub-merchants`` ``{"sub_mchid", "name"}``.
    """
    e = emulator

    def api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            try:
                e.verify_request(request.method, _signed_url(request), body,
                                 request.headers.get("authorization", ""))
            except EmulatorError as exc:
                return JSONResponse({"code": exc.code, "message": exc.message}, exc.status)
            delay, fault = e._take_api_fault()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if fault is not None:
                    raise fault
                data: dict[str, Any] = {}
                if request.method == "POST" and body:
                    try:
                        parsed = json.loads(body)
                    except ValueError as exc:
                        raise EmulatorError(400, "PARAM_ERROR", "请求体不是合法的JSON") from exc
                    if not isinstance(parsed, dict):
                        raise EmulatorError(400, "PARAM_ERROR", "请求体须为JSON对象")
                    data = parsed
                answer = handler(request, data)
            except EmulatorError as exc:
                return e.signed_answer(exc.status, {"code": exc.code, "message": exc.message})
            if isinstance(answer, Response):
                return answer
            return e.signed_answer(*answer)
        return endpoint

    def control(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            data: dict[str, Any] = {}
            body = await request.body()
            try:
                if body:
                    parsed = json.loads(body)
                    if not isinstance(parsed, dict):
                        raise EmulatorError(400, "PARAM_ERROR", "请求体须为JSON对象")
                    data = parsed
                answer = handler(request, data)
            except ValueError:
                return JSONResponse({"code": "PARAM_ERROR", "message": "请求体不是合法的JSON"},
                                    400)
            except EmulatorError as exc:
                return JSONResponse({"code": exc.code, "message": exc.message}, exc.status)
            if isinstance(answer, Response):
                return answer
            status, payload = answer
            return JSONResponse(payload, status)
        return endpoint

    def query(request: Request) -> dict[str, str]:
        return dict(request.query_params)

    def path(request: Request, name: str) -> str:
        return str(request.path_params[name])

    def create(request: Request, data: dict[str, Any]) -> tuple[int, Mapping[str, Any]]:
        return 200, e.create_order(path(request, "kind"), data, _base_url(e, request))

    def close(request: Request, data: dict[str, Any]) -> tuple[int, None]:
        e.close_order(path(request, "no"), data)
        return 204, None

    def bill_file(request: Request, _: dict[str, Any]) -> Response:
        return Response(e.bill_file(request.query_params.get("token", "")),
                        media_type="application/octet-stream")

    def not_found(_request: Request, _data: dict[str, Any]) -> tuple[int, Mapping[str, Any]]:
        raise EmulatorError(404, "NOT_FOUND", "接口不存在")

    def order_json(request: Request, _: dict[str, Any]) -> tuple[int, Any]:
        order = e.find_order(path(request, "no"), request.query_params.get("sub_mchid"))
        return 200, e.order_view(order, _base_url(e, request))

    def pay_order(request: Request, data: dict[str, Any]) -> tuple[int, Any]:
        order = e.pay(path(request, "no"), sub_mchid=_optional(data, "sub_mchid"),
                      openid=_optional(data, "openid"))
        return 200, e.order_view(order, _base_url(e, request))

    def notify(request: Request, data: dict[str, Any]) -> tuple[int, Any]:
        amount = data.get("amount_fen")
        if amount is not None and type(amount) is not int:
            raise EmulatorError(400, "PARAM_ERROR", "amount_fen须为整数")
        event_id = e.notify(path(request, "no"), sub_mchid=_optional(data, "sub_mchid"),
                            amount_fen=amount, as_sub_mchid=_optional(data, "as_sub_mchid"))
        return 200, {"event_id": event_id}

    def pay_jsapi(request: Request, data: dict[str, Any]) -> tuple[int, Any]:
        return 200, e.order_view(e.pay_jsapi(data), _base_url(e, request))

    def settle(request: Request, data: dict[str, Any]) -> tuple[int, Any]:
        refund = e.settle_refund(path(request, "no"), str(data.get("status", "SUCCESS")),
                                 sub_mchid=_optional(data, "sub_mchid"))
        return 200, {"out_refund_no": refund.out_refund_no, "status": refund.status}

    def faults(request: Request, data: dict[str, Any]) -> tuple[int, Any]:
        if request.method == "GET":
            return 200, e.faults()
        sections = {k: data.get(k) for k in ("callbacks", "api")}
        if any(v is not None and not isinstance(v, dict) for v in sections.values()):
            raise EmulatorError(400, "PARAM_ERROR", "callbacks与api须为JSON对象")
        return 200, e.set_faults(callbacks=sections["callbacks"], api=sections["api"],
                                 refunds=_optional(data, "refunds"))

    def release(_request: Request, data: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"released": e.release(reverse=bool(data.get("reverse", False)))}

    def replay(_request: Request, data: dict[str, Any]) -> tuple[int, Any]:
        age = data.get("age_seconds", 0)
        if type(age) is not int or age < 0:
            raise EmulatorError(400, "PARAM_ERROR", "age_seconds须为非负整数")
        e.replay(str(data.get("event_id", "")), age_seconds=age)
        return 200, {"replayed": data.get("event_id")}

    def sub_merchants(request: Request, data: dict[str, Any]) -> tuple[int, Any]:
        if request.method == "POST":
            e.add_sub_merchant(str(data.get("sub_mchid", "")), str(data.get("name", "")))
        return 200, e.sub_merchants

    def orders(request: Request, _: dict[str, Any]) -> tuple[int, Any]:
        base = _base_url(e, request)
        return 200, [e.order_view(order, base) for order in e.orders()]

    async def pay_page(request: Request) -> Response:
        order = e.order_by_token(path(request, "token"))
        if order is None:
            return _page("订单不存在", "<p>这个付款链接无效或已过期。</p>", status=404)
        redirect_url = request.query_params.get("redirect_url", "")
        if request.method == "GET":
            return _pay_form(e, order, redirect_url)
        form = await request.form()
        redirect_url = str(form.get("redirect_url") or "")
        openid = str(form.get("openid") or "").strip() or None
        try:
            e.pay(order.out_trade_no, sub_mchid=order.sub_mchid, openid=openid)
        except EmulatorError as exc:
            return _page("支付失败", f"<p>{html.escape(exc.message)}</p>", status=409)
        if _is_http_url(redirect_url):
            return RedirectResponse(redirect_url, status_code=303)
        return _page("支付成功", f"<p class=amount>¥{_yuan(order.total)}</p>"
                     f"<p>已付款给 {html.escape(_merchant_name(e, order))}</p>")

    routes = [
        Route("/v3/pay/partner/transactions/out-trade-no/{no}",
              api(lambda r, _: (200, e.query_order(path(r, "no"), query(r)))),
              methods=["GET"]),
        Route("/v3/pay/partner/transactions/out-trade-no/{no}/close", api(close),
              methods=["POST"]),
        Route("/v3/pay/partner/transactions/id/{txn}",
              api(lambda r, _: (200, e.query_order_by_id(path(r, "txn"), query(r)))),
              methods=["GET"]),
        Route("/v3/pay/partner/transactions/{kind}", api(create), methods=["POST"]),
        Route("/v3/refund/domestic/refunds", api(lambda _, d: (200, e.create_refund(d))),
              methods=["POST"]),
        Route("/v3/refund/domestic/refunds/{no}",
              api(lambda r, _: (200, e.query_refund(path(r, "no"), query(r)))),
              methods=["GET"]),
        Route("/v3/bill/tradebill",
              api(lambda r, _: (200, e.request_bill(query(r), _base_url(e, r)))),
              methods=["GET"]),
        Route("/v3/billdownload/file", api(bill_file), methods=["GET"]),
        Route("/v3/{rest:path}", api(not_found), methods=["GET", "POST", "PUT", "PATCH",
                                                          "DELETE"]),
        Route("/emulator/pay/{token}", pay_page, methods=["GET", "POST"]),
        Route("/emulator/orders", control(orders), methods=["GET"]),
        Route("/emulator/orders/{no}", control(order_json), methods=["GET"]),
        Route("/emulator/orders/{no}/pay", control(pay_order), methods=["POST"]),
        Route("/emulator/orders/{no}/notify", control(notify), methods=["POST"]),
        Route("/emulator/jsapi/pay", control(pay_jsapi), methods=["POST"]),
        Route("/emulator/refunds/{no}/settle", control(settle), methods=["POST"]),
        Route("/emulator/faults", control(faults), methods=["GET", "POST"]),
        Route("/emulator/callbacks", control(lambda _, __: (200, e.callbacks())),
              methods=["GET"]),
        Route("/emulator/callbacks/release", control(release), methods=["POST"]),
        Route("/emulator/callbacks/replay", control(replay), methods=["POST"]),
        Route("/emulator/sub-merchants", control(sub_merchants), methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emulator
    return app


# --- the payer's page ------------------------------------------------------------------------

_STYLE = """
body{margin:0;background:#ededed;font-family:-apple-system,"PingFang SC","Microsoft YaHei",
sans-serif;color:#191919}
main{max-width:390px;margin:0 auto;min-height:100vh;background:#fff;padding:24px 20px;
box-sizing:border-box;text-align:center}
.brand{color:#07c160;font-weight:600;margin:0 0 4px}
.note{color:#888;font-size:13px;margin:0 0 28px}
h1{font-size:20px;font-weight:500;margin:0 0 24px}
.merchant{font-size:15px;margin:0 0 6px}
.what{color:#888;font-size:14px;margin:0 0 8px}
.amount{font-size:40px;font-weight:600;margin:8px 0 32px}
button{width:100%;padding:14px;border:0;border-radius:8px;background:#07c160;color:#fff;
font-size:17px}
details{margin-top:24px;text-align:left;color:#888;font-size:13px}
input{width:100%;box-sizing:border-box;padding:8px;margin-top:6px;font-size:14px}
"""


def _page(title: str, content: str, *, status: int = 200,
          form_origin: str | None = None) -> HTMLResponse:
    # The page's own policy (a mounting app keeps headers a route set): its style element,
    # and the form may go on to the merchant's return URL (form-action applies to redirects).
    form_action = "'self'" + (f" {form_origin}" if form_origin else "")
    policy = (f"default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; "
              "base-uri 'none'; frame-ancestors 'self'")
    body = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} - 微信支付</title><style>{_STYLE}</style></head>"
        f'<body><main><p class="brand">微信支付</p>'
        '<p class="note">本地模拟器 · 不会产生真实扣款</p>'
        f"<h1>{html.escape(title)}</h1>{content}</main></body></html>"
    )
    return HTMLResponse(body, status_code=status,
                        headers={"Content-Security-Policy": policy, "Cache-Control": "no-store"})


def _pay_form(e: WeChatPayEmulator, order: EmulatedOrder, redirect_url: str) -> HTMLResponse:
    merchant = html.escape(_merchant_name(e, order))
    amount = f"<p class=amount>¥{_yuan(order.total)}</p>"
    info = (f'<p class="merchant">{merchant}</p>'
            f'<p class="what">{html.escape(order.description)}</p>{amount}')
    state = order.trade_state(e.clock())
    if state != "NOTPAY":
        word = "订单已支付" if order.paid else "订单已关闭"
        return _page(word, info)
    title = "扫码支付" if order.trade_type == "NATIVE" else "确认支付"
    openid = html.escape(order.jsapi_openid or e.default_openid)
    readonly = " readonly" if order.jsapi_openid else ""
    redirect = html.escape(redirect_url) if _is_http_url(redirect_url) else ""
    form = (f'<form method="post">{info}'
            f'<input type="hidden" name="redirect_url" value="{redirect}">'
            '<button type="submit">确认支付</button>'
            "<details><summary>付款人</summary>"
            f'<label>openid<input name="openid" value="{openid}"{readonly}></label></details>'
            "</form>")
    origin = None
    if redirect:
        parts = urlsplit(redirect_url)
        origin = f"{parts.scheme}://{parts.netloc}"
    return _page(title, form, form_origin=origin)


def _merchant_name(e: WeChatPayEmulator, order: EmulatedOrder) -> str:
    return e.sub_merchants.get(order.sub_mchid, order.sub_mchid)


# --- small helpers ---------------------------------------------------------------------------


def _signed_url(request: Request) -> str:
    """The path and query the merchant signed: below the mount point, bytes as sent."""
    scope = request.scope
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    root = str(scope.get("root_path", "")).encode()
    if root and raw.startswith(root):
        raw = raw[len(root):]
    query_string = scope.get("query_string", b"")
    return (raw + (b"?" + query_string if query_string else b"")).decode("latin-1")


def _base_url(e: WeChatPayEmulator, request: Request) -> str:
    """Where this emulator is reached: its public_url, or scheme, Host and mount point."""
    if e.public_url:
        return e.public_url
    host = request.headers.get("host") or "127.0.0.1"
    return f"{request.url.scheme}://{host}{request.scope.get('root_path', '')}"


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _event_id(callback: Callback) -> str:
    return str(json.loads(callback.body)["id"])


def _only(values: Mapping[str, Any], kind: type) -> dict[str, Any]:
    """``values`` if they are all fields of the dataclass ``kind`` (TypeError otherwise)."""
    names = set(getattr(kind, "__dataclass_fields__", {}))
    unknown = set(values) - names
    if unknown:
        raise TypeError("unknown: " + ", ".join(sorted(unknown)))
    return dict(values)


def _optional(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EmulatorError(400, "PARAM_ERROR", f"{key}须为字符串")
    return value


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise EmulatorError(400, "PARAM_ERROR", f"{key}不能为空")
    return value


def _rfc3339(value: Any, name: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise EmulatorError(400, "PARAM_ERROR", f"{name}须为RFC3339格式") from exc
    if moment.tzinfo is None:
        raise EmulatorError(400, "PARAM_ERROR", f"{name}须带时区")
    return moment.astimezone(dt.UTC)


def _check_notify_url(url: str) -> None:
    parts = urlsplit(url)
    # WeChat Pay: an absolute URL that carries no query parameters (https in production;
    # the emulator also takes http so that tests can listen on 127.0.0.1).
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise EmulatorError(400, "PARAM_ERROR", "notify_url格式不正确，不能携带参数")


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise TypeError("not an RSA public key")
    return key


def _private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("not an RSA private key")
    return key


def _china_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(CHINA_TZ).date()


def _bill_time(moment: dt.datetime) -> str:
    return f"{moment.astimezone(CHINA_TZ):%Y-%m-%d %H:%M:%S}"


def _bill_text(text: str) -> str:
    return " ".join(text.split())  # a line of the bill is one line


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


# --- setting it up ---------------------------------------------------------------------------


def setup(base_url: str, key_dir: Path, *, sp_mchid: str = DEFAULT_SP_MCHID,
          sp_appid: str = DEFAULT_SP_APPID, sub_merchants: Mapping[str, str] | None = None,
          outbox: Outbox | None = None, clock: Callable[[], dt.datetime] = utcnow,
          payer_openid: str | None = None, public_url: str | None = None,
          fee_rate: Decimal = Decimal("0.006")) -> tuple[WeChatPayEmulator, WeChatPayConfig]:
    """An emulator and the :class:`WeChatPayConfig` that points the real gateway at it.

    ``base_url`` is where :func:`create_app` (``create_app(emulator)``) will be served, mount
    prefix included (``http://127.0.0.1:8123`` or ``http://127.0.0.1:8000/wxpay``). The keys
    are made once in ``key_dir`` (:meth:`WeChatPayEmulatorKeys.in_directory`: the service
    provider's API key pair, WeChat Pay's key pair and the APIv3 key) and kept, so a demo's
    configuration stays valid. The other arguments are the emulator's
    (:class:`WeChatPayEmulator`).
    """
    keys = WeChatPayEmulatorKeys.in_directory(key_dir, sp_mchid=sp_mchid, sp_appid=sp_appid)
    emulator = WeChatPayEmulator(keys, sub_merchants=sub_merchants, outbox=outbox, clock=clock,
                                 payer_openid=payer_openid, public_url=public_url,
                                 fee_rate=fee_rate)
    return emulator, keys.config(base_url)
