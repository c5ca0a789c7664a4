"""``shanju transparency checkpoint`` and ``shanju transparency public-key``."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shanju import cli
from shanju.core.config import get_settings
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.transparency import checkpoints as cp
from shanju.transparency import service
from tests.factories import make_org, make_project

runner = CliRunner()


@pytest.fixture(autouse=True)
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Commands read the environment's settings: point the key at the test's directory."""
    path = tmp_path / "keys" / "transparency.key"
    monkeypatch.setenv("SHANJU_TRANSPARENCY_KEY_FILE", str(path))
    monkeypatch.setenv("SHANJU_TRANSPARENCY_ORIGIN", "cli.example/transparency")
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_public_key_creates_the_key_and_prints_it(key_file: Path) -> None:
    result = runner.invoke(cli.app, ["transparency", "public-key"])
    assert result.exit_code == 0, result.output
    verifier, raw = result.stdout.splitlines()
    key = cp.parse_verifier_key(verifier)
    assert key.name == "cli.example/transparency"
    assert key.public_key == base64.b64decode(raw)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # The same key next time, also as JSON.
    again = runner.invoke(cli.app, ["transparency", "public-key", "--json"])
    assert json.loads(again.stdout) == {"verifier_key": verifier, "public_key": raw,
                                        "origin": "cli.example/transparency",
                                        "algorithm": "Ed25519"}


def test_checkpoint_signs_the_head_and_prints_the_note(db: Database) -> None:
    with db.transaction() as session:
        project = make_project(session, org=make_org(session))
        ledger.post(session, ledger.transfer(
            "donation.paid", source=ledger.donor_clearing("sandbox"),
            destination=ledger.project_fund(project.id), amount_fen=500,
            dedupe_key="donation.paid:cli"))
    result = runner.invoke(cli.app, ["transparency", "checkpoint", "--database-url", db.url])
    assert result.exit_code == 0, result.output
    verifier = runner.invoke(cli.app, ["transparency", "public-key"]).stdout.splitlines()[0]
    parsed = cp.verify_note(result.stdout, verifier)
    with db.transaction(write=False) as session:
        head = service.head(session)
        stored = cp.latest(session)
        assert stored is not None and stored.note == result.stdout
    assert (parsed.size, parsed.root) == (head.size, head.root)
    assert head.size >= 1


def test_a_corrupt_key_file_fails_with_a_message(key_file: Path, db: Database) -> None:
    key_file.parent.mkdir(parents=True)
    key_file.write_text("garbage")
    for args in (["transparency", "public-key"],
                 ["transparency", "checkpoint", "--database-url", db.url]):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 1
        assert "not a readable unencrypted PEM" in result.output
