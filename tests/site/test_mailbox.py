"""The development mailbox: the demo has no mail server, so a newcomer who signs up finds the
emailed link on /dev/mailbox; no other environment serves that page."""

from __future__ import annotations

import re
import secrets

from fastapi.testclient import TestClient

from shanju.app import create_app
from shanju.core.config import Settings
from shanju.core.db import Database
from tests.accounts.helpers import signup


def _client(settings: Settings, db: Database, environment: str) -> TestClient:
    update: dict[str, object] = {"environment": environment}
    if environment == "production":
        update.update(secret_key=secrets.token_urlsafe(48), sandbox_enabled=False)
    return TestClient(create_app(settings.model_copy(update=update), database=db),
                      base_url="http://testserver")


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


def test_no_mailbox_outside_development(settings: Settings, db: Database) -> None:
    for environment in ("test", "production"):
        with _client(settings, db, environment) as client:
            assert client.get("/dev/mailbox").status_code == 404
    with _client(settings, db, "test") as client:
        sent = signup(client, email="other@example.org")
        assert sent.status_code == 200 and 'href="/dev/mailbox"' not in sent.text
