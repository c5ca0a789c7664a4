"""Email over real SMTP: the platform's ``SmtpMailer`` (``smtplib``) talking to the local sink
(``aiosmtpd``) — plainly, and with STARTTLS and AUTH as a mail provider requires them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import smtplib
import ssl
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shanju.core import mail
from shanju.core.clock import utcnow
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.mailsink import MailSink

MESSAGE = mail.Message(to="li.na@example.org", subject="重置善举密码",
                       body="您好，\n\n打开链接：https://give.example.org/password/reset/abc\n",
                       kind="accounts.password.reset")


def test_a_message_reaches_the_sink_with_its_chinese_subject_and_body() -> None:
    with MailSink() as sink:
        mailer = mail.SmtpMailer(host=sink.host, port=sink.port, security="none",
                                 sender="善举 <no-reply@give.example.org>")
        mailer.send(MESSAGE)
        received = sink.wait_for(lambda m: m.kind == MESSAGE.kind)
    assert received.to == ("li.na@example.org",)
    assert received.mail_from == "no-reply@give.example.org"
    assert received.subject == "重置善举密码"
    assert "https://give.example.org/password/reset/abc" in received.body
    assert received.kind == "accounts.password.reset"
    assert b"Message-ID: <" in received.raw and b"From: =?utf-8?" in received.raw


def test_the_outbox_is_delivered_over_smtp(db: Database) -> None:
    with MailSink() as sink:
        mailer = mail.mailer_for(Settings(environment="test", database_url=db.url,
                                          smtp_host=sink.host, smtp_port=sink.port,
                                          smtp_security="none",
                                          mail_from="no-reply@give.example.org"))
        assert isinstance(mailer, mail.SmtpMailer)
        with db.transaction() as session:
            mail.queue(session, to="a@example.org", subject="一", body="1", kind="test.one")
            mail.queue(session, to="b@example.org", subject="二", body="2", kind="test.two")
        assert mail.deliver_pending(db, mailer) == 2
        assert [(m.to, m.subject) for m in sink.messages] == [
            (("a@example.org",), "一"), (("b@example.org",), "二")]
    # The sink is gone: the next message fails, stays in the outbox with the error.
    with db.transaction() as session:
        mail.queue(session, to="c@example.org", subject="三", body="3", kind="test.three")
    assert mail.deliver_pending(db, mailer) == 0
    with db.transaction(write=False) as session:
        row = mail.recent(session, limit=1)[0]
        assert row.kind == "test.three" and row.sent_at is None and row.attempts == 1
        assert row.last_error and "ConnectionRefusedError" in row.last_error


def _certificate(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A self-signed certificate for 127.0.0.1: (cert file, key file, PEM to trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file, pem


def test_starttls_and_auth_as_a_mail_provider_requires_them(tmp_path: Path) -> None:
    cert_file, key_file, pem = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    logins: list[tuple[bytes, bool]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, session.ssl is not None))
        ok = auth_data == (b"mailer", b"s3cret-password")
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    trusted = ssl.create_default_context(cadata=pem.decode())
    with MailSink(tls_context=server_tls, require_starttls=True, authenticator=authenticator,
                  auth_require_tls=True) as sink:
        def mailer(**options: str) -> mail.SmtpMailer:
            return mail.SmtpMailer(host=sink.host, port=sink.port, sender="no-reply@x.org",
                                   ssl_context=trusted, **options)

        mailer(security="starttls", user="mailer", password="s3cret-password").send(MESSAGE)
        assert sink.wait_for(lambda m: m.kind == MESSAGE.kind).subject == "重置善举密码"
        assert logins == [(b"mailer", True)]  # the password went over TLS only
        with pytest.raises(smtplib.SMTPAuthenticationError):
            mailer(security="starttls", user="mailer", password="wrong").send(MESSAGE)
        # A server that insists on STARTTLS refuses a mailer configured without it.
        with pytest.raises(smtplib.SMTPException):
            mailer(security="none").send(MESSAGE)
        # And a certificate the mailer does not trust stops it before anything is said.
        with pytest.raises(ssl.SSLCertVerificationError):
            mail.SmtpMailer(host=sink.host, port=sink.port, sender="no-reply@x.org",
                            security="starttls").send(MESSAGE)
    assert len(sink.messages) == 1
