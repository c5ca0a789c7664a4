"""Property tests of the verifier's pure checks: any receipt built from a real tree verifies,
and any single-byte change to its leaf, proof or note makes it fail (Hypothesis)."""

from __future__ import annotations

import base64
import copy
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shanju.transparency import checkpoints, leaves, verify
from shanju.transparency.merkle import MemoryTree, leaf_hash

SIGNER = checkpoints.Signer.from_seed("prop.test/transparency", bytes(range(32)))


def _leaf(n: int) -> bytes:
    return leaves.encode({"v": 1, "kind": "donation.paid", "entry": n + 1,
                          "time": "2026-11-29T00:00:00.000000Z", "from": "donor_clearing:x",
                          "to": f"project:{n % 7}", "amount": 100 + n, "ref": f"donation:{n}"})


def _receipt(size: int, index: int) -> dict[str, Any]:
    tree = MemoryTree()
    tree.append_data([_leaf(n) for n in range(size)])
    note = SIGNER.sign(checkpoints.checkpoint_body(SIGNER.name, size, tree.root(), 1_000))
    b64 = verify.b64encode
    return {"format": verify.RECEIPT_FORMAT, "origin": SIGNER.name, "ref": f"donation:{index}",
            "leaves": [{"index": index, "data": b64(_leaf(index)),
                        "leaf_hash": b64(leaf_hash(_leaf(index))),
                        "proof": [b64(h) for h in tree.inclusion_proof(index)]}],
            "tree_size": size, "root": b64(tree.root()), "checkpoint": note,
            "verifier_key": SIGNER.key_id, "opening": None}


@st.composite
def sized(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(min_value=1, max_value=300))
    return size, draw(st.integers(min_value=0, max_value=size - 1))


def _flip(text: str, at: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at % len(raw)] ^= 1 << (at % 8)
    return base64.b64encode(bytes(raw)).decode()


@settings(max_examples=60, deadline=None)
@given(sized())
def test_any_receipt_of_a_real_tree_verifies(case: tuple[int, int]) -> None:
    assert verify.verify_receipt(_receipt(*case), key=SIGNER.key_id).ok


@settings(max_examples=60, deadline=None)
@given(sized(), st.integers(min_value=0, max_value=10_000), st.sampled_from(
    ["data", "proof", "root", "note", "index", "size"]))
# Found by this test: the signature's last base64 character changed only in its unused bits
# decoded to the same bytes and verified; only canonical base64 is accepted now.
@example(case=(1, 0), at=201, part="note")
def test_any_change_to_a_receipt_fails(case: tuple[int, int], at: int, part: str) -> None:
    good = _receipt(*case)
    bad = copy.deepcopy(good)
    leaf = bad["leaves"][0]
    if part == "data":
        leaf["data"] = _flip(leaf["data"], at)
    elif part == "proof":
        if not leaf["proof"]:
            leaf["proof"] = [leaf["leaf_hash"]]  # a one-leaf tree has no proof to change
        else:
            i = at % len(leaf["proof"])
            leaf["proof"][i] = _flip(leaf["proof"][i], at)
    elif part == "root":
        bad["root"] = _flip(bad["root"], at)
    elif part == "note":
        note = bad["checkpoint"]
        position = at % len(note)
        bad["checkpoint"] = note[:position] + ("x" if note[position] != "x" else "y") \
            + note[position + 1:]
    elif part == "index":
        leaf["index"] = (leaf["index"] + 1 + at) % (good["tree_size"] + 1)
        if leaf["index"] == good["leaves"][0]["index"]:
            leaf["index"] += good["tree_size"]
    else:
        bad["tree_size"] += 1 + at % 5
    assert not verify.verify_receipt(bad, key=SIGNER.key_id).ok


def _note(tree: MemoryTree, size: int, ms: int) -> str:
    return SIGNER.sign(checkpoints.checkpoint_body(SIGNER.name, size, tree.root(size), ms))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=200),
       st.integers(min_value=0, max_value=199))
def test_checkpoints_of_one_tree_are_consistent_and_a_fork_is_not(
        first: int, extra: int, forked_at: int) -> None:
    second = first + extra
    honest = MemoryTree()
    honest.append_data([_leaf(n) for n in range(second)])
    old, new = _note(honest, first, 1), _note(honest, second, 2)
    report = verify.verify_consistency(old, new, key=SIGNER.key_id,
                                       get_proof=honest.consistency_proof)
    assert report.ok, report.lines()
    # The same key signs a second history that differs from leaf ``forked_at`` on.
    forked_at %= second
    fork = MemoryTree()
    fork.append_data([_leaf(n) if n < forked_at else _leaf(n + 10_000) for n in range(second)])
    forked = _note(fork, second, 3)
    # With the forked tree's own proof, it is consistent exactly when the first ``first``
    # leaves were left alone; the honest tree's proof never leads to the forked root.
    report = verify.verify_consistency(old, forked, key=SIGNER.key_id,
                                       get_proof=fork.consistency_proof)
    assert report.ok == (forked_at >= first), report.lines()
    report = verify.verify_consistency(old, forked, key=SIGNER.key_id,
                                       get_proof=honest.consistency_proof)
    assert not report.ok
