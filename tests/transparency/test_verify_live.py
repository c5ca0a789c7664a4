"""``shanju verify`` against a running site: uvicorn serving the real app on a real database.

The server runs in a thread (as ``tests/browser/conftest.py``'s ``live_server``, without a
browser) behind a switch, so a test can make the same URL serve another database — how an
operator would present a forked history. The key file holds the tests' fixed key, so
checkpoints signed in the database directly and by the server verify with the same key.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from shanju import cli
from shanju.app import create_app
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.transparency import checkpoints
from shanju.transparency.models import LogLeaf
from shanju.transparency.verify import MIRROR_FILES
from tests.serving import free_socket, uvicorn_thread
from tests.transparency.verifying import (
    ORIGIN,
    OTHER_SEED,
    SEED,
    Money,
    post_money,
    post_other_money,
    sign,
    signer,
    tamper_leaf,
)

runner = CliRunner()
KEY = signer().key_id


class Switch:
    """An ASGI app that forwards to whichever app it currently points at."""

    def __init__(self, target: Any) -> None:
        self.target = target

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


@dataclass
class Site:
    """A running site: its URL, its database, and how to make it serve another database."""

    url: str
    database: Database
    switch: Switch
    settings: Settings

    def serve(self, database: Database, key_file: Path | None = None) -> None:
        """From now on, answer from ``database`` (same URL; same key unless ``key_file``)."""
        update: dict[str, Any] = {"database_url": database.url}
        if key_file is not None:
            update["transparency_key_file"] = key_file
        self.switch.target = create_app(self.settings.model_copy(update=update),
                                        database=database)


def _key_file(path: Path, seed: bytes = SEED) -> Path:
    pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


@pytest.fixture
def site(db: Database, tmp_path: Path) -> Iterator[Site]:
    """The app on the test database, served by uvicorn on a free 127.0.0.1 port."""
    sock = free_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        environment="test", database_url=db.url, secret_key="test-secret",
        sandbox_secret="test-sandbox-secret", base_url=base, upload_dir=tmp_path / "uploads",
        transparency_key_file=_key_file(tmp_path / "transparency.key"),
        transparency_origin=ORIGIN, transparency_checkpoint_seconds=0,
    )
    switch = Switch(create_app(settings, database=db))
    with uvicorn_thread(switch, sock):
        yield Site(url=base, database=db, switch=switch, settings=settings)


@pytest.fixture
def fork_db(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    """A second database (SQLite) for the forked history."""
    path = tmp_path / "fork.sqlite3"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


def run(*args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``shanju verify ARGS --json``: exit code, the JSON report, stdout."""
    result = runner.invoke(cli.app, ["verify", *args, "--json"])
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, json.loads(lines[-1]) if lines else {}, result.stdout


def failed(report: dict[str, Any]) -> list[str]:
    return [c["name"] for c in report["checks"] if not c["ok"]]


@pytest.fixture
def money(site: Site) -> Money:
    money = post_money(site.database)
    sign(site.database)  # as the background checkpointer would
    return money


# --- download and audit ----------------------------------------------------------------------


@pytest.fixture
def demo(site: Site) -> int:
    """The demo seeder's money — real donations, refunds, fund use, a giving day — signed.

    The site's disclosure totals come from the domain tables these flows write, so an honest
    log must recompute to exactly them (the ``money`` fixture posts ledger entries only, which
    the disclosure does not see: it serves the tampering tests).
    """
    from shanju.demo import seed as demo_seed  # noqa: PLC0415 - only these tests need it

    with site.database.transaction() as session:
        demo_seed.seed(session, scale=0.02, upload_dir=site.settings.upload_dir)
    return checkpoints.parse_note(sign(site.database)).size


def test_download_and_audit_an_honest_site(site: Site, demo: int, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    result = runner.invoke(cli.app, ["verify", "download", site.url + "/", str(mirror)])
    assert result.exit_code == 0, result.output
    assert f"mirrored {demo} of {demo} entries" in result.stdout
    assert sorted(p.name for p in mirror.iterdir()) == sorted(MIRROR_FILES.values())
    manifest = json.loads((mirror / MIRROR_FILES["manifest"]).read_text())
    assert manifest["size"] == demo and manifest["figures_at_size"] == demo
    reports = []
    for source in (str(mirror), site.url):
        code, report, out = run("log", source, "--key", KEY)
        assert code == 0, out
        names = [c["name"] for c in report["checks"]]
        # Two independent computations agree: the site's, from its domain tables, and the
        # log's, from the leaves alone.
        assert "project totals equal the site's disclosure" in names
        assert "project balances equal the ledger's" in names
        reports.append(report)
    assert reports[0]["projects"] == reports[1]["projects"]
    assert len(reports[0]["projects"]) >= 3
    assert not [w for w in reports[0]["warnings"] if "outside received" in w]


def test_ledger_only_money_recomputes_to_the_ledger_balances(site: Site, money: Money) -> None:
    code, report, out = run("log", site.url, "--key", KEY)
    assert report["projects"] == money.expected()
    assert "project balances equal the ledger's" not in failed(report), out


def test_a_changed_entry_is_detected_and_located(site: Site, money: Money) -> None:
    tamper_leaf(site.database, 6, amount=999)
    code, report, out = run("log", site.url, "--key", KEY)
    assert code == 1, out
    assert "rebuilt root equals the signed root" in failed(report)
    # The server's own stored nodes (and its consistency proofs) pin the changed entry down.
    assert report["first_bad_entry"] == 6


def test_a_truncated_log_is_detected(site: Site, money: Money) -> None:
    with site.database.transaction() as session:
        session.execute(delete(LogLeaf).where(LogLeaf.idx >= 13))
    code, report, out = run("log", site.url, "--key", KEY)
    assert code == 1, out
    assert {"entry count", "rebuilt root equals the signed root"} <= set(failed(report))


def test_the_published_key_is_used_with_a_warning_and_a_wrong_key_fails(site: Site,
                                                                         demo: int) -> None:
    code, report, _ = run("log", site.url)
    assert code == 0
    assert any("obtain the key independently" in w for w in report["warnings"])
    other = signer(bytes(32), ORIGIN).key_id
    assert run("log", site.url, "--key", other)[0] == 1


# --- consistency ------------------------------------------------------------------------------


def test_consistency_with_the_proof_from_the_site(site: Site, money: Money,
                                                  tmp_path: Path) -> None:
    old = tmp_path / "old.txt"
    old.write_text(sign(site.database))
    post_other_money(site.database)
    sign(site.database)  # the site serves a checkpoint up to a second old
    checkpoint_url = site.url + "/api/v1/transparency/checkpoint"
    code, report, out = run("consistency", str(old), checkpoint_url, "--url", site.url,
                            "--key", KEY)
    assert code == 0, out
    assert report["new"]["size"] == 18


def test_a_fork_is_detected_by_consistency(site: Site, money: Money, fork_db: Database,
                                           tmp_path: Path) -> None:
    old = tmp_path / "old.txt"
    old.write_text(sign(site.database))  # 15 leaves, honest
    post_money(fork_db)
    post_other_money(fork_db, rounds=5)
    sign(fork_db)  # 20 leaves, another history, the same key
    site.serve(fork_db)
    checkpoint_url = site.url + "/api/v1/transparency/checkpoint"
    code, report, out = run("consistency", str(old), checkpoint_url, "--url", site.url,
                            "--key", KEY)
    assert code == 1, out
    assert failed(report) == ["consistency 15 → 20"]


# --- following --------------------------------------------------------------------------------


def follow(site: Site, state: Path, *extra: str) -> tuple[int, dict[str, Any], str, str]:
    result = runner.invoke(cli.app, ["verify", "--follow", site.url, "--interval", "0",
                                     "--max-polls", "1", "--state", str(state), "--json",
                                     *extra])
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, json.loads(lines[-1]), result.stdout, result.stderr


def test_follow_verifies_growth_and_keeps_state(site: Site, money: Money,
                                                tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    code, summary, out, _ = follow(site, state)
    assert code == 0, out
    assert "pinned the site's verifier key on first contact" in out
    assert summary["size"] == 15 and summary["alarms"] == []
    assert json.loads(state.read_text())["verifier_key"] == KEY
    post_other_money(site.database)
    sign(site.database)
    code, summary, out, _ = follow(site, state)
    assert code == 0, out
    assert "size 18 (+3)" in out and "pinned" not in out
    # The subcommand form, several polls in one run.
    result = runner.invoke(cli.app, ["verify", "follow", site.url, "--interval", "0",
                                     "--max-polls", "3", "--state", str(state)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("unchanged") == 3


def test_follow_alarms_on_a_fork_and_a_rewritten_history(site: Site, money: Money,
                                                         fork_db: Database,
                                                         tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    post_other_money(site.database)
    sign(site.database)
    assert follow(site, state)[0] == 0  # the honest log at 18 leaves
    post_money(fork_db)
    post_other_money(fork_db, rounds=3)
    sign(fork_db)  # also 18 leaves: another history under the same key
    site.serve(fork_db)
    code, summary, out, err = follow(site, state)
    assert code == 1
    alarm = next(line for line in out.splitlines() if line.startswith("ALARM"))
    assert "FORK: two signed trees of 18 entries" in alarm
    assert alarm in err
    # The state still holds the last verified checkpoint: the next poll alarms again, now that
    # the forked log has grown and no consistency proof can bridge the two histories.
    post_other_money(fork_db, rounds=2)
    sign(fork_db)
    code, summary, out, _ = follow(site, state, "--keep-going")
    assert code == 1
    assert "checkpoint 20 is not consistent with checkpoint 18" in summary["alarms"][0]
    assert json.loads(state.read_text())["size"] == 18


def test_follow_alarms_on_a_shrunk_log(site: Site, money: Money, fork_db: Database,
                                       tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert follow(site, state)[0] == 0
    post_other_money(fork_db, rounds=4)
    sign(fork_db)
    site.serve(fork_db)
    code, summary, _, _ = follow(site, state)
    assert code == 1
    assert "the log shrank from 15 to 4 entries" in summary["alarms"][0]


def test_follow_alarms_on_a_changed_or_missing_entry(site: Site, money: Money,
                                                     tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    tamper_leaf(site.database, 2, amount=1)
    code, summary, _, _ = follow(site, state)
    assert code == 1
    assert "do not hash to the signed root" in summary["alarms"][0]
    assert not state.exists()
    with site.database.transaction() as session:
        session.execute(delete(LogLeaf).where(LogLeaf.idx >= 14))
        assert session.scalar(select(func.count()).select_from(LogLeaf)) == 14
    code, summary, _, _ = follow(site, state)
    assert code == 1
    assert "serves 14 entries but signs 15" in summary["alarms"][0]


def test_follow_with_a_wrong_key_or_an_unreachable_site(site: Site, money: Money,
                                                        tmp_path: Path) -> None:
    other = signer(bytes(32), ORIGIN).key_id
    code, summary, out, _ = follow(site, tmp_path / "s.json", "--key", other)
    assert code == 1
    assert "does not verify with the pinned key" in summary["alarms"][0]
    result = runner.invoke(cli.app, ["verify", "--follow", "http://127.0.0.1:9",
                                     "--interval", "0", "--max-polls", "2"])
    assert result.exit_code == 2
    assert result.stdout.count("error") >= 2


def test_checkpoint_json_from_the_site_is_accepted_as_a_note(site: Site, money: Money,
                                                             tmp_path: Path) -> None:
    checkpoint_url = site.url + "/api/v1/transparency/checkpoint"
    code, report, out = run("consistency", checkpoint_url, checkpoint_url, "--url", site.url)
    assert code == 0, out
    assert report["old"] == report["new"] == {
        "size": 15, "root": base64.b64encode(root_of(site)).decode()}


def root_of(site: Site) -> bytes:
    from shanju.transparency import service  # noqa: PLC0415 - the test's own look at the truth

    with site.database.transaction(write=False) as session:
        return service.head(session).root


# --- receipts from the site -------------------------------------------------------------------


def test_a_receipt_from_the_site_verifies_and_a_changed_leaf_fails(site: Site,
                                                                  money: Money) -> None:
    api = site.url + "/api/v1/transparency/receipts/donation:d2"
    page = site.url + "/transparency/receipts/donation:d2"
    for url in (api, page):
        code, report, out = run("receipt", url, "--key", KEY)
        assert code == 0, out
        assert f"donation.paid: ¥25.00 from donor_clearing:sandbox to project:{money.project_a}" \
            in out
    with site.database.transaction(write=False) as session:
        index = session.scalar(select(LogLeaf.idx).where(LogLeaf.ref == "donation:d2"))
    assert index is not None
    tamper_leaf(site.database, index, amount=1)
    code, report, _ = run("receipt", api, "--key", KEY)
    assert code == 1
    assert {f"leaf {index}: hash", f"leaf {index}: inclusion in the tree of 15"} <= set(
        failed(report))
    assert run("receipt", site.url + "/api/v1/transparency/receipts/donation:nope")[0] == 2


def test_an_empty_log_verifies(site: Site, tmp_path: Path) -> None:
    code, report, out = run("log", site.url, "--key", KEY)
    assert code == 0, out
    assert report["checkpoint"]["size"] == 0
    code, summary, out, _ = follow(site, tmp_path / "state.json")
    assert code == 0, out
    assert summary["size"] == 0


def test_follow_across_a_key_rotation(site: Site, money: Money, tmp_path: Path) -> None:
    """The operator rotates the key: the monitor refuses the new key until given it, then
    checks the history across the rotation as before."""
    state = tmp_path / "state.json"
    assert follow(site, state)[0] == 0
    site.serve(site.database, key_file=_key_file(tmp_path / "new.key", OTHER_SEED))
    post_other_money(site.database)
    code, summary, _, _ = follow(site, state)
    assert code == 1
    assert "does not verify with the pinned key" in summary["alarms"][0]
    new_key = signer(OTHER_SEED).key_id
    code, summary, out, _ = follow(site, state, "--key", new_key)
    assert code == 0, out
    assert "size 18 (+3)" in out
    assert json.loads(state.read_text())["verifier_key"] == new_key
