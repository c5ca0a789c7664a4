"""A local SMTP sink: a real SMTP server (``aiosmtpd``) that keeps what it receives in memory.

Tests and the demo point the platform's :class:`~shanju.core.mail.SmtpMailer` at it, so email
goes the whole way a production email goes — the outbox, ``smtplib``, the SMTP dialogue
(STARTTLS and AUTH too, when asked) — and arrives here instead of at someone's inbox. The
demo shows what arrived on ``/dev/mailbox`` (development only); tests read
:attr:`MailSink.messages` or wait for a message with :meth:`MailSink.wait_for`.

It listens on 127.0.0.1 on a port the system picks (``port=0``) unless told one, and runs in
a thread of its own (aiosmtpd's controller): start it, read ``host`` and ``port``, stop it.
Never part of production: nothing here delivers email anywhere.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from shanju.core.clock import utcnow

# How many messages the sink keeps (the oldest go first): a demo runs for days.
KEEP = 500


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the sink received it."""

    mail_from: str
    to: tuple[str, ...]
    subject: str
    body: str
    kind: str          # the platform's X-Shanju-Kind header (e.g. accounts.password.reset)
    received_at: dt.datetime
    raw: bytes


def parse(mail_from: str, to: tuple[str, ...], raw: bytes) -> ReceivedMail:
    """Read a received message: its subject and text body decoded (MIME, RFC 2047)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    part = (message.get_body(preferencelist=("plain",))
            if isinstance(message, EmailMessage) else None)
    body = part.get_content() if isinstance(part, EmailMessage) else ""
    return ReceivedMail(mail_from=mail_from, to=to, subject=str(message.get("Subject", "")),
                        body=str(body), kind=str(message.get("X-Shanju-Kind", "")),
                        received_at=utcnow(), raw=raw)


class _Handler:
    """aiosmtpd's handler: keeps every message of a DATA command."""

    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        del server, session
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        self.sink.receive(parse(str(envelope.mail_from or ""), tuple(envelope.rcpt_tos), raw))
        return "250 Message accepted for delivery"


class _BoundController(Controller):
    """aiosmtpd's threaded controller serving on a socket bound beforehand (port 0 works)."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self._sock = sock

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock,
                                       ssl=self.ssl_context)


class MailSink:
    """A local SMTP server that keeps the newest :data:`KEEP` messages it receives.

    ``smtp_options`` go to aiosmtpd's ``SMTP`` (e.g. ``tls_context``, ``require_starttls``,
    ``authenticator``, ``auth_require_tls``) for a test of STARTTLS and AUTH.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **smtp_options: Any) -> None:
        self._wanted = (host, port)
        self._options = smtp_options
        self._lock = threading.Lock()
        self._messages: deque[ReceivedMail] = deque(maxlen=KEEP)
        self._controller: _BoundController | None = None
        self.host = host
        self.port = port

    def start(self) -> MailSink:
        """Listen (in a thread of its own); ``host`` and ``port`` say where."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(self._wanted)
        self.host, self.port = sock.getsockname()[:2]
        self._controller = _BoundController(_Handler(self), sock, loop=asyncio.new_event_loop(),
                                            server_hostname="shanju-mail-sink",
                                            **self._options)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def receive(self, message: ReceivedMail) -> None:
        """Keep ``message`` (called from the sink's thread)."""
        with self._lock:
            self._messages.append(message)

    @property
    def messages(self) -> list[ReceivedMail]:
        """Every message kept, oldest first."""
        with self._lock:
            return list(self._messages)

    def newest(self, limit: int = 30) -> list[ReceivedMail]:
        """The newest ``limit`` messages, newest first (the demo's mailbox page)."""
        return list(reversed(self.messages))[:limit]

    def wait_for(self, predicate: Callable[[ReceivedMail], bool],
                 timeout: float = 10.0) -> ReceivedMail:
        """The newest message ``predicate`` accepts, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for message in reversed(self.messages):
                if predicate(message):
                    return message
            if time.monotonic() > deadline:
                raise TimeoutError("no such message reached the mail sink in time")
            time.sleep(0.02)
