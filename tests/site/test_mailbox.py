"""The development mailbox: the demo has no mail server, so a newcomer who signs up finds the
emailed link on /dev/mailbox; no other environment serves that page."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shanju.app import create_app
from shanju.core.config import Settings
from shanju.core.db import Database
from tests.accounts.helpers import signup
from tests.payments.helpers import configure_wechatpay


def _client(settings: Settings, db: Database, environment: str) -> TestClient:
    if environment == "production":
        # What production starts with: strong secrets, no sandbox variable, a real provider.
        settings = Settings(environment="production", database_url=db.url,
                            secret_key=secrets.token_urlsafe(48), upload_dir=settings.upload_dir,
                            transparency_key_file=settings.transparency_key_file)
    else:
        settings = settings.model_copy(update={"environment": environment})
    return TestClient(create_app(settings, database=db), base_url="http://testserver")


def test_a_newcomer_finds_the_sign_up_link_in_the_development_mailbox(
    settings: Settings, db: Database,
) -> None:
    with _client(settings, db, "development") as client:
        empty = client.get("/dev/mailbox")
        assert empty.status_code == 200 and "还没有邮件" in empty.text
        sent = signup(client, email="new.donor@example.org")
        assert sent.status_code == 200
        assert 'href="/dev/mailbox"' in sent.text  # the "check your email" page points there
        page = client.get("/dev/mailbox")
        assert page.status_code == 200 and "new.donor@example.org" in page.text
        link = re.search(r'<a href="(https?://[^"]+/signup/confirm/[A-Za-z0-9_-]+)"', page.text)
        assert link, page.text
        path = "/" + link.group(1).split("/", 3)[3]
        assert client.get(path).status_code == 200  # the confirmation page opens


def test_no_mailbox_outside_development(settings: Settings, db: Database, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    configure_wechatpay(monkeypatch, tmp_path / "wechatpay-keys")
    for environment in ("test", "production"):
        with _client(settings, db, environment) as client:
            assert client.get("/dev/mailbox").status_code == 404
    with _client(settings, db, "test") as client:
        sent = signup(client, email="other@example.org")
        assert sent.status_code == 200 and 'href="/dev/mailbox"' not in sent.text
