"""``shanju verify`` offline: mirrors, receipts and checkpoints written from a real log.

The log is built by posting money through the ledger service (both databases); the verifier
only ever sees the files, as an auditor would. Each test shows a verification that passes and
the tampering it catches: a changed entry, a truncated log, a wrong key, a forked history,
totals that do not add up, a receipt with a changed amount, proof or note.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from shanju import cli
from shanju.core.db import Database
from shanju.transparency import leaves, verify
from shanju.transparency import service as log_service
from shanju.transparency.verify import MIRROR_FILES
from tests.transparency.verifying import (
    OTHER_SEED,
    Money,
    checkpoint_json,
    post_money,
    post_other_money,
    receipt,
    sign,
    signer,
    tamper_leaf,
    write_mirror,
)

runner = CliRunner()
KEY = signer().key_id


def run(*args: str) -> tuple[int, dict[str, Any], Result]:
    """Run ``shanju verify ARGS --json``; return the exit code and the JSON report."""
    result = runner.invoke(cli.app, ["verify", *args, "--json"])
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "{}"
    return result.exit_code, json.loads(last), result


def failed(report: dict[str, Any]) -> list[str]:
    return [c["name"] for c in report["checks"] if not c["ok"]]


@pytest.fixture
def money(db: Database) -> Money:
    return post_money(db)


@pytest.fixture
def mirror(db: Database, money: Money, tmp_path: Path) -> Path:
    return write_mirror(db, tmp_path / "mirror", totals=money.totals_json())


# --- the whole log ---------------------------------------------------------------------------


def test_an_honest_log_verifies_and_its_totals_are_recomputed_from_the_leaves(
        mirror: Path, money: Money) -> None:
    code, report, result = run("log", str(mirror), "--key", KEY)
    assert code == 0, result.output
    assert report["ok"] is True and not report["warnings"]
    assert report["projects"] == money.expected()
    assert report["checkpoint"]["size"] == 15  # ten entries, some of two or more leaves
    assert "VERIFIED" in result.stdout


def test_the_key_can_be_a_file_and_without_one_the_mirrors_own_key_is_used_with_a_warning(
        mirror: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")
    assert run("log", str(mirror), "--key", str(key_file))[0] == 0
    code, report, _ = run("log", str(mirror))
    assert code == 0
    assert any("obtain the key independently" in w for w in report["warnings"])


def test_a_checkpoint_signed_by_another_key_fails(mirror: Path) -> None:
    other = signer(OTHER_SEED).key_id
    code, report, _ = run("log", str(mirror), "--key", other)
    assert code == 1
    assert failed(report) == ["checkpoint: signature"]


def test_a_changed_entry_in_the_mirror_is_detected(mirror: Path) -> None:
    path = mirror / MIRROR_FILES["entries"]
    lines = path.read_text().splitlines()
    item = json.loads(lines[0])  # donation d1
    fields = leaves.decode(base64.b64decode(item["data"]))
    fields["amount"] = int(str(fields["amount"])) + 1  # still a canonical, well-formed leaf
    item["data"] = base64.b64encode(leaves.encode(fields)).decode()
    lines[0] = json.dumps(item)
    path.write_text("\n".join(lines) + "\n")
    code, report, result = run("log", str(mirror), "--key", KEY)
    assert code == 1
    assert "rebuilt root equals the signed root" in failed(report)
    # The changed amount also shows in the recomputed totals.
    assert "project totals equal the site's disclosure" in failed(report)
    assert "FAILED" in result.stdout


def test_a_changed_entry_in_the_database_is_detected(db: Database, money: Money,
                                                     tmp_path: Path) -> None:
    note = sign(db)  # signed before the operator edits a leaf
    tamper_leaf(db, 0, amount=1)
    mirror = write_mirror(db, tmp_path / "m", note=note, totals=money.totals_json())
    code, report, _ = run("log", str(mirror), "--key", KEY)
    assert code == 1
    assert "rebuilt root equals the signed root" in failed(report)


def test_a_truncated_log_is_detected(mirror: Path) -> None:
    path = mirror / MIRROR_FILES["entries"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n")
    code, report, _ = run("log", str(mirror), "--key", KEY)
    assert code == 1
    assert {"entry count", "rebuilt root equals the signed root"} <= set(failed(report))
    detail = next(c["detail"] for c in report["checks"] if c["name"] == "entry count")
    assert "13 entries served, the checkpoint signs 15" in detail


def test_a_missing_entry_in_the_middle_is_detected(mirror: Path) -> None:
    path = mirror / MIRROR_FILES["entries"]
    lines = path.read_text().splitlines()
    del lines[5]
    path.write_text("\n".join(lines) + "\n")
    code, report, _ = run("log", str(mirror), "--key", KEY)
    assert code == 1
    assert "entries in order" in failed(report)


def test_site_totals_that_differ_from_the_log_are_reported(db: Database, money: Money,
                                                           tmp_path: Path) -> None:
    totals = money.totals_json()
    totals["projects"][0]["disbursed_fen"] += 100
    totals["projects"][0]["balance_fen"] -= 100
    mirror = write_mirror(db, tmp_path / "m", totals=totals)
    code, report, _ = run("log", str(mirror), "--key", KEY)
    assert code == 1
    assert failed(report) == ["project totals equal the site's disclosure"]
    detail = report["checks"][-2]["detail"]
    assert f"project {money.project_a} disbursed: the site says ¥41.00, the log ¥40.00" in detail


def test_ledger_balances_that_differ_from_the_log_are_reported(mirror: Path,
                                                               money: Money) -> None:
    path = mirror / MIRROR_FILES["accounts"]
    accounts = json.loads(path.read_text())
    for item in accounts["items"]:
        if item["code"] == f"project:{money.project_b}":
            item["balance_fen"] += 1
    path.write_text(json.dumps(accounts))
    code, report, _ = run("log", str(mirror), "--key", KEY)
    assert code == 1
    assert failed(report) == ["project balances equal the ledger's"]


def test_without_disclosure_totals_only_balances_are_compared(db: Database, money: Money,
                                                              tmp_path: Path) -> None:
    mirror = write_mirror(db, tmp_path / "m", totals=None)
    code, report, _ = run("log", str(mirror), "--key", KEY)
    assert code == 0
    assert any("no disclosure totals" in w for w in report["warnings"])


def test_a_leaf_that_is_not_canonical_is_reported(mirror: Path) -> None:
    path = mirror / MIRROR_FILES["entries"]
    lines = path.read_text().splitlines()
    item = json.loads(lines[0])
    spaced = json.dumps(leaves.decode(base64.b64decode(item["data"]))).encode()
    item["data"] = base64.b64encode(spaced).decode()
    lines[0] = json.dumps(item)
    path.write_text("\n".join(lines) + "\n")
    code, report, _ = run("log", str(mirror), "--key", KEY)
    assert code == 1
    assert "every leaf is well-formed" in failed(report)


def test_unreadable_input_is_a_usage_error(tmp_path: Path) -> None:
    code, report, result = run("log", str(tmp_path / "nowhere"))
    assert code == 2 and report["ok"] is False
    assert "neither an http(s) URL nor a directory" in result.output
    (tmp_path / "m").mkdir()
    assert run("log", str(tmp_path / "m"))[0] == 2  # a directory that is no mirror
    assert run("log", "http://127.0.0.1:9")[0] == 2  # nothing listens on the discard port


# --- receipts --------------------------------------------------------------------------------


@pytest.fixture
def donation_receipt(db: Database, money: Money, tmp_path: Path) -> dict[str, Any]:
    note = sign(db)
    return receipt(db, "donation:d1", note=note, identity=money.donor)


def _write(tmp_path: Path, value: Any) -> str:
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(value, ensure_ascii=False))
    return str(path)


def test_a_good_receipt_verifies_and_says_what_the_leaf_records(
        donation_receipt: dict[str, Any], tmp_path: Path, money: Money) -> None:
    code, report, result = run("receipt", _write(tmp_path, donation_receipt), "--key", KEY)
    assert code == 0, result.output
    assert "donor opening" in [c["name"] for c in report["checks"]]
    assert f"donation.paid: ¥100.00 from donor_clearing:sandbox to project:{money.project_a}" \
        in result.stdout
    assert report["leaves"][0]["amount"] == 10_000


def test_a_receipt_without_key_uses_its_own_with_a_warning(
        donation_receipt: dict[str, Any], tmp_path: Path) -> None:
    code, report, _ = run("receipt", _write(tmp_path, donation_receipt))
    assert code == 0
    assert any("obtain the key independently" in w for w in report["warnings"])


def test_a_receipt_with_a_changed_amount_fails(donation_receipt: dict[str, Any],
                                               tmp_path: Path) -> None:
    leaf = donation_receipt["leaves"][0]
    fields = leaves.decode(base64.b64decode(leaf["data"]))
    fields["amount"] = 100_000
    leaf["data"] = base64.b64encode(leaves.encode(fields)).decode()
    code, report, _ = run("receipt", _write(tmp_path, donation_receipt), "--key", KEY)
    assert code == 1
    assert {f"leaf {leaf['index']}: hash",
            f"leaf {leaf['index']}: inclusion in the tree of 15"} <= set(failed(report))


def test_a_receipt_with_a_changed_proof_fails(donation_receipt: dict[str, Any],
                                              tmp_path: Path) -> None:
    leaf = donation_receipt["leaves"][0]
    h = bytearray(base64.b64decode(leaf["proof"][1]))
    h[0] ^= 1
    leaf["proof"][1] = base64.b64encode(bytes(h)).decode()
    code, report, _ = run("receipt", _write(tmp_path, donation_receipt), "--key", KEY)
    assert code == 1
    assert failed(report) == [f"leaf {leaf['index']}: inclusion in the tree of 15"]
    leaf["proof"] = leaf["proof"][:-1]  # a proof of the wrong length
    code, report, _ = run("receipt", _write(tmp_path, donation_receipt), "--key", KEY)
    assert code == 1


def test_a_receipt_with_a_changed_note_fails(donation_receipt: dict[str, Any],
                                             tmp_path: Path) -> None:
    note = donation_receipt["checkpoint"]
    lines = note.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # claim a bigger tree
    donation_receipt["checkpoint"] = "\n".join(lines)
    code, report, _ = run("receipt", _write(tmp_path, donation_receipt), "--key", KEY)
    assert code == 1
    assert "checkpoint: signature" in failed(report)


def test_a_receipt_whose_tree_is_not_the_notes_fails(donation_receipt: dict[str, Any],
                                                     tmp_path: Path) -> None:
    donation_receipt["tree_size"] = 14
    code, report, _ = run("receipt", _write(tmp_path, donation_receipt), "--key", KEY)
    assert code == 1
    assert "checkpoint covers the receipt's tree" in failed(report)


def test_a_wrong_donor_opening_fails(donation_receipt: dict[str, Any], tmp_path: Path) -> None:
    donation_receipt["opening"]["identity"] = "user:424242"
    code, report, _ = run("receipt", _write(tmp_path, donation_receipt), "--key", KEY)
    assert code == 1
    assert failed(report) == ["donor opening"]


def test_a_receipt_with_several_leaves_and_no_opening(db: Database, money: Money,
                                                      tmp_path: Path) -> None:
    value = receipt(db, "refund:1", note=sign(db))
    assert len(value["leaves"]) == 2
    code, report, result = run("receipt", _write(tmp_path, value), "--key", KEY)
    assert code == 0, result.output
    assert "refund.requested: ¥25.00" in result.stdout and "refund.done: ¥25.00" in result.stdout


def test_a_file_that_is_not_a_receipt(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("not json")
    assert run("receipt", str(tmp_path / "x.json"))[0] == 2
    assert run("receipt", _write(tmp_path, {"format": "other"}))[0] == 1


# --- consistency between checkpoints ---------------------------------------------------------


def _proof_file(db: Database, tmp_path: Path, first: int, second: int) -> str:
    with db.transaction(write=False) as session:
        proof = log_service.consistency_proof(session, first, second)
    path = tmp_path / f"proof-{first}-{second}.json"
    path.write_text(json.dumps({"first": first, "second": second,
                                "proof": [base64.b64encode(h).decode() for h in proof]}))
    return str(path)


def _note_file(tmp_path: Path, name: str, note: str, as_json: bool = False) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(checkpoint_json(note)) if as_json else note)
    return str(path)


def test_two_checkpoints_of_one_log_are_consistent(db: Database, money: Money,
                                                   tmp_path: Path) -> None:
    old = sign(db)
    post_other_money(db)
    new = sign(db)
    proof = _proof_file(db, tmp_path, 15, 18)
    old_file = _note_file(tmp_path, "old.txt", old)
    new_file = _note_file(tmp_path, "new.json", new, as_json=True)
    code, report, result = run("consistency", old_file, new_file, "--proof", proof, "--key", KEY)
    assert code == 0, result.output
    assert report["old"]["size"] == 15 and report["new"]["size"] == 18
    # Given the other way round, the checkpoints are put in order.
    assert run("consistency", new_file, old_file, "--proof", proof, "--key", KEY)[0] == 0
    # The same checkpoint twice needs no proof.
    assert run("consistency", old_file, old_file, "--key", KEY)[0] == 0
    # Without a proof, nothing can be said: a usage error.
    assert run("consistency", old_file, new_file, "--key", KEY)[0] == 2


def test_a_forked_history_signed_by_the_same_key_is_detected(
        db: Database, money: Money, tmp_path: Path, sqlite_template: Path) -> None:
    """Database X and database Y record different money but are signed by the same key."""
    honest = sign(db)  # X: 15 leaves
    post_other_money(db)
    honest_later = sign(db)  # X: 18 leaves
    copy = tmp_path / "fork.sqlite3"
    shutil.copy(sqlite_template, copy)
    fork = Database(f"sqlite:///{copy}")
    try:
        post_money(fork)
        post_other_money(fork, rounds=2)
        fork_same_size = sign(fork)  # Y: 17 leaves, the last two differ from X's
        post_other_money(fork, rounds=1)
        fork_later = sign(fork)  # Y: 18 leaves
        fork_proof = _proof_file(fork, tmp_path, 15, 18)
        honest_proof = _proof_file(db, tmp_path, 15, 18)
    finally:
        fork.dispose()
    a = _note_file(tmp_path, "x18.txt", honest_later)
    b = _note_file(tmp_path, "y18.txt", fork_later)
    code, report, _ = run("consistency", a, b, "--key", KEY)
    assert code == 1
    fork_check = next(c for c in report["checks"] if c["name"].startswith("consistency"))
    assert fork_check["detail"].startswith("FORK")
    # From X's first checkpoint to Y's later one: neither server's proof makes them consistent
    # (Y's first 15 leaves hash differently: their times and commitments differ).
    x15 = _note_file(tmp_path, "x15.txt", honest)
    for proof in (fork_proof, honest_proof):
        code, report, _ = run("consistency", x15, b, "--proof", proof, "--key", KEY)
        assert code == 1, proof
    y17 = _note_file(tmp_path, "y17.txt", fork_same_size)
    assert run("consistency", y17, b, "--proof", _proof_file(db, tmp_path, 17, 18),
               "--key", KEY)[0] == 1


def test_checkpoints_of_different_logs_or_keys(db: Database, money: Money,
                                               tmp_path: Path) -> None:
    note = sign(db)
    other = sign(db, signer(OTHER_SEED, "other.test/transparency"))
    a = _note_file(tmp_path, "a.txt", note)
    b = _note_file(tmp_path, "b.txt", other)
    code, report, _ = run("consistency", a, b, "--key", KEY)
    assert code == 1
    assert "new checkpoint: signature" in failed(report)
    assert run("consistency", a, a)[0] == 2  # no key, no site to ask: a usage error


# --- the command's shape ---------------------------------------------------------------------


def test_verify_alone_prints_help_and_follow_is_not_mixed_with_a_command() -> None:
    result = runner.invoke(cli.app, ["verify"])
    assert result.exit_code == 2
    assert "receipt" in result.stdout and "--follow" in result.stdout
    result = runner.invoke(cli.app, ["verify", "--follow", "http://127.0.0.1:9", "log", "x"])
    assert result.exit_code == 2


def test_a_state_file_for_another_site_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"format": "shanju-follow/v1", "url": "http://a.example",
                                 "verifier_key": KEY, "origin": "o", "size": 0,
                                 "root": base64.b64encode(bytes(32)).decode(),
                                 "timestamp_ms": 1, "checkpoint": "", "frontier": []}))
    result = runner.invoke(cli.app, ["verify", "--follow", "http://b.example", "--state",
                                     str(state), "--max-polls", "1"])
    assert result.exit_code == 2
    assert "follows http://a.example" in result.output
    state.write_text("{}")
    result = runner.invoke(cli.app, ["verify", "follow", "http://a.example", "--state",
                                     str(state), "--max-polls", "1"])
    assert result.exit_code == 2
    assert "not a follow state file" in result.output


def test_a_smaller_tree_signed_later_is_a_rollback(db: Database, money: Money,
                                                   tmp_path: Path, sqlite_template: Path) -> None:
    """The site signed 18 leaves, then (its history cut back to 15 and regrown) 15 leaves."""
    post_other_money(db)
    later_big = sign(db)
    copy = tmp_path / "rolled-back.sqlite3"
    shutil.copy(sqlite_template, copy)
    rolled = Database(f"sqlite:///{copy}")
    try:
        time.sleep(0.002)
        post_money(rolled)
        small = sign(rolled)
    finally:
        rolled.dispose()
    big_file = _note_file(tmp_path, "big.txt", later_big)
    small_file = _note_file(tmp_path, "small.txt", small)
    code, report, _ = run("consistency", big_file, small_file, "--key", KEY,
                          "--proof", _proof_file(db, tmp_path, 15, 18))
    assert code == 1
    assert "signing times" in failed(report)


def test_urls_on_a_site() -> None:
    assert verify.receipt_url("https://s.example/transparency/receipts/gift:ab12") == \
        "https://s.example/api/v1/transparency/receipts/gift:ab12"
    assert verify.receipt_url("https://s.example/x/transparency/receipts/gift:a?b=1") == \
        "https://s.example/x/api/v1/transparency/receipts/gift:a"
    api = "https://s.example/api/v1/transparency/receipts/gift:a"
    assert verify.receipt_url(api) == api
    assert verify.site_root("https://s.example/api/v1/transparency/checkpoint") == \
        "https://s.example"
    assert verify.site_root("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"


def test_the_verifier_reads_no_database() -> None:
    """An auditor runs it against someone else's server: no database code of its own."""
    import ast  # noqa: PLC0415

    for name in ("verify.py", "verify_cli.py"):
        tree = ast.parse((Path(verify.__file__).parent / name).read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in modules if m and (
            m.startswith(("sqlalchemy", "shanju.core.db", "shanju.ledger"))
            or m in ("shanju.transparency.service", "shanju.transparency.models",
                     "shanju.transparency.log"))}, name
