"""Roots and proofs cross-checked against pymerkle (an independent implementation).

pymerkle's default configuration (``security`` on: 0x00 leaf and 0x01 node prefixes, SHA-256)
is RFC 6962 hashing; ``disable_security=True`` drops the prefixes and gives other roots, so the
configuration is asserted, not assumed. pymerkle counts leaves from one and puts the leaf hash
itself first in an inclusion path: the rest of the path is exactly the RFC 9162 proof.

Its consistency paths are *not* RFC 9162 proofs (when the first tree ends on a subtree
boundary pymerkle descends to the right and lists single leaves, e.g. 1 -> 2 gives two hashes
where RFC 9162 gives one), so there we check that each side's proof verifies, with its own
verifier, against the *same* roots.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree, verify_consistency, verify_inclusion

from shanju.transparency import merkle

REFERENCE_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                    "606162636465666768696a6b6c6d6e6f"]
REFERENCE_ROOT_8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def rfc6962_pymerkle() -> InmemoryTree:
    """pymerkle configured for RFC 6962 hashing."""
    return InmemoryTree(algorithm="sha256")


def both(data: list[bytes]) -> tuple[merkle.MemoryTree, InmemoryTree]:
    ours, theirs = merkle.MemoryTree(), rfc6962_pymerkle()
    ours.append_data(data)
    theirs.append_entries(data)
    return ours, theirs


def test_configuration_gives_the_rfc6962_reference_root() -> None:
    data = [bytes.fromhex(h) for h in REFERENCE_LEAVES]
    ours, theirs = both(data)
    assert theirs.get_root().hex() == REFERENCE_ROOT_8 == ours.root().hex()
    unprefixed = InmemoryTree(algorithm="sha256", disable_security=True)
    unprefixed.append_entries(data)
    assert unprefixed.get_root().hex() != REFERENCE_ROOT_8


def test_every_size_index_and_pair_up_to_70() -> None:
    data = [f"entry {i}".encode() for i in range(70)]
    ours, theirs = both(data)
    for size in range(1, 71):
        assert theirs.get_root(size) == ours.root(size), size
        for index in range(size):
            p = theirs.prove_inclusion(index + 1, size)
            assert p.path[0] == ours.leaf(index)
            assert p.path[1:] == ours.inclusion_proof(index, size), (index, size)
            verify_inclusion(ours.leaf(index), ours.root(size), p)
        for first in range(1, size + 1):
            p = theirs.prove_consistency(first, size)
            verify_consistency(ours.root(first), ours.root(size), p)
            assert merkle.verify_consistency(first, size, theirs.get_root(first),
                                             theirs.get_root(size),
                                             ours.consistency_proof(first, size))


@settings(max_examples=25, deadline=None)
@given(st.data(), st.integers(1, 3_000))
def test_random_trees(data: st.DataObject, n: int) -> None:
    blobs = [data.draw(st.binary(max_size=40), label="first leaf")] + [
        f"{i}:{n}".encode() * (i % 4) for i in range(1, n)]
    ours, theirs = both(blobs)
    assert theirs.get_root() == ours.root()
    size = data.draw(st.integers(1, n), label="size")
    assert theirs.get_root(size) == ours.root(size)
    index = data.draw(st.integers(0, size - 1), label="index")
    p = theirs.prove_inclusion(index + 1, size)
    assert p.path[1:] == ours.inclusion_proof(index, size)
    assert merkle.verify_inclusion(index, size, p.path[0], p.path[1:], theirs.get_root(size))
    first = data.draw(st.integers(1, size), label="first")
    verify_consistency(ours.root(first), ours.root(size), theirs.prove_consistency(first, size))
    assert merkle.verify_consistency(first, size, theirs.get_root(first), theirs.get_root(size),
                                     ours.consistency_proof(first, size))
