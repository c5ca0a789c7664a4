"""Helpers of the demo's tests: the demo seeded small and served as ``shanju demo`` serves it
(its payment emulators mounted), and the demo donor giving through the gift API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from fastapi import FastAPI
from sqlalchemy import select

from shanju.app import create_app
from shanju.campaigns.models import Enrolment
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.core.migrations import create_schema
from shanju.demo import payments as demo_payments
from shanju.demo.seed import DEMO_PASSWORD, seed
from shanju.projects.models import Project, ProjectStatus
from tests.serving import free_socket, uvicorn_thread

SECRET = "demo-payments-test-secret-key-0123456789-abcdefghij"


@dataclass
class Demo:
    """The served demo: its URL, database, app and emulators."""

    url: str
    db: Database
    app: FastAPI
    payments: demo_payments.DemoPayments
    key_dir: Path


@contextmanager
def serve_demo(tmp: Path) -> Iterator[Demo]:
    """The demo seeded small in ``tmp`` (today: with its live giving day), served by uvicorn
    on a free port with both emulators, as ``shanju demo`` serves it."""
    database = Database(f"sqlite:///{tmp / 'demo.sqlite3'}")
    create_schema(database)
    with database.transaction() as session:
        seed(session, scale=0.02, secret_key=SECRET, upload_dir=tmp / "uploads")
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        environment="development", database_url=database.url, secret_key=SECRET,
        base_url=url, upload_dir=tmp / "uploads",
        transparency_key_file=tmp / "transparency-ed25519.key",
        transparency_checkpoint_seconds=0)
    app = create_app(settings, database=database)
    key_dir = tmp / demo_payments.KEY_DIR
    payments = demo_payments.attach(app, key_dir=key_dir, url=url)
    try:
        with uvicorn_thread(app, sock):
            yield Demo(url=url, db=database, app=app, payments=payments, key_dir=key_dir)
    finally:
        database.dispose()


def signed_in_donor(demo: Demo) -> requests.Session:
    """The demo donor's phone browser, signed in through the sign-in form."""
    browser = requests.Session()
    form = browser.get(f"{demo.url}/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    answer = browser.post(f"{demo.url}/login", data={
        "email": "donor@demo.shanju.org", "password": DEMO_PASSWORD,
        "csrf_token": token.group(1)}, allow_redirects=False, timeout=10)
    assert answer.status_code == 303, answer.text
    return browser


def a_project(demo: Demo) -> int:
    """A fundraising project (an ordinary gift, outside the giving day, whether or not the
    project is enrolled in it)."""
    with demo.db.transaction(write=False) as session:
        project_id = session.scalar(
            select(Project.id).where(Project.status == ProjectStatus.FUNDRAISING)
            .order_by(Project.id.in_(select(Enrolment.project_id)), Project.id).limit(1))
    assert project_id is not None
    return int(project_id)


def give(demo: Demo, browser: requests.Session, channel: str, amount_fen: int) -> dict[str, Any]:
    """The donate page's call: the gift API with the session cookie and its CSRF token."""
    answer = browser.post(f"{demo.url}/api/v1/gifts", json={
        "project_id": a_project(demo), "amount_fen": amount_fen, "channel": channel,
        "message": "演示"},
        headers={"X-CSRF-Token": browser.cookies["sj_csrf"],
                 "Idempotency-Key": f"demo-{channel}"}, timeout=30)
    assert answer.status_code == 201, answer.text
    order: dict[str, Any] = answer.json()
    assert order["status"] == "requires_payment" and order["pay"]["kind"] == "redirect"
    return order
