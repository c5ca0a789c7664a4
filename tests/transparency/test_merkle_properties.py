"""Hypothesis round trips of ``merkle.py`` against the RFC 9162 definitions, written here.

The reference below is the RFC's own recursive text (§2.1.1 MTH, §2.1.3.1 PATH, §2.1.4.1
PROOF/SUBPROOF) computed from scratch over the leaf data: nothing from ``merkle.py`` is used
by it, so a bug in the fast code cannot hide in the reference.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shanju.transparency import merkle


def _k(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(data: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 Merkle Tree Hash, recursively."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def path(m: int, data: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    n = len(data)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return path(m, data[:k]) + [mth(data[k:])]
    return path(m - k, data[k:]) + [mth(data[:k])]


def subproof(m: int, data: list[bytes], whole: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(data)
    if m == n:
        return [] if whole else [mth(data)]
    k = _k(n)
    if m <= k:
        return subproof(m, data[:k], whole) + [mth(data[k:])]
    return subproof(m - k, data[k:], False) + [mth(data[:k])]


def leaves(n: int, salt: int = 0) -> list[bytes]:
    """Distinct leaf data (no two leaves hash alike)."""
    return [f"leaf {salt}:{i}".encode() * (1 + i % 3) for i in range(n)]


def tree_of(data: list[bytes]) -> merkle.MemoryTree:
    tree = merkle.MemoryTree()
    tree.append_data(data)
    return tree


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[(bit // 8) % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


sizes = st.integers(min_value=1, max_value=300)


@settings(max_examples=150, deadline=None)
@given(st.data(), sizes)
def test_inclusion_round_trip(data: st.DataObject, n: int) -> None:
    d = leaves(n)
    tree = tree_of(d)
    size = data.draw(st.integers(1, n), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = tree.inclusion_proof(index, size)
    root = mth(d[:size])
    leaf = merkle.leaf_hash(d[index])
    assert proof == path(index, d[:size])
    assert tree.leaf(index) == leaf
    assert merkle.verify_inclusion(index, size, leaf, proof, root)
    assert merkle.root_from_inclusion(index, size, leaf, proof) == root

    # Tampering with anything is rejected.
    bit = data.draw(st.integers(0, 255), label="bit")
    assert not merkle.verify_inclusion(index, size, flip(leaf, bit), proof, root)
    assert not merkle.verify_inclusion(index, size, leaf, proof, flip(root, bit))
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="at")
        bad = list(proof)
        bad[at] = flip(bad[at], bit)
        assert not merkle.verify_inclusion(index, size, leaf, bad, root)
        assert not merkle.verify_inclusion(index, size, leaf, proof[:-1], root)
    assert not merkle.verify_inclusion(index, size, leaf, [*proof, root], root)
    assert not merkle.verify_inclusion(index, size, merkle.leaf_hash(b"other"), proof, root)
    if size > 1:
        other = (index + 1) % size
        assert not merkle.verify_inclusion(other, size, leaf, proof, root)


@settings(max_examples=150, deadline=None)
@given(st.data(), sizes)
def test_consistency_round_trip(data: st.DataObject, n: int) -> None:
    d = leaves(n)
    tree = tree_of(d)
    second = data.draw(st.integers(1, n), label="second")
    first = data.draw(st.integers(1, second), label="first")
    proof = tree.consistency_proof(first, second)
    root1, root2 = mth(d[:first]), mth(d[:second])
    assert proof == ([] if first == second else subproof(first, d[:second], True))
    assert merkle.verify_consistency(first, second, root1, root2, proof)
    merkle.check_consistency(first, second, root1, root2, proof)

    bit = data.draw(st.integers(0, 255), label="bit")
    assert not merkle.verify_consistency(first, second, flip(root1, bit), root2, proof)
    assert not merkle.verify_consistency(first, second, root1, flip(root2, bit), proof)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="at")
        bad = list(proof)
        bad[at] = flip(bad[at], bit)
        assert not merkle.verify_consistency(first, second, root1, root2, bad)
        assert not merkle.verify_consistency(first, second, root1, root2, proof[:-1])
        assert not merkle.verify_consistency(first, second, root1, root2, [*proof, root2])
    # A forked history (another leaf somewhere in the first tree) is not consistent.
    forked = list(d[:second])
    forked[data.draw(st.integers(0, first - 1), label="forked")] = b"rewritten"
    assert not merkle.verify_consistency(first, second, mth(forked[:first]), root2, proof)
    assert not merkle.verify_consistency(first, second, root1, mth(forked), proof)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 600), st.lists(st.integers(1, 90), min_size=1, max_size=20))
def test_memory_tree_roots_match_the_reference(n: int, batches: list[int]) -> None:
    """Appending in arbitrary batches gives MTH at every size, and the same stored levels."""
    d = leaves(n, salt=7)
    tree = merkle.MemoryTree()
    pos, turn = 0, 0
    while pos < n:
        step = batches[turn % len(batches)]
        if turn % 2:
            tree.append_hashes([merkle.leaf_hash(x) for x in d[pos:pos + step]])
        else:
            tree.append_data(d[pos:pos + step])
        pos += step
        turn += 1
    assert tree.size == n
    assert tree.root() == mth(d)
    one_shot = tree_of(d)
    assert [bytes(x) for x in tree.levels if x] == [bytes(x) for x in one_shot.levels if x]
    for size in {0, 1, n // 3, n // 2, n - 1, n} - {-1}:
        if 0 <= size <= n:
            assert tree.root(size) == mth(d[:size]), size


def test_every_root_of_a_small_tree() -> None:
    d = leaves(130, salt=3)
    tree = tree_of(d)
    for size in range(131):
        assert tree.root(size) == mth(d[:size])
        assert merkle.root(size, tree.fetch) == mth(d[:size])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2_000), st.lists(st.integers(1, 300), min_size=1, max_size=10))
def test_frontier_encode_decode(n: int, batches: list[int]) -> None:
    d = leaves(n, salt=5)
    hashes = [merkle.leaf_hash(x) for x in d]
    frontier = merkle.Frontier()
    completed: list[tuple[int, int, bytes]] = []
    pos, turn = 0, 0
    while pos < n:
        step = batches[turn % len(batches)]
        # Round trip through storage between batches, as the database log does.
        frontier = merkle.Frontier.decode(frontier.size, frontier.encode())
        completed += frontier.append(hashes[pos:pos + step])
        pos += step
        turn += 1
    assert frontier.size == n
    assert frontier.root() == mth(d)
    assert len(frontier.hashes) == n.bit_count()
    assert frontier.levels() == [b for b in range(64, -1, -1) if n >> b & 1]
    assert len(frontier.encode()) == 32 * n.bit_count()
    again = merkle.Frontier.decode(n, frontier.encode())
    assert again == frontier
    # Completed nodes are exactly the perfect subtrees: (level, idx) over leaves idx<<level.
    assert len(completed) == n - n.bit_count()
    for level, idx, h in completed[:: max(1, len(completed) // 25)]:
        assert h == mth(d[idx << level:(idx + 1) << level])


def test_frontier_decode_rejects_a_wrong_size() -> None:
    frontier = merkle.Frontier()
    frontier.append([merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b"), merkle.leaf_hash(b"c")])
    blob = frontier.encode()
    assert merkle.Frontier.decode(3, blob) == frontier
    for size in (1, 2, 4, 7):  # a size whose set bits are not two
        with pytest.raises(ValueError, match="does not match"):
            merkle.Frontier.decode(size, blob)


def test_empty_and_invalid_requests() -> None:
    tree = tree_of(leaves(5))
    assert tree_of([]).root() == merkle.EMPTY_ROOT == mth([])
    assert tree.consistency_proof(0, 5) == []
    assert tree.consistency_proof(5, 5) == []
    for index, size in ((5, 5), (-1, 5), (0, 0)):
        with pytest.raises(merkle.ProofError):
            tree.inclusion_proof(index, size)
    with pytest.raises(merkle.ProofError):
        tree.consistency_proof(4, 3)
    assert not merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, tree.root(), [])
    assert not merkle.verify_consistency(5, 4, tree.root(), tree.root(4), [])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=12), st.data())
def test_proofs_while_appending(batches: list[int], data: st.DataObject) -> None:
    """Proofs asked between appends (so cached right-edge hashes get reused) stay right."""
    d = leaves(sum(batches), salt=11)
    tree = merkle.MemoryTree()
    pos = 0
    for step in batches:
        tree.append_data(d[pos:pos + step])
        pos += step
        for _ in range(3):
            size = data.draw(st.integers(1, pos), label="size")
            index = data.draw(st.integers(0, size - 1), label="index")
            assert tree.inclusion_proof(index, size) == path(index, d[:size])
            first = data.draw(st.integers(1, size), label="first")
            assert tree.consistency_proof(first, size) == (
                [] if first == size else subproof(first, d[:size], True))
            assert tree.root(size) == mth(d[:size])
        assert tree.root() == mth(d[:pos])


def test_memory_tree_refuses_sizes_it_does_not_have() -> None:
    tree = tree_of(leaves(6))
    with pytest.raises(merkle.ProofError):
        tree.inclusion_proof(2, 7)
    with pytest.raises(merkle.ProofError):
        tree.consistency_proof(3, 9)
    with pytest.raises(merkle.ProofError):
        tree.root(7)
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append_hashes([b"short"])
    assert tree.size == 6
