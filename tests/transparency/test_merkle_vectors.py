"""Every shared RFC 6962 / RFC 9162 test vector (transparency-dev/merkle's ``testdata``).

One test per file, so a failure names the vector. Must-fail vectors (``wantErr``) must be
rejected; happy paths accepted; and where a vector comes from the classic eight-leaf reference
tree (NOTICE.md beside the vectors), the proof we GENERATE must equal the vector's proof.

The vectors live outside the repository (``<repo>/../shared/testdata/rfc6962``, found by
``tests.conftest.RFC6962_VECTORS``) and are never
copied in: without them these tests skip with the reason, except in CI (``CI=true``), where
their absence fails the run.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from shanju.transparency import merkle
from tests.conftest import IN_CI, RFC6962_VECTORS

VECTORS = RFC6962_VECTORS

# The reference tree of NOTICE.md: leaf data (hex) and its root at size 8.
REFERENCE_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                    "606162636465666768696a6b6c6d6e6f"]
REFERENCE_ROOT_8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def _params(kind: str) -> list[Any]:
    folder = VECTORS / kind
    files = sorted(folder.rglob("*.json")) if folder.is_dir() else []
    if not files:
        return [pytest.param(None, id="vectors-missing")]
    return [pytest.param(path, id=path.relative_to(folder).as_posix()) for path in files]


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        reason = f"RFC 6962 test vectors not found at {VECTORS}"
        if IN_CI:
            pytest.fail(f"{reason} (they are mandatory in CI)")
        pytest.skip(reason)
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


@pytest.fixture(scope="module")
def reference() -> merkle.MemoryTree:
    tree = merkle.MemoryTree()
    tree.append_data([bytes.fromhex(h) for h in REFERENCE_LEAVES])
    assert tree.root().hex() == REFERENCE_ROOT_8
    return tree


def test_reference_tree_root_is_the_published_one(reference: merkle.MemoryTree) -> None:
    assert reference.root(8).hex() == REFERENCE_ROOT_8
    assert reference.root(0) == merkle.EMPTY_ROOT == _b64(
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")


@pytest.mark.parametrize("path", _params("inclusion"))
def test_inclusion_vector(path: Path | None, reference: merkle.MemoryTree) -> None:
    v = _load(path)
    index, size = int(v["leafIdx"]), int(v["treeSize"])
    leaf, root = _b64(v["leafHash"]), _b64(v["root"])
    proof = [_b64(p) for p in v["proof"] or []]
    accepted = merkle.verify_inclusion(index, size, leaf, proof, root)
    if v["wantErr"]:
        assert not accepted, f"must be rejected: {v['desc']}"
        try:
            computed = merkle.root_from_inclusion(index, size, leaf, proof)
        except merkle.ProofError:
            return
        assert computed != root
        return
    assert accepted, f"must be accepted: {v['desc']}"
    assert merkle.root_from_inclusion(index, size, leaf, proof) == root
    if 0 < size <= 8 and reference.root(size) == root:
        assert reference.leaf(index) == leaf
        assert reference.inclusion_proof(index, size) == proof


@pytest.mark.parametrize("path", _params("consistency"))
def test_consistency_vector(path: Path | None, reference: merkle.MemoryTree) -> None:
    v = _load(path)
    first, second = int(v["size1"]), int(v["size2"])
    root1, root2 = _b64(v["root1"]), _b64(v["root2"])
    proof = [_b64(p) for p in v["proof"] or []]
    accepted = merkle.verify_consistency(first, second, root1, root2, proof)
    if v["wantErr"]:
        assert not accepted, f"must be rejected: {v['desc']}"
        with pytest.raises(merkle.ProofError):
            merkle.check_consistency(first, second, root1, root2, proof)
        return
    assert accepted, f"must be accepted: {v['desc']}"
    merkle.check_consistency(first, second, root1, root2, proof)
    if 0 < first <= second <= 8 and reference.root(first) == root1 \
            and reference.root(second) == root2:
        assert reference.consistency_proof(first, second) == proof


def test_numbered_happy_paths_come_from_the_reference_tree(reference: merkle.MemoryTree) -> None:
    """The generation checks above are not vacuous: the numbered happy paths use the tree."""
    if not VECTORS.is_dir():
        _load(None)
    checked = 0
    for kind in ("inclusion", "consistency"):
        for path in sorted((VECTORS / kind).glob("[0-9]*/happy-path.json")):
            v = json.loads(path.read_text(encoding="utf-8"))
            if kind == "inclusion":
                assert reference.root(v["treeSize"]) == _b64(v["root"]), path
                assert reference.inclusion_proof(v["leafIdx"], v["treeSize"]) == [
                    _b64(p) for p in v["proof"] or []], path
            else:
                assert reference.root(v["size2"]) == _b64(v["root2"]), path
                assert reference.consistency_proof(v["size1"], v["size2"]) == [
                    _b64(p) for p in v["proof"] or []], path
            checked += 1
    assert checked >= 8


def test_vector_counts() -> None:
    """All the must-fail cases are there (the folder was not truncated)."""
    if not VECTORS.is_dir():
        _load(None)
    vectors = [json.loads(p.read_text(encoding="utf-8")) for p in VECTORS.rglob("*.json")]
    must_fail = sum(1 for v in vectors if v["wantErr"])
    assert len(vectors) >= 190 and must_fail >= 175, (len(vectors), must_fail)

