"""What the accounts' end-to-end tests share: a mail sink the app sends to over SMTP, the
SMS emulator it texts through, and a clock the test moves (no test waits for a link or a code
to expire, and none depends on today's date)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.routing import Mount

from shanju.accounts import sms
from shanju.accounts.sms_emulator import AliyunSmsEmulator, create_app, setup
from shanju.core.clock import utcnow
from shanju.core.config import Settings
from shanju.core.mailsink import MailSink, ReceivedMail
from tests.serving import free_socket, uvicorn_thread

LINK = re.compile(r"https?://[^/\s]+(/\S+)")


class Clock:
    """A clock the test moves by hand, starting now."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move the clock forward."""
        self.now += dt.timedelta(**delta)


def with_smtp(settings: Settings, sink: MailSink) -> Settings:
    """``settings`` sending email over SMTP to ``sink``."""
    return settings.model_copy(update={
        "smtp_host": sink.host, "smtp_port": sink.port, "smtp_security": "none",
        "mail_from": "善举 <no-reply@give.example.org>"})


def mail_to(sink: MailSink, to: str, kind: str) -> ReceivedMail:
    """The newest message of ``kind`` that reached ``to`` through the sink."""
    return sink.wait_for(lambda m: to in m.to and m.kind == kind, timeout=5)


def link_path(message: ReceivedMail) -> str:
    """The path of the link in a message's body."""
    found = LINK.search(message.body)
    assert found, message.body
    return found.group(1)


@contextmanager
def sms_emulator(clock: Clock) -> Iterator[tuple[AliyunSmsEmulator, sms.AliyunSmsSender]]:
    """The Alibaba Cloud SMS emulator served over HTTP (under the demo's prefix), and a
    production sender pointed at it; both on ``clock``."""
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/emulators/aliyun-sms"
    emulator, config = setup(url, clock=clock)
    outer = Starlette(routes=[Mount("/emulators/aliyun-sms", create_app(emulator))])
    with uvicorn_thread(outer, sock):
        yield emulator, sms.AliyunSmsSender(config, clock=clock)
