"""The providers' notification intake: ``POST /api/v1/payments/notify/{provider}`` (ADR 0028).

One function, :func:`receive_notification`, answers every notification of a real provider,
whether it arrives through :class:`NotifyLane` (plain ASGI, outermost: the giving day's hot
path) or through the documented FastAPI route (``gifts/api.py``), in the provider's own
acknowledgement format:

1. ``gateway.parse_notification`` — signature, freshness, decryption: CPU only, on the event
   loop; a notification that cannot be trusted gets the provider's "not accepted" answer and
   nothing is stored.
2. The order is read by its primary key — a short read, no lock, in a worker thread (never
   database work on the loop), many notifications' orders per statement
   (:class:`OrderReader`). A **paid giving-day order** whose provider,
   sub-merchant and amount are the order's becomes a :class:`~shanju.campaigns.engine.PaidGift`
   carrying the notification (:class:`~shanju.campaigns.engine.OrderNotice`). Everything else
   — an ordinary gift, a refund, "not paid", "closed", an unknown order, a mismatch (rare) —
   goes through :func:`shanju.gifts.flows.apply_report` in a write transaction of its own,
   as it always did.
3. The giving-day gift goes to the group-commit engine, whose batch — one transaction for
   many notifications — records the notification once per ``(provider, event id)``, moves
   the order to ``succeeded`` by a guarded update and writes the gift, its match and the
   ledger (``docs/locking.md``, "Giving-day notifications"). Answered once it is durable.

At the peak a notification thus costs no write transaction of its own: on SQLite's single
writer, one transaction per notification is what kept the engine from grouping. If the
engine cannot write the gift (stopped, a failing batch), the notification is recorded the
ordinary way (``apply_report``: the order is paid, the event stored) and the provider is told
"not accepted": its retry — the same notification — hands the paid order to the engine again,
and the engine's unique ``campaign_gifts.order_id`` keeps the gift single.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from shanju.campaigns.checkout import start_engine
from shanju.campaigns.engine import OrderNotice, PaidGift
from shanju.core.clock import utcnow
from shanju.core.db import Database
from shanju.core.deps import MAX_RAW_BODY
from shanju.core.errors import BodyTooLarge, DomainError, NotFound
from shanju.gifts import flows
from shanju.payments.gateway import (
    Acknowledgement,
    Gateway,
    PaymentReport,
    PaymentState,
    RefundReport,
)
from shanju.payments.providers import InvalidSignature

if TYPE_CHECKING:
    from shanju.campaigns.engine import GroupCommitEngine

log = structlog.get_logger(__name__)

PREFIX = "/api/v1/payments/notify/"

def gateway_of(app: Any, provider: str) -> Gateway:
    """The configured gateway called ``provider``, or ``404 unknown_provider``."""
    gateway: Gateway | None = app.state.providers.gateways.get(provider)
    if gateway is None:
        raise NotFound("Unknown payment provider: %(name)s", code="unknown_provider",
                       params={"name": provider})
    return gateway


# The order's columns the intake needs, read by primary key without a lock.
_ORDER_COLUMNS = (
    "id, provider, merchant_id, amount_fen, status, campaign_id, project_id, donor_id, "
    "donor_name, anonymous, message, province, provider_txn_id, payer_hash, succeeded_at")
OrderRow = tuple[Any, ...]


def read_orders(database: Database, order_ids: list[str]) -> dict[str, OrderRow]:
    """The orders ``order_ids`` (each row without its id), in one statement and no
    transaction of the session kind: SQLite reads in autocommit (a snapshot of its own),
    PostgreSQL's implicit transaction is ended at once. No lock is taken."""
    conn = database.engine.raw_connection()
    try:
        cursor = conn.cursor()
        try:
            if database.is_sqlite:
                cursor.execute(
                    f"SELECT {_ORDER_COLUMNS} FROM payment_intents "  # noqa: S608
                    "WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(order_ids),))
            else:
                cursor.execute(f"SELECT {_ORDER_COLUMNS} FROM payment_intents "  # noqa: S608
                               "WHERE id = ANY(%s)", (order_ids,))
            rows = cursor.fetchall()
        finally:
            cursor.close()
        if not database.is_sqlite:
            conn.rollback()
    finally:
        conn.close()
    return {str(row[0]): tuple(row[1:]) for row in rows}


class OrderReader:
    """The intake's reads of orders, grouped: requests that arrive while a read is running
    wait for the next one, which reads all of them in one statement in one worker-thread
    hop (at a giving day's peak, one hop and one SELECT per many notifications; alone, a
    notification's read starts at once). Runs on the event loop; the reads in the default
    executor."""

    MAX_BATCH = 1_000

    def __init__(self, database: Database) -> None:
        self.database = database
        self._waiting: dict[str, list[asyncio.Future[OrderRow | None]]] = {}
        self._reading = False

    async def get(self, order_id: str) -> OrderRow | None:
        """The order's row, or None when there is no such order."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[OrderRow | None] = loop.create_future()
        self._waiting.setdefault(order_id, []).append(future)
        if not self._reading:
            self._start(loop)
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch: dict[str, list[asyncio.Future[OrderRow | None]]] = {}
        while self._waiting and len(batch) < self.MAX_BATCH:
            order_id = next(iter(self._waiting))
            batch[order_id] = self._waiting.pop(order_id)
        self._reading = True
        read = loop.run_in_executor(None, read_orders, self.database, list(batch))
        read.add_done_callback(lambda done: self._finish(loop, batch, done))

    def _finish(self, loop: asyncio.AbstractEventLoop,
                batch: dict[str, list[asyncio.Future[OrderRow | None]]],
                done: asyncio.Future[dict[str, OrderRow]]) -> None:
        self._reading = False
        error: BaseException | None = (asyncio.CancelledError() if done.cancelled()
                                       else done.exception())
        rows = {} if error is not None else done.result()
        for order_id, futures in batch.items():
            for future in futures:
                if future.done():  # its request went away
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(rows.get(order_id))
        if self._waiting:
            self._start(loop)


def order_reader(app: Any) -> OrderReader:
    """The app's :class:`OrderReader` (made on first use)."""
    reader: OrderReader | None = getattr(app.state, "order_reader", None)
    if reader is None:
        reader = app.state.order_reader = OrderReader(app.state.db)
    return reader


def peak_gift(row: tuple[Any, ...] | None, report: PaymentReport | RefundReport, *,
              order_id: str, hash_payer: flows.PayerHasher) -> PaidGift | None:
    """The engine's input for a verified PAID report of a giving-day order that is what the
    order asked (provider, sub-merchant, amount); None for anything else (``apply_report``).

    An order already paid (another notification, the order query) keeps its recorded
    transaction id, payer and time: the gift repeats what the order says.
    """
    if (row is None or not isinstance(report, PaymentReport)
            or report.state is not PaymentState.PAID):
        return None
    (provider, merchant_id, amount_fen, status, campaign_id, project_id, donor_id, donor_name,
     anonymous, message, province, txn_id, payer_hash, succeeded_at) = row
    if (campaign_id is None or project_id is None or provider != report.provider
            or merchant_id != report.merchant_id or amount_fen != report.amount_fen):
        return None
    event_id, kind = flows.event_of(report)
    notice = OrderNotice(event_id=event_id[:80], event_type=kind,
                         payload=json.dumps(flows.scrub(report.raw), separators=(",", ":")))
    if status == "succeeded":
        paid_at = succeeded_at if succeeded_at is not None else report.paid_at or utcnow()
        if isinstance(paid_at, str):  # SQLite's text of a UTC time (core.db.UTCDateTime)
            paid_at = dt.datetime.fromisoformat(paid_at).replace(tzinfo=dt.UTC)
        txn, payer = txn_id or "", payer_hash or ""
    else:
        paid_at = report.paid_at or utcnow()
        txn = report.provider_txn_id or ""
        payer = hash_payer(report.payer_id) if report.payer_id else ""
    return PaidGift(
        order_id=order_id, campaign_id=int(campaign_id), project_id=int(project_id),
        donor_id=None if donor_id is None else int(donor_id), donor_name=donor_name or "",
        anonymous=bool(anonymous), message=message or "", province=province,
        amount_fen=int(amount_fen), provider=provider, provider_txn_id=txn, payer_hash=payer,
        device_hash="", paid_at=paid_at, notice=notice)


def apply(database: Database, report: PaymentReport | RefundReport, *,
          hash_payer: flows.PayerHasher) -> flows.Applied:
    """``apply_report`` in a write transaction of its own (the ordinary way)."""
    with database.transaction() as session:
        return flows.apply_report(session=session, report=report, hash_payer=hash_payer)


async def _engine(app: Any) -> GroupCommitEngine:
    engine: GroupCommitEngine | None = app.state.engine
    if engine is None:
        # Served without a lifespan (e.g. uvicorn with lifespan="off"): start on first use.
        engine = await asyncio.to_thread(start_engine, app)
    return engine


async def receive_notification(app: Any, *, provider: str, body: bytes,
                               headers: Mapping[str, str]) -> Acknowledgement:
    """Verify, record once, credit once; the answer in the provider's format. Safe to
    deliver any number of times, in any order. Raises only ``404 unknown_provider``."""
    gateway = gateway_of(app, provider)
    try:
        report = gateway.parse_notification(body=body, headers=headers)
    except InvalidSignature as exc:
        log.warning("payments.notify.refused", provider=provider, code=exc.code)
        return gateway.acknowledge(ok=False, message=exc.code)
    database: Database = app.state.db
    hash_payer: flows.PayerHasher = app.state.orders.payer_hash
    try:
        found: PaidGift | flows.Applied | None = None
        if isinstance(report, PaymentReport) and report.state is PaymentState.PAID:
            row = await order_reader(app).get(report.out_trade_no)
            found = peak_gift(row, report, order_id=report.out_trade_no,
                              hash_payer=hash_payer)
        if found is None:
            found = await asyncio.to_thread(apply, database, report, hash_payer=hash_payer)
        if isinstance(found, PaidGift):
            try:
                await (await _engine(app)).submit_async(found)
            except Exception as exc:  # noqa: BLE001 - recorded below, then "not accepted"
                return await _engine_failed(gateway, database, report, hash_payer, exc)
            return gateway.acknowledge(ok=True)
        if found.gift is not None:
            try:
                await (await _engine(app)).submit_async(found.gift)
            except Exception as exc:  # noqa: BLE001 - the provider's retry hands it over again
                log.warning("payments.notify.engine_failed", order_id=found.order_id,
                            error=type(exc).__name__)
                return gateway.acknowledge(ok=False, message="retry")
        log.info("payments.notify.applied", provider=provider, order_id=found.order_id,
                 outcome=found.outcome)
        return gateway.acknowledge(ok=True)
    except Exception as exc:  # noqa: BLE001 - any failure: not accepted, the provider retries
        code = exc.code if isinstance(exc, DomainError) else type(exc).__name__
        log.exception("payments.notify.failed", provider=provider, code=code)
        return gateway.acknowledge(ok=False, message=code)


async def _engine_failed(gateway: Gateway, database: Database,
                         report: PaymentReport | RefundReport, hash_payer: flows.PayerHasher,
                         exc: Exception) -> Acknowledgement:
    """The engine did not write the gift: record the notification the ordinary way (the order
    paid, the event stored), and answer "not accepted" so that the provider retries — unless
    the report credits nothing after all (``duplicate_transaction``: a transaction id that
    belongs to another order fails the engine's batch on its unique index)."""
    log.warning("payments.notify.engine_failed", order_id=report.out_trade_no,
                error=type(exc).__name__)
    applied = await asyncio.to_thread(apply, database, report, hash_payer=hash_payer)
    if applied.gift is None:
        log.info("payments.notify.applied", provider=report.provider,
                 order_id=applied.order_id, outcome=applied.outcome)
        return gateway.acknowledge(ok=True)
    return gateway.acknowledge(ok=False, message="retry")


class NotifyLane:
    """The providers' notifications as plain ASGI, in front of the application's middleware.

    ``POST /api/v1/payments/notify/{provider}`` for a configured gateway is handled here —
    read the body (≤ 64 KiB), :func:`receive_notification`, send the provider's
    acknowledgement — skipping what pages and the rest of the API need per request (locale
    and CSRF cookies, routing, dependency injection). Any other request, and a provider that
    is not configured (the route's ``404 unknown_provider``), goes to the application; the
    route of the same path documents the endpoint and answers the same way.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not path.startswith(PREFIX)):
            await self.app(scope, receive, send)
            return
        provider = path[len(PREFIX):]
        app = scope["app"]
        if provider not in app.state.providers.gateways:
            await self.app(scope, receive, send)
            return
        try:
            body = await _body(receive)
        except DomainError as exc:
            payload = json.dumps(exc.to_dict(), ensure_ascii=False).encode()
            await _send(send, exc.status_code, payload, b"application/json")
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        ack = await receive_notification(app, provider=provider, body=body, headers=headers)
        await _send(send, ack.status_code, ack.body, ack.media_type.encode())


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise DomainError("The client went away.", code="client_disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_RAW_BODY:
            raise BodyTooLarge("The request body is too large.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, media_type: bytes) -> None:
    # As the route's Response: no Content-Length on a 204 (RFC 9110).
    headers = [(b"content-type", media_type), (b"x-content-type-options", b"nosniff")]
    if status != 204:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
