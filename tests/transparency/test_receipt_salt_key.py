"""SHANJU_RECEIPT_SALT_KEY: pinned to the old secret key, it keeps receipts openable across a
rotation of SHANJU_SECRET_KEY; without it, a rotation loses the openings (as documented)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shanju.accounts import service as accounts
from shanju.accounts.models import User
from shanju.app import create_app
from shanju.core.config import Settings, get_settings
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.transparency import leaves
from shanju.transparency.leaves import LogDetail
from tests.factories import make_org, make_project, make_user

OLD, NEW = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
REF = "donation:d_rotation"


@pytest.fixture(autouse=True)
def process_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The log reads the process's settings: give each step its own, then restore them."""
    monkeypatch.delenv("SHANJU_RECEIPT_SALT_KEY", raising=False)
    monkeypatch.setenv("SHANJU_SECRET_KEY", OLD)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def give_before_the_rotation(db: Database) -> int:
    with db.transaction() as s:
        donor, project = make_user(s), make_project(s, org=make_org(s))
        ledger.post(s, ledger.transfer(
            "donation.paid", source=ledger.donor_clearing("sandbox"),
            destination=ledger.project_fund(project.id), amount_fen=100,
            detail=LogDetail(ref=REF, donor=f"user:{donor.id}", public={})))
        return donor.id


def opening_after(monkeypatch: pytest.MonkeyPatch, db: Database, settings: Settings,
                  tmp_path: Path, donor_id: int, **env: str) -> dict[str, str] | None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    app = create_app(settings.model_copy(update={
        "secret_key": NEW, "transparency_key_file": tmp_path / "tlog.key"}), database=db)
    with db.transaction() as s:
        token = accounts.do_start_session(session=s, user=s.get_one(User, donor_id))
    with TestClient(app, base_url="http://testserver") as client:
        client.cookies.set("sj_session", token)
        response = client.get(f"/api/v1/transparency/receipts/{REF}")
    assert response.status_code == 200, response.text
    opening: dict[str, str] | None = response.json()["opening"]
    return opening


def test_a_pinned_salt_key_keeps_receipts_openable_after_rotating_the_secret_key(
    monkeypatch: pytest.MonkeyPatch, db: Database, settings: Settings, tmp_path: Path
) -> None:
    donor_id = give_before_the_rotation(db)
    opening = opening_after(monkeypatch, db, settings, tmp_path, donor_id,
                            SHANJU_SECRET_KEY=NEW, SHANJU_RECEIPT_SALT_KEY=OLD)
    assert opening == {"identity": f"user:{donor_id}",
                       "salt": leaves.donor_salt(OLD, REF).hex()}


def test_rotating_the_secret_key_without_pinning_loses_the_openings(
    monkeypatch: pytest.MonkeyPatch, db: Database, settings: Settings, tmp_path: Path
) -> None:
    donor_id = give_before_the_rotation(db)
    assert opening_after(monkeypatch, db, settings, tmp_path, donor_id,
                         SHANJU_SECRET_KEY=NEW) is None
