"""Email: an outbox table written in the sender's transaction, and the mailers that deliver it.

A service that wants to tell someone something by email calls :func:`queue` with the request's
session: the message is a row of ``mail_outbox`` that commits (or rolls back) with the change
it announces, so nobody is emailed about a sign-up that failed, and no email is lost when the
process dies after the commit. Delivery happens after the commit: the handler calls
:func:`deliver_after_commit`, which asks the application's :class:`Mailer` to send every
message still unsent and marks each sent. A message whose delivery fails stays unsent with
its error (``attempts``, ``last_error``) for the next :func:`deliver_pending`.

Two mailers implement the :class:`Mailer` protocol and drain the same outbox:
:class:`SmtpMailer` (the standard library's ``smtplib``, configured by ``SHANJU_SMTP_*``:
host, port, STARTTLS or TLS, user, password, sender — ADR 0033), chosen by
:func:`mailer_for` whenever ``SHANJU_SMTP_HOST`` is set; and :class:`LogMailer` otherwise
(development and tests): it writes each message to the log (``mail.sent``, with its text) and
keeps the last ones in memory. Tests and the demo run a local SMTP sink
(:mod:`shanju.core.mailsink`) and point an :class:`SmtpMailer` at it.

Messages are written in the recipient's language when queued (subject and body are finished
text): the reader's locale is known then, and a message never changes once queued.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
from collections import deque
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import TYPE_CHECKING, Protocol

import structlog
from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from shanju.core.clock import utcnow
from shanju.core.db import Base, Database
from shanju.core.events import on_commit

if TYPE_CHECKING:
    from shanju.core.config import Settings

log = structlog.get_logger(__name__)


class OutboxMessage(Base):
    """An email to send; ``sent_at`` is set once a mailer has taken it."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(60))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True)
class Message:
    """One email as a mailer sends it."""

    to: str
    subject: str
    body: str
    kind: str


class Mailer(Protocol):
    """Something that delivers an email or raises (the message then stays in the outbox)."""

    def send(self, message: Message) -> None:
        """Deliver ``message``."""


class LogMailer:
    """Writes every message to the log and keeps the newest 100 in ``sent`` (no SMTP yet)."""

    def __init__(self) -> None:
        self.sent: deque[Message] = deque(maxlen=100)

    def send(self, message: Message) -> None:
        """Log the message (its text included: development has no other inbox)."""
        self.sent.append(message)
        log.info("mail.sent", kind=message.kind, to=message.to, subject=message.subject,
                 body=message.body)


class SmtpMailer:
    """Delivers each message over SMTP (``smtplib``): one connection per message.

    ``security``: ``starttls`` (a plain connection upgraded with STARTTLS before anything is
    said, refused if the server does not offer it), ``tls`` (TLS from the first byte, port
    465) or ``none`` (a relay on the same machine or network; never with a password over the
    internet). Certificates are verified against the system's CAs unless ``ssl_context`` is
    given (a test's own CA). A failure raises: the message stays in the outbox for the next
    delivery (:func:`deliver_pending`).
    """

    def __init__(self, *, host: str, port: int, security: str = "starttls", user: str = "",
                 password: str = "", sender: str, timeout: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ValueError(f"unknown SMTP security: {security!r}")
        self.host, self.port, self.security = host, port, security
        self.user, self.password = user, password
        self.sender = sender
        self.timeout = timeout
        self.ssl_context = ssl_context

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailer:
        """The mailer ``SHANJU_SMTP_*`` and ``SHANJU_MAIL_FROM`` describe."""
        return cls(host=settings.smtp_host, port=settings.smtp_port,
                   security=settings.smtp_security, user=settings.smtp_user,
                   password=settings.smtp_password, sender=settings.mail_from,
                   timeout=settings.smtp_timeout_seconds)

    def compose(self, message: Message) -> EmailMessage:
        """The message as it goes on the wire (UTF-8 text; headers encoded per RFC 2047)."""
        name, address = parseaddr(self.sender)
        email = EmailMessage()
        email["From"] = Address(display_name=name, addr_spec=address) if name else address
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = format_datetime(utcnow())
        email["Message-ID"] = make_msgid(domain=address.rpartition("@")[2] or "localhost")
        # What the message is (a sign-up link, a password reset, …): for the sinks' pages
        # and for an operator's filters; it says nothing about the recipient.
        email["X-Shanju-Kind"] = message.kind
        email.set_content(message.body)
        return email

    def send(self, message: Message) -> None:
        """Deliver ``message`` to the SMTP server, or raise."""
        email = self.compose(message)
        context = self.ssl_context or ssl.create_default_context()
        client: smtplib.SMTP
        if self.security == "tls":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                      context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if self.security == "starttls":
                client.starttls(context=context)  # raises if the server does not offer it
            if self.user:
                client.login(self.user, self.password)
            client.send_message(email)


def mailer_for(settings: Settings) -> Mailer:
    """The mailer of ``settings``: SMTP when ``SHANJU_SMTP_HOST`` is set, else the log."""
    if settings.smtp_host:
        return SmtpMailer.from_settings(settings)
    if settings.environment == "production":
        log.warning("mail.no_smtp", hint="set SHANJU_SMTP_HOST: until then every email (sign-up "
                    "links, password resets) is only written to the log")
    return LogMailer()


def queue(session: Session, *, to: str, subject: str, body: str, kind: str) -> OutboxMessage:
    """Add an email to the outbox, in the caller's transaction."""
    message = OutboxMessage(kind=kind, to_address=to, subject=subject[:200], body=body)
    session.add(message)
    session.flush()
    return message


def recent(session: Session, *, limit: int = 30) -> list[OutboxMessage]:
    """The newest ``limit`` messages of the outbox, newest first (the development mailbox)."""
    return list(session.scalars(
        select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)))


def deliver_pending(database: Database, mailer: Mailer, *, limit: int = 100) -> int:
    """Send up to ``limit`` unsent messages, oldest first; return how many were sent.

    Each message is marked in its own short transaction right after the mailer took it
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two processes never send the same one).
    """
    sent = 0
    with database.transaction(write=False) as session:
        ids = list(session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.sent_at.is_(None))
            .order_by(OutboxMessage.id).limit(limit)))
    for message_id in ids:
        with database.transaction() as session:
            row = session.scalar(
                select(OutboxMessage).where(OutboxMessage.id == message_id,
                                            OutboxMessage.sent_at.is_(None))
                .with_for_update(skip_locked=True))
            if row is None:
                continue  # sent meanwhile by another process
            row.attempts += 1
            try:
                mailer.send(Message(to=row.to_address, subject=row.subject, body=row.body,
                                    kind=row.kind))
            except Exception as exc:  # noqa: BLE001 - any failure leaves it for a retry
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                log.warning("mail.not_sent", id=row.id, kind=row.kind, error=row.last_error)
                continue
            row.sent_at = utcnow()
            row.last_error = None
            sent += 1
    return sent


def deliver_after_commit(session: Session, *, database: Database, mailer: Mailer) -> None:
    """Deliver the outbox once the session's transaction has committed."""
    on_commit(session, lambda: _deliver_quietly(database, mailer))


def _deliver_quietly(database: Database, mailer: Mailer) -> None:
    try:
        deliver_pending(database, mailer)
    except Exception:  # the change is committed; the messages wait for the next delivery
        log.exception("mail.delivery_failed")
