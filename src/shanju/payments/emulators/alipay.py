"""A local emulator of Alipay's open-API gateway (``openapi.alipay.com/gateway.do``).

Like stripe-mock for Stripe: the production gateway (:mod:`shanju.payments.alipay`, with the
real ``python-alipay-sdk``) runs against it unchanged; only the gateway URL and the keys
differ. It speaks Alipay's formats and signs as Alipay does, with locally generated keys:

* ``GET|POST /gateway.do``: the request's RSA2 signature is verified with the platform
  application's public key (over the sorted ``key=value`` pairs without ``sign`` and without
  empty values). Errors found before the caller is authenticated (missing or unknown app_id,
  bad signature, missing parameters) are answered unsigned, as Alipay does; every other answer
  is ``{"<method>_response": {...}, "sign": "..."}`` signed over the exact JSON text of the
  response object with the emulated Alipay private key. ``app_auth_token`` must be one of a
  known merchant (else ``20001 aop.invalid-app-auth-token``); without one, the platform's
  application acts for itself and has no payment product (``40006``).
* Methods: ``alipay.trade.wap.pay`` / ``alipay.trade.page.pay`` (the payer's browser: a
  redirect to the cashier page), ``alipay.trade.precreate`` (``qr_code`` → the same cashier),
  ``alipay.trade.query``, ``alipay.trade.refund``, ``alipay.trade.fastpay.refund.query``,
  ``alipay.data.dataservice.bill.downloadurl.query`` (a zip of GBK CSV files, served at
  ``/downloadBillFile.resource`` for 30 seconds).
* The payer: ``GET /emulator/pay/{token}`` is a phone-sized "支付宝 · 确认付款" page;
  ``POST`` pays (marks the trade TRADE_SUCCESS, sends the notify, redirects the browser to
  return_url with the signed return parameters).
* Asynchronous notifies (``trade_status_sync``: payment, close, refund) go through an
  :class:`~shanju.payments.emulators.outbox.Outbox`: delayed, duplicated, held, reordered or
  dropped as a test asks. An answer other than ``success`` is retried.
* Control endpoints (JSON) under ``/emulator/``: see :func:`create_app` and
  ``docs/payments-alipay.md``.

Trades, refunds and notifies are kept in memory (one lock). The clock can be set, so bills of
a given day and notifies of a given time need no real date. Never used in production: the
control endpoints are not authenticated.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import json
import secrets
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import requests
from cryptography.exceptions import InvalidSignature as BadSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from shanju.core.clock import CHINA_TZ, utcnow
from shanju.payments.alipay import AlipayConfig
from shanju.payments.emulators.keys import key_pair_in
from shanju.payments.emulators.outbox import Callback, Outbox
from shanju.payments.gateway import MerchantRoute

WIRE_TIME = "%Y-%m-%d %H:%M:%S"
BILL_LINK_SECONDS = 30.0  # Alipay: "获取连接后30秒后未下载，链接地址失效"
MAX_FEN = 10_000_000_000
ANSWER_TYPE = "text/html;charset=utf-8"  # what openapi.alipay.com labels its JSON answers
TRADE_METHODS = ("alipay.trade.wap.pay", "alipay.trade.page.pay")
API_METHODS = ("alipay.trade.precreate", "alipay.trade.query", "alipay.trade.refund",
               "alipay.trade.fastpay.refund.query",
               "alipay.data.dataservice.bill.downloadurl.query")
FAULT_KINDS = ("busy", "system_error", "slow", "bad_sign", "http_500")


class EmulatorError(Exception):
    """A control request the emulator cannot follow (answered 400/404/409 JSON)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _fen(value: object) -> int | None:
    """An amount of biz_content in fen (Alipay takes "12.34" or 12.34), None if not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        return None
    return int(amount * 100)


def _cn(moment: dt.datetime) -> str:
    return moment.astimezone(CHINA_TZ).strftime(WIRE_TIME)


@dataclass(slots=True)
class Merchant:
    """A merchant that authorized the platform's application (第三方应用授权)."""

    pid: str            # 2088 + 12 digits: seller_id
    auth_token: str     # the app_auth_token it granted
    name: str           # shown on the cashier page
    auth_app_id: str    # the merchant's own application id: auth_app_id in notifies
    email: str = ""

    def route(self) -> MerchantRoute:
        """The platform's route to this merchant (what an organization configures)."""
        return MerchantRoute(provider="alipay", merchant_id=self.pid, auth_token=self.auth_token)


@dataclass(slots=True)
class Refund:
    out_request_no: str
    amount_fen: int
    at: dt.datetime
    reason: str = ""


@dataclass(slots=True)
class Trade:
    merchant: Merchant
    out_trade_no: str
    trade_no: str
    total_fen: int
    subject: str
    method: str
    notify_url: str
    return_url: str
    passback_params: str
    expires_at: dt.datetime | None
    created_at: dt.datetime
    token: str
    status: str = "WAIT_BUYER_PAY"
    # A wap/page trade exists at Alipay once the payer is in the cashier; precreate at once.
    opened: bool = False
    paid_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    buyer_id: str = ""
    buyer_logon_id: str = ""
    refunds: dict[str, Refund] = field(default_factory=dict)

    @property
    def refunded_fen(self) -> int:
        return sum(r.amount_fen for r in self.refunds.values())


@dataclass(frozen=True, slots=True)
class SentNotify:
    """A notify the emulator built (sent, held, dropped, or replayed later)."""

    notify_id: str
    kind: str                 # payment / close / refund / forged
    out_trade_no: str
    fields: dict[str, str]
    callback: Callback


@dataclass(slots=True)
class ApiFault:
    """What goes wrong with the next API answers (``times`` of them; ``method`` or all)."""

    kind: str
    method: str | None = None
    times: int = 1
    seconds: float = 0.0


class _Answer:
    """What ``/gateway.do`` answers: signed or unsigned JSON, an HTML page, or a redirect."""

    def __init__(self, response: Response) -> None:
        self.response = response


class AlipayEmulator:
    """The emulated Alipay: keys, merchants, trades, notifies, faults and its clock."""

    def __init__(self, *, app_id: str, app_public_key_pem: str, alipay_private_key_pem: str,
                 outbox: Outbox | None = None, buyer_id: str | None = None,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.app_id = app_id
        app_key = serialization.load_pem_public_key(app_public_key_pem.encode())
        alipay_key = serialization.load_pem_private_key(alipay_private_key_pem.encode(), None)
        if not isinstance(app_key, rsa.RSAPublicKey) or not isinstance(
                alipay_key, rsa.RSAPrivateKey):
            raise ValueError("the emulator needs RSA keys")
        self._app_key: rsa.RSAPublicKey = app_key
        self._alipay_key: rsa.RSAPrivateKey = alipay_key
        self.outbox = outbox or Outbox(post=alipay_post)
        self.buyer_id = buyer_id  # None: a new buyer for every payment
        self._clock = clock
        self._fixed_now: dt.datetime | None = None
        self._lock = threading.RLock()
        self.merchants: dict[str, Merchant] = {}          # by app_auth_token
        self.trades: dict[tuple[str, str], Trade] = {}    # by (pid, out_trade_no)
        self._by_token: dict[str, Trade] = {}
        self.notifies: list[SentNotify] = []
        self.api_faults: list[ApiFault] = []
        self._bill_links: dict[str, tuple[float, str, str, bytes]] = {}

    # -- time ---------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        """The emulator's time (aware UTC): its clock, or the time a test set."""
        with self._lock:
            return self._fixed_now or self._clock()

    def set_now(self, moment: dt.datetime | None) -> None:
        """Stop the emulator's clock at ``moment`` (aware), or let it run again (None)."""
        if moment is not None and moment.tzinfo is None:
            raise ValueError("an aware datetime is needed")
        with self._lock:
            self._fixed_now = moment

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        """Move the stopped clock forward (stopping it now if it runs); the new time."""
        with self._lock:
            self._fixed_now = self.now() + delta
            return self._fixed_now

    # -- merchants ------------------------------------------------------------------------

    def add_merchant(self, name: str, *, pid: str | None = None,
                     auth_token: str | None = None) -> Merchant:
        """A merchant that authorized the platform's application."""
        with self._lock:
            moment = self.now().astimezone(CHINA_TZ)
            merchant = Merchant(
                pid=pid or "2088" + _digits(12),
                auth_token=auth_token or f"{moment:%Y%m}BB{secrets.token_hex(15)}X07",
                name=name, auth_app_id="2021" + _digits(12),
                email=f"merchant{_digits(4)}@example.org")
            if merchant.auth_token in self.merchants:
                raise EmulatorError("that app_auth_token is taken", 409)
            self.merchants[merchant.auth_token] = merchant
            return merchant

    # -- signatures -----------------------------------------------------------------------

    def sign(self, content: str) -> str:
        """Alipay's RSA2 signature of ``content`` (SHA256withRSA, base64)."""
        raw = self._alipay_key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode()

    def sign_fields(self, fields: Mapping[str, str]) -> dict[str, str]:
        """Notify/return fields with Alipay's ``sign`` (over every field but sign, sign_type)."""
        content = "&".join(f"{k}={v}" for k, v in sorted(fields.items())
                           if k not in ("sign", "sign_type"))
        return {**fields, "sign_type": "RSA2", "sign": self.sign(content)}

    def _request_signed(self, params: Mapping[str, str]) -> tuple[bool, str]:
        content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v)
        try:
            signature = base64.b64decode(params.get("sign", ""), validate=True)
            self._app_key.verify(signature, content.encode(), padding.PKCS1v15(), hashes.SHA256())
        except (BadSignature, ValueError):
            return False, content
        return True, content

    # -- answers --------------------------------------------------------------------------

    def _unsigned(self, key: str, code: str, msg: str, sub_code: str, sub_msg: str) -> _Answer:
        body = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        text = json.dumps({key: body}, ensure_ascii=False, separators=(",", ":"))
        return _Answer(Response(text, media_type=ANSWER_TYPE))

    def _signed(self, key: str, body: Mapping[str, Any], *, bad_sign: bool = False) -> _Answer:
        inner = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        signature = self.sign(inner)
        if bad_sign:  # a fault: what a man in the middle would produce
            signature = self.sign(inner + " ")
        text = f'{{"{key}":{inner},"sign":"{signature}"}}'
        return _Answer(Response(text, media_type=ANSWER_TYPE))

    @staticmethod
    def _business(sub_code: str, sub_msg: str) -> dict[str, str]:
        return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code,
                "sub_msg": sub_msg}

    # -- the gateway ----------------------------------------------------------------------

    def gateway(self, params: dict[str, str], base_url: str) -> _Answer:
        """Answer one call of ``/gateway.do`` (``base_url``: where this emulator is served)."""
        method = params.get("method", "")
        known = method in TRADE_METHODS or method in API_METHODS
        key = method.replace(".", "_") + "_response" if known else "error_response"
        if not method:
            return self._unsigned(key, "40001", "Missing Required Arguments",
                                  "isv.missing-method", "缺少方法名参数")
        if not known:
            return self._unsigned(key, "40002", "Invalid Arguments", "isv.invalid-method",
                                  "不存在的方法名")
        if not params.get("app_id"):
            return self._unsigned(key, "40001", "Missing Required Arguments",
                                  "isv.missing-app-id", "缺少AppID参数")
        if params["app_id"] != self.app_id:
            return self._unsigned(key, "40002", "Invalid Arguments", "isv.invalid-app-id",
                                  "无效的AppID参数")
        if not params.get("sign"):
            return self._unsigned(key, "40001", "Missing Required Arguments",
                                  "isv.missing-signature", "缺少签名参数")
        if params.get("sign_type") != "RSA2":
            return self._unsigned(key, "40002", "Invalid Arguments",
                                  "isv.invalid-signature-type", "无效签名类型")
        signed, content = self._request_signed(params)
        if not signed:
            return self._unsigned(
                key, "40002", "Invalid Arguments", "isv.invalid-signature",
                "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："
                + content)
        for name, sub_code, sub_msg in (
                ("timestamp", "isv.missing-timestamp", "缺少时间戳参数"),
                ("version", "isv.missing-version", "缺少版本参数"),
                ("biz_content", "isv.missing-biz-content", "缺少业务参数")):
            if not params.get(name):
                return self._unsigned(key, "40001", "Missing Required Arguments", sub_code,
                                      sub_msg)
        if params.get("charset", "utf-8").lower() != "utf-8":
            return self._unsigned(key, "40002", "Invalid Arguments", "isv.invalid-charset",
                                  "字符集不合法")
        try:
            dt.datetime.strptime(params["timestamp"], WIRE_TIME).replace(tzinfo=CHINA_TZ)
            biz = json.loads(params["biz_content"])
            if not isinstance(biz, dict):
                raise ValueError("biz_content")
        except ValueError:
            return self._unsigned(key, "40002", "Invalid Arguments", "isv.invalid-parameter",
                                  "参数无效")
        fault = self._take_fault(method)
        if fault is not None:
            if fault.kind == "slow":
                time.sleep(fault.seconds)
            elif fault.kind == "http_500":
                return _Answer(Response("Internal Server Error", status_code=500))
            elif fault.kind == "busy":
                return self._signed(key, {"code": "20000", "msg": "Service Currently Unavailable",
                                          "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"})
            elif fault.kind == "system_error":
                return self._signed(key, self._business("ACQ.SYSTEM_ERROR", "系统错误"))
        token = params.get("app_auth_token", "")
        with self._lock:
            merchant = self.merchants.get(token)
        if not token:
            body: dict[str, Any] = {
                "code": "40006", "msg": "Insufficient Permissions",
                "sub_code": "isv.insufficient-isv-permissions",
                "sub_msg": "ISV权限不足，建议在开发者中心检查签约是否已经生效"}
        elif merchant is None:
            body = {"code": "20001", "msg": "Insufficient Token Permissions",
                    "sub_code": "aop.invalid-app-auth-token", "sub_msg": "无效的应用授权令牌"}
        else:
            if method in TRADE_METHODS:
                return self._cashier(method, params, biz, merchant, base_url)
            handler = {
                "alipay.trade.precreate": self._precreate,
                "alipay.trade.query": self._query,
                "alipay.trade.refund": self._refund,
                "alipay.trade.fastpay.refund.query": self._refund_query,
                "alipay.data.dataservice.bill.downloadurl.query": self._bill_url,
            }[method]
            body = handler(params, biz, merchant, base_url)
        if method in TRADE_METHODS:  # the payer's browser: Alipay shows an error page
            return _Answer(_error_page(body))
        return self._signed(key, body, bad_sign=fault is not None and fault.kind == "bad_sign")

    def _take_fault(self, method: str) -> ApiFault | None:
        with self._lock:
            for fault in self.api_faults:
                if fault.method in (None, method) and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.api_faults.remove(fault)
                    return fault
        return None

    def _open_trade(self, method: str, params: Mapping[str, str], biz: Mapping[str, Any],
                    merchant: Merchant) -> Trade | dict[str, str]:
        """The trade of this order (new, or the same one again), or a business error."""
        out_trade_no = str(biz.get("out_trade_no") or "")
        subject = str(biz.get("subject") or "")
        total = _fen(biz.get("total_amount"))
        product = biz.get("product_code")
        allowed = {"alipay.trade.wap.pay": ("QUICK_WAP_WAY", "QUICK_WAP_PAY"),
                   "alipay.trade.page.pay": ("FAST_INSTANT_TRADE_PAY",),
                   "alipay.trade.precreate": (None, "FACE_TO_FACE_PAYMENT")}[method]
        if not out_trade_no or len(out_trade_no) > 64 or not subject or total is None:
            return self._business("ACQ.INVALID_PARAMETER", "参数无效")
        if product not in allowed:
            return self._business("ACQ.INVALID_PARAMETER", "product_code 无效")
        if not 1 <= total <= MAX_FEN:
            return self._business("ACQ.TOTAL_FEE_EXCEED", "订单金额超过限额")
        expires_at = None
        if biz.get("time_expire"):
            try:
                expires_at = dt.datetime.strptime(str(biz["time_expire"]), WIRE_TIME).replace(
                    tzinfo=CHINA_TZ).astimezone(dt.UTC)
            except ValueError:
                return self._business("ACQ.INVALID_PARAMETER", "time_expire 格式错误")
        with self._lock:
            trade = self.trades.get((merchant.pid, out_trade_no))
            if trade is not None:
                self._expire(trade)
                if trade.total_fen != total or trade.subject != subject:
                    return self._business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
                if trade.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                    return self._business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
                if trade.status == "TRADE_CLOSED":
                    return self._business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
                return trade
            now = self.now()
            trade = Trade(
                merchant=merchant, out_trade_no=out_trade_no,
                trade_no=f"{now.astimezone(CHINA_TZ):%Y%m%d}22001{_digits(15)}",
                total_fen=total, subject=subject, method=method,
                notify_url=params.get("notify_url", ""), return_url=params.get("return_url", ""),
                passback_params=str(biz.get("passback_params") or ""), expires_at=expires_at,
                created_at=now, token=secrets.token_urlsafe(18),
                opened=method == "alipay.trade.precreate")
            self.trades[(merchant.pid, out_trade_no)] = trade
            self._by_token[trade.token] = trade
            return trade

    def _cashier(self, method: str, params: Mapping[str, str], biz: Mapping[str, Any],
                 merchant: Merchant, base_url: str) -> _Answer:
        trade = self._open_trade(method, params, biz, merchant)
        if isinstance(trade, dict):
            return _Answer(_error_page(trade))
        return _Answer(RedirectResponse(f"{base_url}emulator/pay/{trade.token}", 302))

    def _precreate(self, params: Mapping[str, str], biz: Mapping[str, Any], merchant: Merchant,
                   base_url: str) -> dict[str, Any]:
        trade = self._open_trade("alipay.trade.precreate", params, biz, merchant)
        if isinstance(trade, dict):
            return trade
        return {"code": "10000", "msg": "Success", "out_trade_no": trade.out_trade_no,
                "qr_code": f"{base_url}emulator/pay/{trade.token}"}

    def _find(self, merchant: Merchant, biz: Mapping[str, Any]) -> Trade | None:
        with self._lock:
            trade = None
            if biz.get("out_trade_no"):
                trade = self.trades.get((merchant.pid, str(biz["out_trade_no"])))
            elif biz.get("trade_no"):
                trade = next((t for t in self.trades.values()
                              if t.merchant is merchant and t.trade_no == biz["trade_no"]), None)
            if trade is None or not trade.opened:
                return None
            self._expire(trade)
            return trade

    def _query(self, params: Mapping[str, str], biz: Mapping[str, Any], merchant: Merchant,
               base_url: str) -> dict[str, Any]:
        del params, base_url
        trade = self._find(merchant, biz)
        if trade is None:
            return self._business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        with self._lock:
            body: dict[str, Any] = {
                "code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no, "trade_status": trade.status,
                "total_amount": _yuan(trade.total_fen)}
            if trade.paid_at is not None:
                body.update({
                    "buyer_logon_id": trade.buyer_logon_id, "buyer_user_id": trade.buyer_id,
                    "buyer_pay_amount": _yuan(trade.total_fen), "point_amount": "0.00",
                    "invoice_amount": _yuan(trade.total_fen),
                    "receipt_amount": _yuan(trade.total_fen),
                    "send_pay_date": _cn(trade.paid_at),
                    "fund_bill_list": [{"amount": _yuan(trade.total_fen),
                                        "fund_channel": "ALIPAYACCOUNT"}]})
            return body

    def _refund(self, params: Mapping[str, str], biz: Mapping[str, Any], merchant: Merchant,
                base_url: str) -> dict[str, Any]:
        del params, base_url
        amount = _fen(biz.get("refund_amount"))
        if amount is None or amount <= 0:
            return self._business("ACQ.INVALID_PARAMETER", "refund_amount 无效")
        trade = self._find(merchant, biz)
        if trade is None:
            return self._business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        with self._lock:
            # Without out_request_no, the refund's number is the trade's out_trade_no.
            number = str(biz.get("out_request_no") or trade.out_trade_no)
            existing = trade.refunds.get(number)
            if existing is not None:
                if existing.amount_fen != amount:
                    return self._business("ACQ.INVALID_PARAMETER",
                                          "同一退款请求号的退款金额不一致")
                return self._refund_answer(trade, fund_change="N")
            if trade.paid_at is None or trade.status not in ("TRADE_SUCCESS", "TRADE_CLOSED"):
                return self._business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            if trade.refunded_fen + amount > trade.total_fen:
                return self._business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            now = self.now()
            trade.refunds[number] = Refund(number, amount, now, str(biz.get("refund_reason", "")))
            extra = {"refund_fee": _yuan(trade.refunded_fen), "gmt_refund": _cn(now) + ".000",
                     "out_biz_no": number}
            if trade.refunded_fen == trade.total_fen:
                trade.status = "TRADE_CLOSED"
                trade.closed_at = now
                extra["gmt_close"] = _cn(now)
            self._notify(trade, "refund", extra)
            return self._refund_answer(trade, fund_change="Y")

    @staticmethod
    def _refund_answer(trade: Trade, *, fund_change: str) -> dict[str, Any]:
        return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no, "buyer_logon_id": trade.buyer_logon_id,
                "buyer_user_id": trade.buyer_id, "fund_change": fund_change,
                "refund_fee": _yuan(trade.refunded_fen)}

    def _refund_query(self, params: Mapping[str, str], biz: Mapping[str, Any],
                      merchant: Merchant, base_url: str) -> dict[str, Any]:
        del params, base_url
        trade = self._find(merchant, biz)
        if trade is None:
            return self._business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        with self._lock:
            refund = trade.refunds.get(str(biz.get("out_request_no") or ""))
            body: dict[str, Any] = {"code": "10000", "msg": "Success"}
            if refund is not None:  # an unknown refund: success, and no refund fields
                body.update({
                    "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                    "out_request_no": refund.out_request_no,
                    "total_amount": _yuan(trade.total_fen),
                    "refund_amount": _yuan(refund.amount_fen), "refund_status": "REFUND_SUCCESS"})
            return body

    # -- notifies -------------------------------------------------------------------------

    def _notify_fields(self, trade: Trade, extra: Mapping[str, str]) -> dict[str, str]:
        fields = {
            "notify_time": _cn(self.now()), "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(17), "charset": "utf-8", "version": "1.0",
            "app_id": self.app_id, "auth_app_id": trade.merchant.auth_app_id,
            "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
            "seller_id": trade.merchant.pid, "seller_email": trade.merchant.email,
            "trade_status": trade.status, "total_amount": _yuan(trade.total_fen),
            "subject": trade.subject, "gmt_create": _cn(trade.created_at)}
        if trade.paid_at is not None:
            paid = _yuan(trade.total_fen)
            fields.update({
                "buyer_id": trade.buyer_id, "buyer_logon_id": trade.buyer_logon_id,
                "gmt_payment": _cn(trade.paid_at), "receipt_amount": paid,
                "invoice_amount": paid, "buyer_pay_amount": paid, "point_amount": "0.00",
                "fund_bill_list": json.dumps([{"amount": paid, "fundChannel": "ALIPAYACCOUNT"}],
                                             separators=(",", ":"))})
        if trade.closed_at is not None:
            fields["gmt_close"] = _cn(trade.closed_at)
        if trade.passback_params:
            fields["passback_params"] = trade.passback_params
        fields.update(extra)
        return fields

    def _notify(self, trade: Trade, kind: str, extra: Mapping[str, str] | None = None) -> None:
        """Sign and send a trade_status_sync notify to the trade's notify_url (if any)."""
        if not trade.notify_url:
            return
        fields = self.sign_fields(self._notify_fields(trade, extra or {}))
        self._send(SentNotify(fields["notify_id"], kind, trade.out_trade_no, fields, Callback(
            url=trade.notify_url, body=urlencode(fields).encode(), kind=kind,
            ref=trade.out_trade_no,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})))

    def _send(self, notify: SentNotify) -> None:
        with self._lock:
            self.notifies.append(notify)
        self.outbox.send(notify.callback)

    def _expire(self, trade: Trade) -> None:
        """Close an unpaid trade past its time_expire (and say so, as Alipay does)."""
        if (trade.status == "WAIT_BUYER_PAY" and trade.expires_at is not None
                and self.now() >= trade.expires_at):
            trade.status = "TRADE_CLOSED"
            trade.closed_at = self.now()
            if trade.opened:
                self._notify(trade, "close")

    # -- the payer and the controls -------------------------------------------------------

    def trade_by_token(self, token: str) -> Trade | None:
        """The trade a cashier link is for (opening it makes a wap/page trade exist)."""
        with self._lock:
            trade = self._by_token.get(token)
            if trade is not None:
                trade.opened = True
                self._expire(trade)
            return trade

    def find_trade(self, out_trade_no: str, pid: str | None = None) -> Trade:
        """The trade ``out_trade_no`` (of merchant ``pid`` when several have one)."""
        with self._lock:
            found = [t for (p, number), t in self.trades.items()
                     if number == out_trade_no and pid in (None, p)]
        if not found:
            raise EmulatorError("no such trade", 404)
        if len(found) > 1:
            raise EmulatorError("several merchants have that out_trade_no: give pid", 409)
        return found[0]

    def pay(self, trade: Trade, *, buyer_id: str | None = None) -> dict[str, str]:
        """The payer pays: TRADE_SUCCESS, the notify, and the signed return parameters."""
        with self._lock:
            self._expire(trade)
            if trade.status != "WAIT_BUYER_PAY":
                raise EmulatorError(f"the trade is {trade.status}", 409)
            trade.opened = True
            trade.status = "TRADE_SUCCESS"
            trade.paid_at = self.now()
            trade.buyer_id = buyer_id or self.buyer_id or "2088" + _digits(12)
            trade.buyer_logon_id = f"138****{_digits(4)}"
            self._notify(trade, "payment")
            return self.sign_fields({
                "charset": "utf-8", "out_trade_no": trade.out_trade_no,
                "method": trade.method + ".return", "total_amount": _yuan(trade.total_fen),
                "trade_no": trade.trade_no, "auth_app_id": trade.merchant.auth_app_id,
                "version": "1.0", "app_id": self.app_id, "seller_id": trade.merchant.pid,
                "timestamp": _cn(self.now())})

    def replay(self, notify_id: str) -> SentNotify:
        """Send an earlier notify again, unchanged (same notify_id, notify_time, signature)."""
        with self._lock:
            found = next((n for n in self.notifies if n.notify_id == notify_id), None)
        if found is None:
            raise EmulatorError("no such notify", 404)
        self.outbox.send(found.callback)
        return found

    def forge(self, trade: Trade, *, total_amount: str | None = None,
              seller_id: str | None = None, app_id: str | None = None) -> SentNotify:
        """A notify of ``trade`` that Alipay signs but that says something else: another
        amount, another seller, another application (what the platform must refuse)."""
        with self._lock:
            fields = self._notify_fields(trade, {})
            if total_amount is not None:
                fields["total_amount"] = total_amount
            if seller_id is not None:
                fields["seller_id"] = seller_id
            if app_id is not None:
                fields["app_id"] = app_id
            fields = self.sign_fields(fields)
            notify = SentNotify(fields["notify_id"], "forged", trade.out_trade_no, fields,
                                Callback(url=trade.notify_url, body=urlencode(fields).encode(),
                                         kind="forged", ref=trade.out_trade_no,
                                         headers={"Content-Type": "application/x-www-form-"
                                                  "urlencoded; charset=utf-8"}))
        self._send(notify)
        return notify

    # -- bills ----------------------------------------------------------------------------

    def _bill_url(self, params: Mapping[str, str], biz: Mapping[str, Any], merchant: Merchant,
                  base_url: str) -> dict[str, Any]:
        del params
        try:
            day = dt.date.fromisoformat(str(biz.get("bill_date", "")))
        except ValueError:
            return self._business("isv.invalid-arguments", "入参不合法")
        if biz.get("bill_type") != "trade":
            return self._business("isv.invalid-arguments", "入参不合法")
        if day >= self.now().astimezone(CHINA_TZ).date():  # a day's bill exists the day after
            return self._business("isp.bill_not_exist", "账单不存在")
        data = self.bill_zip(merchant, day)
        file_id = secrets.token_hex(12)
        with self._lock:
            self._bill_links[file_id] = (time.monotonic() + BILL_LINK_SECONDS, merchant.pid,
                                         day.isoformat(), data)
        query = urlencode({"bizType": "trade", "userId": merchant.pid, "fileType": "csv.zip",
                           "bizDates": f"{day:%Y%m%d}",
                           "downloadFileName": f"{merchant.pid}_{day:%Y%m%d}.csv.zip",
                           "fileId": file_id})
        return {"code": "10000", "msg": "Success",
                "bill_download_url": f"{base_url}downloadBillFile.resource?{query}"}

    def bill_file(self, file_id: str) -> bytes | None:
        """The zip behind a bill link, while the link lives (30 seconds)."""
        with self._lock:
            found = self._bill_links.get(file_id)
            if found is None or found[0] < time.monotonic():
                self._bill_links.pop(file_id, None)
                return None
            return found[3]

    def bill_rows(self, merchant: Merchant, day: dt.date) -> list[list[str]]:
        """The business detail rows of ``merchant`` on ``day`` (China time), oldest first."""
        rows: list[tuple[dt.datetime, list[str]]] = []
        with self._lock:
            for trade in self.trades.values():
                if trade.merchant is not merchant or trade.paid_at is None:
                    continue
                if trade.paid_at.astimezone(CHINA_TZ).date() == day:
                    rows.append((trade.paid_at, _bill_row(trade, "交易", trade.total_fen,
                                                          trade.paid_at, "")))
                for refund in trade.refunds.values():
                    if refund.at.astimezone(CHINA_TZ).date() == day:
                        rows.append((refund.at, _bill_row(trade, "退款", -refund.amount_fen,
                                                          refund.at, refund.out_request_no)))
        return [row for _, row in sorted(rows, key=lambda item: item[0])]

    def bill_zip(self, merchant: Merchant, day: dt.date) -> bytes:
        """The bill zip as Alipay serves it: 业务明细 and 业务明细(汇总), GBK, CRLF."""
        rows = self.bill_rows(merchant, day)
        start = f"{day:%Y年%m月%d日} 00:00:00"
        end = f"{day + dt.timedelta(days=1):%Y年%m月%d日} 00:00:00"
        exported = f"{self.now().astimezone(CHINA_TZ):%Y年%m月%d日 %H:%M:%S}"
        payments = [r for r in rows if r[2] == "交易\t"]
        refunds = [r for r in rows if r[2] == "退款\t"]

        def total(selected: list[list[str]]) -> str:
            return _yuan(sum(int(Decimal(r[12]) * 100) for r in selected))

        detail = [
            "#支付宝业务明细查询", f"#账号：[{merchant.pid}]",
            f"#起始日期：[{start}]   终止日期：[{end}]",
            "#-----------------------------------------业务明细列表"
            "----------------------------------------",
            ",".join(BILL_HEADER), *(_csv_line(r) for r in rows),
            "#-----------------------------------------业务明细列表结束"
            "------------------------------------",
            f"#交易合计：{len(payments)}笔，商家实收共{total(payments)}元，商家优惠共0.00元",
            f"#退款合计：{len(refunds)}笔，商家实收共{total(refunds)}元，商家优惠共0.00元",
            f"#导出时间：[{exported}]"]
        summary = [
            "#支付宝业务汇总查询", f"#账号：[{merchant.pid}]",
            f"#起始日期：[{start}]   终止日期：[{end}]",
            "#-----------------------------------------业务汇总列表"
            "----------------------------------------",
            "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,"
            "支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）",
            f"合计,,{len(payments)},{len(refunds)},{total(rows)},{total(rows)},0.00,0.00,0.00,"
            f"0.00,0.00,{total(rows)}",
            "#-----------------------------------------业务汇总列表结束"
            "------------------------------------",
            f"#导出时间：[{exported}]"]
        name = f"{merchant.pid}_{day:%Y%m%d}"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{name}_业务明细.csv", "\r\n".join(detail).encode("gbk") + b"\r\n")
            archive.writestr(f"{name}_业务明细(汇总).csv",
                             "\r\n".join(summary).encode("gbk") + b"\r\n")
        return buffer.getvalue()


BILL_HEADER = (
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号",
    "门店名称", "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）",
    "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）", "商家优惠（元）", "券核销金额（元）",
    "券名称", "商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号", "服务费（元）",
    "分润（元）", "备注")


def _bill_row(trade: Trade, kind: str, fen: int, at: dt.datetime, request_no: str) -> list[str]:
    # Alipay pads text cells with a tab so that spreadsheets keep long numbers as text.
    amount = _yuan(fen)
    return [trade.trade_no + "\t", trade.out_trade_no + "\t", kind + "\t", trade.subject + "\t",
            _cn(trade.created_at), _cn(at), "\t", "\t", "\t", "\t", trade.buyer_logon_id + "\t",
            amount, amount, "0.00", "0.00", "0.00", "0.00", "0.00", "\t", "0.00", "0.00",
            request_no + "\t" if request_no else "\t", "0.00", "0.00", "\t"]


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()


def alipay_post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """Deliver a notify as Alipay does: only the seven letters ``success`` stop the retries.

    Returns the HTTP status for a ``success`` answer; any other answer counts as refused
    (its status, or 400 when a 2xx came with another body) so that the outbox retries it.
    """
    try:
        answer = requests.post(url, data=body, headers=dict(headers), timeout=10)
    except requests.RequestException:
        return 0
    if 200 <= answer.status_code < 300 and answer.content != b"success":
        return 400
    return answer.status_code


def _error_page(body: Mapping[str, Any]) -> Response:
    """Alipay's cashier error page (the payer sees it; the code helps the merchant)."""
    text = (f"<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>支付宝 · 错误</title></head><body><h1>支付宝 · 支付遇到问题</h1>"
            f"<p>错误码：<code>{html.escape(str(body.get('sub_code', '')))}</code></p>"
            f"<p>{html.escape(str(body.get('sub_msg', '')))}</p></body></html>")
    return HTMLResponse(text, status_code=400, headers=_PAGE_HEADERS)


# The cashier's own policy (the main app's middleware keeps a route's own header): its style
# is inline, its form posts here and is redirected to the merchant's return_url.
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                 "base-uri 'none'; frame-ancestors 'none'", "Cache-Control": "no-store"}

_PAGE_STYLE = """
*{box-sizing:border-box}body{margin:0;background:#f5f5f5;font:16px/1.5 -apple-system,
"PingFang SC","Microsoft YaHei",sans-serif;color:#333}main{max-width:390px;margin:0 auto;
min-height:100vh;background:#fff;padding:0 0 24px}header{background:#1677ff;color:#fff;
padding:14px 16px;font-size:17px}header b{display:inline-block;background:#fff;color:#1677ff;
border-radius:6px;width:26px;text-align:center;margin-right:8px}.merchant{padding:24px 16px 0;
text-align:center;color:#666}.subject{text-align:center;margin:4px 16px;color:#999;
font-size:14px}.amount{text-align:center;font-size:36px;margin:12px 0 24px}.amount small{
font-size:22px}form{padding:0 16px}button{width:100%;height:48px;border:0;border-radius:8px;
background:#1677ff;color:#fff;font-size:18px}.note{margin:20px 16px 0;font-size:12px;
color:#999;text-align:center}.done{text-align:center;font-size:20px;color:#1677ff}
"""


def _cashier_page(trade: Trade, action: str, message: str = "") -> HTMLResponse:
    esc = html.escape
    if message:
        tail = f"<p class=\"done\">{esc(message)}</p>"
    else:
        tail = (f"<form method=\"post\" action=\"{esc(action)}\">"
                "<button type=\"submit\">确认付款</button></form>")
    text = (
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>支付宝 · 确认付款</title><style>{_PAGE_STYLE}</style></head><body><main>"
        "<header><b>支</b>支付宝 · 确认付款</header>"
        f"<p class=\"merchant\">{esc(trade.merchant.name)}</p>"
        f"<p class=\"subject\">{esc(trade.subject)}</p>"
        f"<p class=\"amount\"><small>¥</small>{_yuan(trade.total_fen)}</p>{tail}"
        "<p class=\"note\">本地模拟的支付宝收银台，不会真的扣款。</p></main></body></html>")
    return HTMLResponse(text, headers=_PAGE_HEADERS)


# -- the HTTP app ---------------------------------------------------------------------------

def _base_url(request: Request) -> str:
    """Where the emulator is served, ending in '/': its root, under any mount prefix.

    (``request.base_url`` is the root of the outermost app, not of a mounted one: the mount's
    prefix is in the scope's ``root_path``.)
    """
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}{root}/"


async def _params(request: Request) -> dict[str, str]:
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    if request.method == "POST":
        pairs += parse_qsl((await request.body()).decode("utf-8", errors="replace"),
                           keep_blank_values=True)
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(key, value)  # Alipay reads the first of a repeated parameter
    return params


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise EmulatorError("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise EmulatorError("the body is not a JSON object")
    return data


def _notify_view(notify: SentNotify, emulator: AlipayEmulator) -> dict[str, Any]:
    held = any(c is notify.callback for c in emulator.outbox.held)
    dropped = any(c is notify.callback for c in emulator.outbox.dropped)
    deliveries = [c.attempts for c in list(emulator.outbox.log) if c.body == notify.callback.body]
    return {"notify_id": notify.notify_id, "kind": notify.kind,
            "out_trade_no": notify.out_trade_no, "url": notify.callback.url,
            "held": held, "dropped": dropped, "deliveries": deliveries,
            "fields": notify.fields}


def _trade_view(trade: Trade) -> dict[str, Any]:
    return {"out_trade_no": trade.out_trade_no, "trade_no": trade.trade_no,
            "seller_id": trade.merchant.pid, "status": trade.status,
            "total_amount": _yuan(trade.total_fen), "opened": trade.opened,
            "buyer_id": trade.buyer_id, "pay_path": f"emulator/pay/{trade.token}",
            "refunds": {n: _yuan(r.amount_fen) for n, r in trade.refunds.items()}}


def create_app(emulator: AlipayEmulator) -> Starlette:
    """The emulator as an ASGI app: serve it alone, or mount it (``app.mount("/alipay", …)``).

    Control endpoints (JSON in, JSON out):

    * ``GET /emulator/state``: merchants and trades;
    * ``POST /emulator/merchants`` ``{"name", "pid"?, "auth_token"?}``: a merchant;
    * ``POST /emulator/trades/{out_trade_no}/pay`` ``{"pid"?, "buyer_id"?}``: the payer pays;
    * ``POST /emulator/faults`` ``{"callbacks": {"delay", "duplicates", "hold", "drop"},
      "api": [{"kind": busy|system_error|slow|bad_sign|http_500, "method"?, "times"?,
      "seconds"?}]}``; ``DELETE /emulator/faults``: everything back to normal;
    * ``POST /emulator/notifies/release`` ``{"reverse"?}``: send the held notifies;
    * ``POST /emulator/notifies/replay`` ``{"notify_id"}``: send an old notify again;
    * ``POST /emulator/notifies/forge`` ``{"out_trade_no", "pid"?, "total_amount"?,
      "seller_id"?, "app_id"?}``: a notify Alipay signs that says something else;
    * ``GET /emulator/notifies``: every notify built, with its deliveries' status codes;
    * ``POST /emulator/clock`` ``{"now": ISO time | null, "advance_seconds"?}``.
    """

    async def gateway(request: Request) -> Response:
        params = await _params(request)
        answer = await run_in_threadpool(emulator.gateway, params, _base_url(request))
        return answer.response

    async def pay_page(request: Request) -> Response:
        trade = emulator.trade_by_token(request.path_params["token"])
        if trade is None:
            return _error_page({"sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"})
        if request.method == "GET":
            message = {"TRADE_SUCCESS": "该订单已支付", "TRADE_FINISHED": "该订单已支付",
                       "TRADE_CLOSED": "交易已关闭"}.get(trade.status, "")
            return _cashier_page(trade, str(request.url), message)
        form = parse_qsl((await request.body()).decode("utf-8", errors="replace"))
        buyer = dict(form).get("buyer_id") or None
        try:
            returned = await run_in_threadpool(emulator.pay, trade, buyer_id=buyer)
        except EmulatorError as exc:
            closed = "CLOSED" in str(exc)
            return _cashier_page(trade, "", "交易已关闭" if closed else "该订单已支付")
        if trade.return_url:
            joiner = "&" if "?" in trade.return_url else "?"
            return RedirectResponse(trade.return_url + joiner + urlencode(returned), 303)
        return _cashier_page(trade, "", "支付成功")

    async def bill(request: Request) -> Response:
        data = emulator.bill_file(request.query_params.get("fileId", ""))
        if data is None:
            return Response("link expired", status_code=404, media_type="text/plain")
        name = request.query_params.get("downloadFileName", "bill.csv.zip")
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def control(handler: Callable[[Request, dict[str, Any]], Any]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            try:
                body = await _json(request) if request.method == "POST" else {}
                result = await run_in_threadpool(handler, request, body)
            except EmulatorError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(result)
        return endpoint

    def state(_: Request, __: dict[str, Any]) -> Any:
        with emulator._lock:
            return {"app_id": emulator.app_id, "now": emulator.now().isoformat(),
                    "merchants": [{"name": m.name, "pid": m.pid, "auth_token": m.auth_token}
                                  for m in emulator.merchants.values()],
                    "trades": [_trade_view(t) for t in emulator.trades.values()]}

    def merchants(_: Request, body: dict[str, Any]) -> Any:
        merchant = emulator.add_merchant(str(body.get("name") or "商户"), pid=body.get("pid"),
                                         auth_token=body.get("auth_token"))
        return {"name": merchant.name, "pid": merchant.pid, "auth_token": merchant.auth_token}

    def pay(request: Request, body: dict[str, Any]) -> Any:
        trade = emulator.find_trade(request.path_params["out_trade_no"], body.get("pid"))
        returned = emulator.pay(trade, buyer_id=body.get("buyer_id"))
        return {"trade": _trade_view(trade), "return_parameters": returned}

    def faults(request: Request, body: dict[str, Any]) -> Any:
        if request.method == "DELETE":
            emulator.outbox.set_faults()
            with emulator._lock:
                emulator.api_faults.clear()
            return {"callbacks": {}, "api": []}
        callbacks = body.get("callbacks")
        if callbacks is not None:
            kinds = {"delay": (int, float), "duplicates": (int,), "hold": (bool,),
                     "drop": (bool,)}
            if not isinstance(callbacks, dict) or any(
                    name not in kinds or not isinstance(value, kinds[name])
                    for name, value in callbacks.items()):
                raise EmulatorError("callbacks: delay (seconds), duplicates (a number), hold "
                                    "and drop (true or false)")
            emulator.outbox.set_faults(**callbacks)
        for item in body.get("api") or []:
            if item.get("kind") not in FAULT_KINDS:
                raise EmulatorError(f"api kind: one of {', '.join(FAULT_KINDS)}")
            with emulator._lock:
                emulator.api_faults.append(ApiFault(
                    kind=item["kind"], method=item.get("method"), times=int(item.get("times", 1)),
                    seconds=float(item.get("seconds", 0.0))))
        faults_now = emulator.outbox.faults
        return {"callbacks": {"delay": faults_now.delay, "duplicates": faults_now.duplicates,
                              "hold": faults_now.hold, "drop": faults_now.drop},
                "api": [asdict(f) for f in emulator.api_faults]}

    def release(_: Request, body: dict[str, Any]) -> Any:
        return {"released": emulator.outbox.release(reverse=bool(body.get("reverse")))}

    def replay(_: Request, body: dict[str, Any]) -> Any:
        notify = emulator.replay(str(body.get("notify_id", "")))
        return {"notify_id": notify.notify_id}

    def forge(_: Request, body: dict[str, Any]) -> Any:
        trade = emulator.find_trade(str(body.get("out_trade_no", "")), body.get("pid"))
        notify = emulator.forge(trade, total_amount=body.get("total_amount"),
                                seller_id=body.get("seller_id"), app_id=body.get("app_id"))
        return {"notify_id": notify.notify_id, "fields": notify.fields}

    def notifies(_: Request, __: dict[str, Any]) -> Any:
        with emulator._lock:
            sent = list(emulator.notifies)
        return {"notifies": [_notify_view(n, emulator) for n in sent]}

    def clock(_: Request, body: dict[str, Any]) -> Any:
        if "now" in body:
            emulator.set_now(None if body["now"] is None
                             else dt.datetime.fromisoformat(str(body["now"])))
        if body.get("advance_seconds"):
            emulator.advance(dt.timedelta(seconds=float(body["advance_seconds"])))
        return {"now": emulator.now().isoformat()}

    return Starlette(routes=[
        Route("/gateway.do", gateway, methods=["GET", "POST"]),
        Route("/downloadBillFile.resource", bill, methods=["GET"]),
        Route("/emulator/pay/{token}", pay_page, methods=["GET", "POST"]),
        Route("/emulator/state", control(state), methods=["GET"]),
        Route("/emulator/merchants", control(merchants), methods=["POST"]),
        Route("/emulator/trades/{out_trade_no}/pay", control(pay), methods=["POST"]),
        Route("/emulator/faults", control(faults), methods=["POST", "DELETE"]),
        Route("/emulator/notifies", control(notifies), methods=["GET"]),
        Route("/emulator/notifies/release", control(release), methods=["POST"]),
        Route("/emulator/notifies/replay", control(replay), methods=["POST"]),
        Route("/emulator/notifies/forge", control(forge), methods=["POST"]),
        Route("/emulator/clock", control(clock), methods=["POST"]),
    ])


# -- setting it up --------------------------------------------------------------------------

def setup(base_url: str, key_dir: Path, *, app_id: str = "2021000000000001",
          outbox: Outbox | None = None, buyer_id: str | None = None,
          clock: Callable[[], dt.datetime] = utcnow) -> tuple[AlipayEmulator, AlipayConfig]:
    """An emulator and the :class:`AlipayConfig` that points the real gateway at it.

    ``base_url`` is where :func:`create_app` (``create_app(emulator)``) will be served, mount
    prefix included (``http://127.0.0.1:8123`` or ``http://127.0.0.1:8000/alipay``). The
    keys are made once in ``key_dir`` (:func:`~shanju.payments.emulators.keys.key_pair_in`):
    ``alipay-app`` is the platform application's pair (its private key is the platform's
    file), ``alipay-gateway`` the emulated Alipay's (its public key is "Alipay's public key").
    """
    app_pair = key_pair_in(key_dir, "alipay-app")
    alipay_pair = key_pair_in(key_dir, "alipay-gateway")
    emulator = AlipayEmulator(app_id=app_id, app_public_key_pem=app_pair.public_pem,
                              alipay_private_key_pem=alipay_pair.private_pem, outbox=outbox,
                              buyer_id=buyer_id, clock=clock)
    config = AlipayConfig(app_id=app_id, private_key_file=key_dir / "alipay-app.key.pem",
                          public_key_file=key_dir / "alipay-gateway.pub.pem",
                          gateway_url=base_url.rstrip("/") + "/gateway.do")
    return emulator, config


__all__ = ["AlipayEmulator", "ApiFault", "EmulatorError", "Merchant", "SentNotify", "Trade",
           "alipay_post", "create_app", "setup"]
