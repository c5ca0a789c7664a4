"""Signed checkpoints: the C2SP signed-note format, Ed25519 keys, and stored checkpoints.

Interoperability: with no Go toolchain here, the format is checked against published notes —
the example of ``golang.org/x/mod/sumdb/note`` (whose private key is published, so our signer
must reproduce its signature byte for byte: Ed25519 is deterministic) and two real checkpoints
served by ``sum.golang.org`` with its well-known verifier key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.transparency import checkpoints as cp
from shanju.transparency import service
from shanju.transparency.checkpoints import CheckpointError, Signer
from shanju.transparency.merkle import EMPTY_ROOT
from shanju.transparency.models import Checkpoint
from tests.factories import make_org, make_project

# --- the published example of golang.org/x/mod/sumdb/note (note_test.go / package docs) -----
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = (GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF"
           "YC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")

# --- real tree heads served by sum.golang.org, and its published verifier key ------------------
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTES = [
    ("go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
     "— sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cV"
     "tYspg3dxXABkGZZKdsQ8=\n", 65209736),
    ("go.sum database tree\n3784599\n7uvxIZ67TZygcq/AehTD8iHYt81Ih+Zl2Y7vXZbfszQ=\n\n"
     "— sum.golang.org Az3grn972wXskjQrsZhVGc93fTU2uOsmSTiId1Wn1lxDCup5z4ggl1/4gaUqOkMa6cMbYvjB"
     "7hn7yemNr7Zqanol/go=\n", 3784599),
]

SEED = bytes(range(32))  # a fixed key for the known-answer test
ORIGIN = "shanju.example/transparency"


def _go_seed() -> bytes:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])  # PRIVATE+KEY+name+hash+key
    assert raw[0] == cp.ALG_ED25519
    return raw[1:]


def signer() -> Signer:
    return Signer.from_seed(ORIGIN, SEED)


# --- interoperability with published notes ---------------------------------------------------


def test_our_signer_reproduces_the_go_reference_note_byte_for_byte() -> None:
    go = Signer.from_seed("PeterNeumann", _go_seed())
    assert go.key_id == GO_VKEY
    assert go.sign(GO_TEXT) == GO_NOTE


def test_the_go_reference_note_opens_with_its_published_verifier_key() -> None:
    text, sig = cp.open_note(GO_NOTE, GO_VKEY)
    assert text == GO_TEXT
    assert sig.name == "PeterNeumann"
    assert sig.key_hash.hex() == "c74f20a3"
    with pytest.raises(CheckpointError):
        cp.open_note(GO_NOTE.replace("cryptography", "cryptographY"), GO_VKEY)


@pytest.mark.parametrize(("note", "size"), SUMDB_NOTES)
def test_real_sum_golang_org_checkpoints_parse_and_verify(note: str, size: int) -> None:
    parsed = cp.parse_note(note)
    assert parsed.origin == "go.sum database tree"
    assert parsed.size == size
    assert len(parsed.root) == 32
    assert parsed.timestamp_ms is None
    assert parsed.signatures[0].name == "sum.golang.org"
    cp.open_note(note, SUMDB_VKEY)
    with pytest.raises(CheckpointError):
        cp.open_note(note.replace(str(size), str(size + 1)), SUMDB_VKEY)


# --- our checkpoints ---------------------------------------------------------------------------


def test_known_answer_for_a_fixed_seed() -> None:
    s = signer()
    public = bytes.fromhex("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
    assert s.public_key == public  # RFC 8032: public key of the seed 00 01 … 1f
    expected_hash = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + public).digest()[:4]
    assert s.key_id == (f"{ORIGIN}+{expected_hash.hex()}+"
                        + base64.b64encode(b"\x01" + public).decode())
    body = cp.checkpoint_body(ORIGIN, 5, EMPTY_ROOT, 1_700_000_000_000)
    assert body == (f"{ORIGIN}\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
                    "timestamp 1700000000000\n")
    note = s.sign(body)
    # Ed25519 is deterministic: the same key and body always give this exact note.
    assert note == body + "\n" + KNOWN_SIGNATURE_LINE


KNOWN_SIGNATURE_LINE = (
    "— shanju.example/transparency 3GA08pja/TaYGb9KE7YHKXBLFl1gjbk85XEDUzH55Ay06MtLlRhS8hvick1fm9"
    "VWJfzkhptY36TLPH/N+jCZnqVZuQE=\n"
)


def test_sign_and_verify_round_trip() -> None:
    s = signer()
    root = hashlib.sha256(b"root").digest()
    note = s.sign(cp.checkpoint_body(ORIGIN, 42, root, 1_234))
    parsed = cp.verify_note(note, s.key_id)
    assert (parsed.origin, parsed.size, parsed.root, parsed.timestamp_ms) == (
        ORIGIN, 42, root, 1_234)
    assert parsed.body.endswith("timestamp 1234\n")
    assert parsed.signatures[0].key_hash == s.key_hash
    assert note.split("\n\n")[1].startswith("\u2014 " + ORIGIN + " ")


def _note(size: int = 7) -> str:
    return signer().sign(cp.checkpoint_body(ORIGIN, size, EMPTY_ROOT, 99))


def test_a_tampered_body_is_rejected() -> None:
    note = _note(7)
    with pytest.raises(CheckpointError, match="not valid"):
        cp.verify_note(note.replace("\n7\n", "\n8\n", 1), signer().key_id)
    with pytest.raises(CheckpointError, match="not valid"):
        cp.verify_note(note.replace("timestamp 99", "timestamp 98"), signer().key_id)


def test_a_wrong_key_is_rejected() -> None:
    other = Signer.from_seed(ORIGIN, bytes(32))
    with pytest.raises(CheckpointError, match="not signed by"):
        cp.verify_note(_note(), other.key_id)
    # Same name and a forged key hash: the signature itself does not verify.
    forged = other.sign(cp.checkpoint_body(ORIGIN, 7, EMPTY_ROOT, 99)).replace(
        base64.b64encode(other.key_hash).decode()[:4], base64.b64encode(signer().key_hash)
        .decode()[:4])
    with pytest.raises(CheckpointError):
        cp.verify_note(forged, signer().key_id)


def test_a_wrong_origin_is_rejected() -> None:
    s = signer()
    note = s.sign(cp.checkpoint_body("other.example/log", 7, EMPTY_ROOT, 99))
    with pytest.raises(CheckpointError, match="origin"):
        cp.verify_note(note, s.key_id)
    # A key of another name does not match the note's signature line at all.
    renamed = Signer.from_seed("other.example/log", SEED)
    with pytest.raises(CheckpointError, match="not signed by"):
        cp.verify_note(_note(), renamed.key_id)


@pytest.mark.parametrize("cut", [1, 5, 20, 60])
def test_a_truncated_signature_is_rejected(cut: int) -> None:
    note = _note()
    line = note.rstrip("\n").rsplit(" ", 1)[1]
    short = base64.b64encode(base64.b64decode(line)[:-cut]).decode()
    with pytest.raises(CheckpointError):
        cp.verify_note(note.replace(line, short), signer().key_id)


@pytest.mark.parametrize("mangle", [
    lambda n: n.replace("\n\n", "\n"),                      # no empty line
    lambda n: n[:-1],                                       # no final newline
    lambda n: n.replace("\u2014 ", "- "),                   # not an em dash
    lambda n: n.replace("\n7\n", "\n07\n"),                 # non-canonical size
    lambda n: n.replace("\n7\n", "\n-7\n"),
    lambda n: n.replace("47DEQ", "47DE!"),                  # root not base64
    lambda n: n.replace("timestamp", "\ttimestamp"),       # a control character
    lambda n: n.split("\n", 1)[1],                          # no origin line
])
def test_malformed_notes_are_rejected(mangle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckpointError):
        cp.verify_note(mangle(_note(7)), signer().key_id)


def test_signatures_by_other_keys_are_ignored() -> None:
    note = _note()
    extra = Signer.from_seed("witness.example", bytes(32))
    cosigned = note + extra.signature_line(note.split("\n\n")[0] + "\n")
    assert cp.verify_note(cosigned, signer().key_id).size == 7
    assert len(cp.parse_note(cosigned).signatures) == 2


@pytest.mark.parametrize("key", [
    "",
    "name+c74f20a3",
    "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong hash
    "PeterNeumann+c74f20a3+AhpjMQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # not Ed25519
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # a space
])
def test_bad_verifier_keys_are_rejected(key: str) -> None:
    with pytest.raises(CheckpointError):
        cp.parse_verifier_key(key)


# --- keys and settings -------------------------------------------------------------------------


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(environment="test", transparency_key_file=tmp_path / "keys" / "t.key",
                    **kw)  # type: ignore[arg-type]


def test_the_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = cp.load_signer(settings)
    path = tmp_path / "keys" / "t.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    again = cp.load_signer(settings)
    assert again.public_key == first.public_key
    assert again.key_id == first.key_id
    assert first.name == "127.0.0.1:8000/transparency"  # from the default base_url


def test_the_origin_setting_names_the_key(tmp_path: Path) -> None:
    assert cp.load_signer(_settings(tmp_path, transparency_origin="log.example")).name == (
        "log.example")
    assert cp.load_signer(_settings(tmp_path, base_url="https://shanju.org.cn/")).name == (
        "shanju.org.cn/transparency")
    with pytest.raises(CheckpointError, match="key name"):
        cp.load_signer(_settings(tmp_path, transparency_origin="has space"))


def test_a_corrupt_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "t.key"
    path.parent.mkdir()
    path.write_text("not a key\n")
    with pytest.raises(CheckpointError, match="not a readable unencrypted PEM"):
        cp.load_signer(_settings(tmp_path))


def test_a_directory_as_key_file_is_a_clear_error(tmp_path: Path) -> None:
    # The "cannot read" path (an unreadable file is the same OSError, but CI runs as root,
    # who reads files whatever their mode).
    (tmp_path / "keys" / "t.key").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="cannot read"):
        cp.load_signer(_settings(tmp_path))


# --- stored checkpoints on both databases -------------------------------------------------------


def _post(db: Database, amounts: list[int], tag: str) -> None:
    with db.transaction() as session:
        org = make_org(session)
        project = make_project(session, org=org)
        for i, amount in enumerate(amounts):
            ledger.post(session, ledger.transfer(
                "donation.paid", source=ledger.donor_clearing("sandbox"),
                destination=ledger.project_fund(project.id), amount_fen=amount,
                dedupe_key=f"donation.paid:{tag}{i}"))


def _count(db: Database) -> int:
    with db.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(Checkpoint)) or 0)


def test_sign_now_signs_the_head_and_reuses_a_fresh_one(db: Database) -> None:
    s = signer()
    with db.transaction() as session:
        assert cp.latest(session) is None
        empty = cp.sign_now(session, s)
    assert (empty.size, empty.root) == (0, EMPTY_ROOT)
    cp.verify_note(empty.note, s.key_id)

    _post(db, [100, 200, 300], "a")
    with db.transaction() as session:
        head = service.head(session)
        first = cp.sign_now(session, s)
    assert head.size >= 3
    assert (first.size, first.root) == (head.size, head.root)
    parsed = cp.verify_note(first.note, s.key_id)
    assert (parsed.size, parsed.root, parsed.timestamp_ms) == (
        first.size, first.root, first.timestamp_ms)
    assert first.key_id == s.key_name_hash

    with db.transaction() as session:  # same size, < 1 s later: no duplicate
        again = cp.sign_now(session, s)
        assert again.id == first.id
        assert cp.latest(session).id == first.id  # type: ignore[union-attr]
    assert _count(db) == 2


def test_sign_now_signs_again_after_a_second_and_timestamps_never_go_back(db: Database) -> None:
    s = signer()
    with db.transaction() as session:
        first = cp.sign_now(session, s)
    time.sleep(cp.REUSE_SECONDS + 0.05)
    with db.transaction() as session:
        second = cp.sign_now(session, s)
    assert second.id != first.id
    assert second.size == first.size
    assert second.timestamp_ms > first.timestamp_ms


def test_ensure_covering(db: Database) -> None:
    s = signer()
    _post(db, [100], "a")
    with db.transaction() as session:
        first = cp.ensure_covering(session, s, 1)
        size = first.size
        assert cp.ensure_covering(session, s, size).id == first.id
    _post(db, [200, 300], "b")
    with db.transaction() as session:
        assert cp.ensure_covering(session, s, size).id == first.id  # still covers it
        grown = service.head(session).size
        newer = cp.ensure_covering(session, s, grown)
    assert newer.id != first.id
    assert newer.size == grown > size
    # A new key (rotation) gets its own checkpoint even if the old one covers the size.
    rotated = Signer.from_seed(ORIGIN, bytes(32))
    with db.transaction() as session:
        fresh = cp.ensure_covering(session, rotated, 1)
    assert fresh.key_id == rotated.key_name_hash
    cp.verify_note(fresh.note, rotated.key_id)


def test_checkpointer_signs_only_when_the_log_grew(db: Database) -> None:
    s = signer()
    worker = cp.Checkpointer(db, s, interval=60)
    assert worker.run_once() is not None  # none yet: the empty tree
    assert worker.run_once() is None
    _post(db, [100], "a")
    signed = worker.run_once()
    assert signed is not None and signed.size >= 1
    assert worker.run_once() is None


def test_covering_reads_first_and_signs_only_when_needed(db: Database) -> None:
    s = signer()
    first = cp.covering(db, s, 0)
    assert first.size == 0
    assert cp.covering(db, s, 0).id == first.id  # a read, no new row
    _post(db, [100, 200], "c")
    grown = cp.covering(db, s, 2)
    assert grown.size >= 2 and grown.id != first.id
    cp.verify_note(grown.note, s.key_id)
    assert _count(db) == 2


def test_concurrent_signers_make_one_checkpoint(db: Database) -> None:
    s = signer()
    _post(db, [100], "a")
    barrier = threading.Barrier(4)
    ids: list[int] = []
    errors: list[BaseException] = []

    def sign() -> None:
        try:
            barrier.wait()
            with db.transaction() as session:
                ids.append(cp.sign_now(session, s).id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sign) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 1  # the head lock serializes them; the rest reuse the first
    assert _count(db) == 1
