"""The transparency API under /api/v1/transparency/: checkpoints, entries, proofs, tiles.

Everything a client gets is checked the way an auditor would: notes by their signature,
entries by hashing them, proofs against the signed root, tiles by rebuilding the root.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from shanju.app import create_app
from shanju.core.config import Settings
from shanju.core.db import Database
from shanju.ledger import service as ledger
from shanju.transparency import checkpoints as cp
from shanju.transparency import merkle, service
from shanju.transparency.api import tile_index_path
from shanju.transparency.merkle import EMPTY_ROOT
from shanju.transparency.models import Checkpoint
from tests.factories import make_org, make_project
from tests.money import World

API = "/api/v1/transparency"


@pytest.fixture
def settings(db: Database, tmp_path: Path) -> Settings:
    """The shared settings, with the signing key in the test's directory and no background
    checkpointer (tests that want one say so)."""
    return Settings(
        environment="test", database_url=db.url, upload_dir=tmp_path / "uploads",
        secret_key="test-secret", sandbox_secret="test-sandbox-secret",
        transparency_key_file=tmp_path / "keys" / "transparency.key",
        transparency_checkpoint_seconds=0,
    )


def post_money(db: Database, count: int, tag: str = "a") -> None:
    """Post ``count`` donations to one project: the log grows by at least ``count`` leaves."""
    with db.transaction() as session:
        org = make_org(session)
        project = make_project(session, org=org)
        ledger.post_many(session, [
            ledger.transfer("donation.paid", source=ledger.donor_clearing("sandbox"),
                            destination=ledger.project_fund(project.id), amount_fen=100 + i,
                            dedupe_key=f"donation.paid:{tag}{i}")
            for i in range(count)
        ])


def d(text: str) -> bytes:
    return base64.b64decode(text)


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


def checkpoint(client: TestClient) -> dict[str, Any]:
    response = client.get(f"{API}/checkpoint")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- checkpoint and key ----------------------------------------------------------------------


def test_checkpoint_of_the_empty_log_is_signed_and_verifies(client: TestClient) -> None:
    body = checkpoint(client)
    assert body["size"] == 0
    assert d(body["root"]) == EMPTY_ROOT
    assert body["origin"] == "127.0.0.1:8000/transparency"  # from the default base_url
    parsed = cp.verify_note(body["checkpoint"], body["verifier_key"])
    assert (parsed.size, parsed.root, parsed.timestamp_ms) == (0, EMPTY_ROOT, body["timestamp"])
    assert cp.parse_verifier_key(body["verifier_key"]).public_key == d(body["public_key"])
    assert client.get(f"{API}/checkpoint").headers["cache-control"] == "no-cache"


def test_checkpoint_signs_on_demand_at_most_once_a_second(client: TestClient,
                                                          db: Database) -> None:
    first = checkpoint(client)
    post_money(db, 3)
    # The latest checkpoint is younger than a second: it is served as it is.
    assert checkpoint(client)["size"] == first["size"] == 0
    time.sleep(1.05)
    grown = checkpoint(client)
    assert grown["size"] >= 3
    assert grown["timestamp"] > first["timestamp"]
    cp.verify_note(grown["checkpoint"], grown["verifier_key"])
    # Nothing new: the same checkpoint, no new row.
    time.sleep(1.05)
    assert checkpoint(client)["checkpoint"] == grown["checkpoint"]
    with db.transaction(write=False) as session:
        assert len(session.scalars(select(Checkpoint)).all()) == 2


def test_public_key(client: TestClient) -> None:
    body = client.get(f"{API}/public-key").json()
    assert body["algorithm"] == "Ed25519"
    key = cp.parse_verifier_key(body["verifier_key"])
    assert key.public_key == d(body["public_key"])
    assert key.name == body["origin"]
    assert body["verifier_key"] == checkpoint(client)["verifier_key"]


def test_the_origin_setting_is_the_key_name(db: Database, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"transparency_origin": "log.example.cn"}),
                     database=db)
    with TestClient(app) as client:
        body = checkpoint(client)
    assert body["origin"] == "log.example.cn"
    assert body["checkpoint"].startswith("log.example.cn\n0\n")


# --- entries and proofs ----------------------------------------------------------------------


@pytest.fixture
def grown(client: TestClient, db: Database) -> dict[str, Any]:
    """A log of a few leaves and a checkpoint covering them."""
    post_money(db, 5, "g")
    time.sleep(0.01)
    with db.transaction() as session:
        cp.sign_now(session, cp.load_signer(client.app.state.settings))  # type: ignore[attr-defined]
    return checkpoint(client)


def test_entries_hash_to_proofs_that_reach_the_signed_root(client: TestClient,
                                                           grown: dict[str, Any]) -> None:
    size, root = grown["size"], d(grown["root"])
    entries = client.get(f"{API}/entries", params={"start": 0, "end": size}).json()["entries"]
    assert [e["index"] for e in entries] == list(range(size))
    for entry in entries:
        leaf = merkle.leaf_hash(d(entry["data"]))
        proof = client.get(f"{API}/proof/inclusion",
                           params={"index": entry["index"], "size": size}).json()
        assert (proof["index"], proof["size"]) == (entry["index"], size)
        assert merkle.verify_inclusion(entry["index"], size, leaf,
                                       [d(h) for h in proof["proof"]], root)
        by_hash = client.get(f"{API}/proof/by-hash",
                             params={"hash": base64.b64encode(leaf).decode(), "size": size})
        assert by_hash.status_code == 200, by_hash.text
        assert by_hash.json() == proof
    # A leaf is canonical JSON of one transfer.
    assert b'"amount":' in d(entries[0]["data"])


def test_consistency_proofs_link_every_earlier_size(client: TestClient,
                                                    grown: dict[str, Any]) -> None:
    size, root = grown["size"], d(grown["root"])
    leaves = [d(e["data"]) for e in client.get(
        f"{API}/entries", params={"start": 0, "end": size}).json()["entries"]]
    tree = merkle.MemoryTree()
    tree.append_data(leaves)
    assert tree.root() == root
    for first in range(1, size + 1):
        body = client.get(f"{API}/proof/consistency",
                          params={"first": first, "second": size}).json()
        assert (body["first"], body["second"]) == (first, size)
        assert merkle.verify_consistency(first, size, tree.root(first), root,
                                         [d(h) for h in body["proof"]])


def test_proofs_are_cacheable_forever_with_an_etag(client: TestClient,
                                                   grown: dict[str, Any]) -> None:
    response = client.get(f"{API}/proof/inclusion", params={"index": 0, "size": grown["size"]})
    assert "immutable" in response.headers["cache-control"]
    etag = response.headers["etag"]
    again = client.get(f"{API}/proof/inclusion", params={"index": 0, "size": grown["size"]},
                       headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag
    other = client.get(f"{API}/proof/inclusion", params={"index": 1, "size": grown["size"]})
    assert other.headers["etag"] != etag
    # A range of entries that all exist is immutable too; one reaching past the log is not.
    whole = client.get(f"{API}/entries", params={"start": 0, "end": grown["size"]})
    assert "immutable" in whole.headers["cache-control"]
    past = client.get(f"{API}/entries", params={"start": 0, "end": grown["size"] + 5})
    assert past.status_code == 200
    assert len(past.json()["entries"]) == grown["size"]  # cut at the log's end
    assert "immutable" not in past.headers.get("cache-control", "")


def test_a_range_above_1000_entries_is_cut(client: TestClient, db: Database) -> None:
    post_money(db, 1_005, "big")
    response = client.get(f"{API}/entries", params={"start": 2, "end": 1_500})
    assert response.status_code == 200
    entries = response.json()["entries"]
    assert len(entries) == 1_000
    assert entries[0]["index"] == 2 and entries[-1]["index"] == 1_001


@pytest.mark.parametrize(("path", "params", "status", "code"), [
    ("proof/inclusion", {"index": -1, "size": 3}, 422, "invalid_leaf_index"),
    ("proof/inclusion", {"index": 3, "size": 3}, 422, "invalid_leaf_index"),
    ("proof/inclusion", {"index": 7, "size": 3}, 422, "invalid_leaf_index"),
    ("proof/inclusion", {"index": 0, "size": 10**6}, 422, "tree_size_too_large"),
    ("proof/inclusion", {"index": 0, "size": 2**63}, 422, "validation_error"),
    ("proof/inclusion", {"index": "x", "size": 3}, 422, "validation_error"),
    ("proof/inclusion", {"size": 3}, 422, "validation_error"),
    ("proof/consistency", {"first": 0, "second": 3}, 422, "invalid_tree_sizes"),
    ("proof/consistency", {"first": 4, "second": 3}, 422, "invalid_tree_sizes"),
    ("proof/consistency", {"first": -2, "second": 3}, 422, "invalid_tree_sizes"),
    ("proof/consistency", {"first": 1, "second": 10**6}, 422, "tree_size_too_large"),
    ("entries", {"start": 2, "end": 2}, 422, "invalid_range"),
    ("entries", {"start": 3, "end": 1}, 422, "invalid_range"),
    ("entries", {"start": -1, "end": 1}, 422, "invalid_range"),
    ("entries", {"start": 10**6, "end": 10**6 + 1}, 422, "range_beyond_log"),
    ("proof/by-hash", {"hash": "not base64!", "size": 3}, 422, "invalid_hash"),
    ("proof/by-hash", {"hash": base64.b64encode(b"short").decode(), "size": 3}, 422,
     "invalid_hash"),
    ("proof/by-hash", {"hash": base64.b64encode(bytes(32)).decode(), "size": 3}, 404,
     "leaf_not_found"),
    ("proof/by-hash", {"hash": base64.b64encode(bytes(32)).decode(), "size": 10**6}, 422,
     "tree_size_too_large"),
])
def test_bad_input_gets_a_json_error_with_a_stable_code(
    client: TestClient, db: Database, path: str, params: dict[str, Any], status: int, code: str,
) -> None:
    post_money(db, 3)
    response = client.get(f"{API}/{path}", params=params)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert "immutable" not in response.headers.get("cache-control", "")


def test_by_hash_of_a_leaf_beyond_the_size_asked(client: TestClient,
                                                 grown: dict[str, Any]) -> None:
    size = grown["size"]
    last = client.get(f"{API}/entries", params={"start": size - 1, "end": size}).json()
    leaf = merkle.leaf_hash(d(last["entries"][0]["data"]))
    response = client.get(f"{API}/proof/by-hash", params={
        "hash": base64.b64encode(leaf).decode(), "size": size - 1})
    assert response.status_code == 404
    assert error_code(response) == "leaf_not_in_tree"
    # URL-safe base64, and a '+' that arrived as a space, are understood.
    urlsafe = base64.urlsafe_b64encode(leaf).decode()
    ok = client.get(f"{API}/proof/by-hash", params={"hash": urlsafe, "size": size})
    assert ok.status_code == 200 and ok.json()["index"] == size - 1


# --- tiles (C2SP tlog-tiles) ----------------------------------------------------------------------


def test_tile_index_paths() -> None:
    assert tile_index_path(0) == "000"
    assert tile_index_path(67) == "067"
    assert tile_index_path(1234067) == "x001/x234/067"
    assert tile_index_path(1000) == "x001/000"


def test_tiles_rebuild_the_signed_root(client: TestClient, db: Database) -> None:
    post_money(db, 300, "t")
    body = checkpoint(client)
    size, root = body["size"], d(body["root"])
    assert size >= 300
    full, rest = divmod(size, 256)

    leaf_hashes: list[bytes] = []
    data: list[bytes] = []
    for n in range(full + (1 if rest else 0)):
        suffix = f".p/{rest}" if n == full else ""
        tile = client.get(f"{API}/tile/0/{tile_index_path(n)}{suffix}")
        assert tile.status_code == 200, tile.text
        assert tile.headers["content-type"] == "application/octet-stream"
        cache = tile.headers["cache-control"]
        assert ("immutable" in cache) == (suffix == "")
        hashes = [tile.content[i:i + 32] for i in range(0, len(tile.content), 32)]
        assert len(hashes) == (rest if suffix else 256)
        leaf_hashes += hashes
        bundle = client.get(f"{API}/tile/entries/{tile_index_path(n)}{suffix}").content
        while bundle:
            length = int.from_bytes(bundle[:2], "big")
            data.append(bundle[2:2 + length])
            bundle = bundle[2 + length:]

    assert [merkle.leaf_hash(x) for x in data] == leaf_hashes
    tree = merkle.MemoryTree()
    tree.append_hashes(leaf_hashes)
    assert tree.root() == root

    # Level 1 holds the roots of each full 256-leaf tile.
    level1 = client.get(f"{API}/tile/1/000.p/{full}")
    assert level1.status_code == 200
    assert level1.content[:32] == tree.root(256)


@pytest.mark.parametrize("path", [
    "tile/0/001",          # not complete yet
    "tile/0/000.p/200",    # wider than the log
    "tile/0/0",            # not 3 digits
    "tile/0/x000/000",     # not canonical
    "tile/0/000.p/256",    # a full tile is not partial
    "tile/0/000.p/0",
    "tile/01/000",
    "tile/9/000",          # no such level
    "tile/entries/001",
    "tile/entries/abc",
])
def test_missing_or_malformed_tiles_are_404(client: TestClient, db: Database, path: str) -> None:
    post_money(db, 3)
    response = client.get(f"{API}/{path}")
    assert response.status_code == 404, response.text
    assert error_code(response) == "tile_not_found"


# --- the background checkpointer -----------------------------------------------------------------


@pytest.fixture
def quick_app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings.model_copy(update={"transparency_checkpoint_seconds": 0.1}),
                      database=db)


def _checkpoints(db: Database) -> list[tuple[int, str]]:
    with db.transaction(write=False) as session:
        return [(int(c.size), c.note) for c in
                session.scalars(select(Checkpoint).order_by(Checkpoint.id))]


def test_the_running_app_signs_a_checkpoint_after_a_donation(
    quick_app: FastAPI, db: Database, world: World,
) -> None:
    with TestClient(quick_app) as client:
        created = client.post("/api/v1/donations", headers={**world.auth(),
                              "Idempotency-Key": "cp"},
                              json={"project_id": world.project_id, "amount_fen": 5000})
        assert created.status_code == 201, created.text
        intent_id = created.json()["payment"]["intent_id"]
        paid = client.post(f"/api/v1/payments/sandbox/{intent_id}/complete",
                           json={"outcome": "succeeded"}, headers=world.auth())
        assert paid.status_code == 200, paid.text
        with db.transaction(write=False) as session:
            size = service.head(session).size
        assert size >= 1  # the donation is in the log
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(s >= size for s, _ in _checkpoints(db)):
            time.sleep(0.05)
        signed = _checkpoints(db)
        time.sleep(0.4)  # a few more rounds: nothing new to sign
        assert _checkpoints(db) == signed
    assert signed and signed[-1][0] == size
    signer = quick_app.state.transparency_signer
    for _size, note in signed:
        cp.verify_note(note, signer.key_id)
    # Stopped with the app: no thread left behind signing.
    post_money(db, 1, "after")
    time.sleep(0.3)
    assert _checkpoints(db) == signed


def test_no_background_checkpointer_when_disabled(client: TestClient, db: Database) -> None:
    post_money(db, 1)
    time.sleep(0.3)
    assert _checkpoints(db) == []
