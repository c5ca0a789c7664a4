"""The demo's email and text messages: a local SMTP sink and the Alibaba Cloud SMS emulator.

``shanju demo`` starts :class:`~shanju.core.mailsink.MailSink` on a free port of 127.0.0.1 and
sends the platform's email to it over SMTP (the production mailer, ``smtplib``); what arrives
is shown on ``/dev/mailbox``. It serves the SMS emulator
(:mod:`shanju.accounts.sms_emulator`) from its own server under :data:`SMS_PATH` and points
the production sender (:class:`~shanju.accounts.sms.AliyunSmsSender`) at it; the codes sent
are shown on ``/emulators/aliyun-sms/emulator/inbox``, the demo's phone. Both keep what they
received in memory (a restart empties them). Never in production: :func:`attach` refuses a
production app, and nothing but the demo and the tests calls it.
"""

from __future__ import annotations

from fastapi import FastAPI

from shanju.accounts.sms import AliyunSmsSender
from shanju.accounts.sms_emulator import AliyunSmsEmulator, create_app, setup
from shanju.core.config import Settings
from shanju.core.mail import SmtpMailer
from shanju.core.mailsink import MailSink

SMS_PATH = "/emulators/aliyun-sms"
MAILBOX_PATH = "/dev/mailbox"
SMS_INBOX_PATH = f"{SMS_PATH}/emulator/inbox"
DEMO_SENDER = "善举 <no-reply@demo.shanju.org>"


def with_mail_sink(settings: Settings, sink: MailSink) -> Settings:
    """``settings`` sending email over SMTP to ``sink`` (a local relay: no TLS, no login)."""
    return settings.model_copy(update={
        "smtp_host": sink.host, "smtp_port": sink.port, "smtp_security": "none",
        "smtp_user": "", "smtp_password": "", "mail_from": DEMO_SENDER})


def attach(app: FastAPI, *, url: str, sink: MailSink | None = None) -> AliyunSmsEmulator:
    """Mount the SMS emulator on ``app`` (served at ``url``) and send its codes there; send its
    email to ``sink`` when given (and show what arrives on the mailbox page)."""
    if app.state.settings.environment == "production":
        raise RuntimeError("the mail sink and the SMS emulator are for the demo and tests")
    emulator, config = setup(url.rstrip("/") + SMS_PATH)
    app.mount(SMS_PATH, create_app(emulator))
    app.state.sms = AliyunSmsSender(config)
    app.state.sms_emulator = emulator
    if sink is not None:
        app.state.mailer = SmtpMailer(host=sink.host, port=sink.port, security="none",
                                      sender=DEMO_SENDER)
        app.state.mail_sink = sink
    return emulator
