"""RFC 9162 (RFC 6962 hashing) Merkle trees: hashing, appending, proofs and their verification.

Pure functions over hashes; no database. Storage is anything that can return the hashes of
*perfect* subtrees, named ``(level, index)``: the subtree of ``2**level`` leaves starting at
leaf ``index << level`` (level 0 = the leaf hashes themselves). Such a subtree never changes
once its last leaf is appended, which is what makes the stored nodes (and tiles) immutable.

- ``leaf_hash(d) = SHA-256(0x00 || d)``, ``node_hash(l, r) = SHA-256(0x01 || l || r)``,
  the empty tree's root is ``SHA-256()`` (RFC 9162 §2.1.1).
- An inclusion or consistency proof is computed as a list of *ranges* ``[start, end)`` whose
  subtree hashes make the proof (RFC 9162 §2.1.3.1, §2.1.4.1); each range is the fold of the
  perfect subtrees it decomposes into, so a proof needs O(log² n) stored hashes at most and
  usually O(log n), fetched in one call.
- Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 exactly (the algorithms
  transparency-dev/merkle and Certificate Transparency clients use), so every must-fail case of
  the shared test vectors is rejected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeKey = tuple[int, int]  # (level, index): perfect subtree of 2**level leaves at index<<level
NodeFetcher = Callable[[Sequence[NodeKey]], dict[NodeKey, bytes]]

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


class ProofError(ValueError):
    """A proof (or the sizes and indexes it is asked for) is not valid."""


# --- ranges ------------------------------------------------------------------------------------


def _largest_power_below(n: int) -> int:
    """The largest power of two strictly less than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def decompose(start: int, end: int) -> list[NodeKey]:
    """The perfect subtrees, left to right, whose fold is the hash of leaves ``[start, end)``.

    Every range that occurs in RFC 9162 proofs starts at a multiple of a power of two at least
    as large as the range, so it splits into perfect subtrees of decreasing size.
    """
    keys: list[NodeKey] = []
    size = end - start
    position = start
    while size:
        level = size.bit_length() - 1
        keys.append((level, position >> level))
        position += 1 << level
        size -= 1 << level
    return keys


def fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of a range from its perfect subtrees' hashes (left to right): fold from the right."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form the inclusion proof of leaf ``index`` in a tree of ``size``.

    Bottom-up order, as RFC 9162 §2.1.3.1 ``PATH(m, D[n])`` lists them.
    """
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_below(end - start)
        if index - start < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start = start + k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form the consistency proof from ``first`` to ``second``.

    RFC 9162 §2.1.4.1 ``SUBPROOF(m, D[n], true)``, in its order (bottom-up).
    """
    if not 0 <= first <= second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if first == 0 or first == second:
        return []
    ranges: list[tuple[int, int]] = []
    start, end, whole = 0, second, True
    m = first
    while True:
        n = end - start
        if m == n:
            if not whole:
                ranges.append((start, end))
            break
        k = _largest_power_below(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, whole = start + k, m - k, False
    ranges.reverse()
    return ranges


def hash_ranges(ranges: Sequence[tuple[int, int]], fetch: NodeFetcher) -> list[bytes]:
    """Hashes of the ranges, from one call to ``fetch`` for all perfect subtrees needed."""
    parts = [decompose(a, b) for a, b in ranges]
    wanted = sorted({key for keys in parts for key in keys})
    found = fetch(wanted)
    missing = [key for key in wanted if key not in found]
    if missing:
        raise LookupError(f"missing stored nodes: {missing[:5]}")
    return [fold([found[key] for key in keys]) for keys in parts]


def inclusion_proof(index: int, size: int, fetch: NodeFetcher) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    return hash_ranges(inclusion_ranges(index, size), fetch)


def consistency_proof(first: int, second: int, fetch: NodeFetcher) -> list[bytes]:
    """The RFC 9162 consistency proof between the trees of ``first`` and ``second`` leaves."""
    return hash_ranges(consistency_ranges(first, second), fetch)


def root(size: int, fetch: NodeFetcher) -> bytes:
    """The root hash of the tree of the first ``size`` leaves."""
    if size == 0:
        return EMPTY_ROOT
    keys = decompose(0, size)
    found = fetch(keys)
    return fold([found[key] for key in keys])


# --- verification (RFC 9162 §2.1.3.2, §2.1.4.2) ------------------------------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` implies for leaf hash ``leaf`` at ``index`` in a tree of ``size``.

    Raises :class:`ProofError` for an impossible index or a proof of the wrong shape.
    """
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    _check_hashes([leaf, *proof])
    sha = _sha256
    fn, sn = index, size - 1
    r = bytes(leaf)
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = sha(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """True when ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree with that root."""
    try:
        return root_from_inclusion(index, size, leaf, proof) == expected_root
    except ProofError:
        return False


def roots_from_consistency(
    first: int, second: int, first_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """Check ``proof`` against ``first_root`` and return (first root, second root) it implies.

    For ``0 < first < second`` only. Raises :class:`ProofError` when the proof cannot prove the
    first tree a prefix of the second.
    """
    if not 0 < first < second:
        raise ProofError(f"no consistency proof from size {first} to size {second}")
    if not proof:
        raise ProofError("the consistency proof is empty")
    _check_hashes([first_root, *proof])
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is a subtree of the proof
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != first_root:
        raise ProofError("the proof does not lead to the first root")
    return fr, sr


def check_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows tree ``first`` is a prefix of ``second``.

    As transparency-dev/merkle: equal sizes need an empty proof and equal roots; a proof from
    the empty tree proves nothing and is refused; a smaller second tree is refused.
    """
    if second < first:
        raise ProofError(f"the second tree ({second}) is smaller than the first ({first})")
    if first == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if first == second:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("two trees of the same size have different roots")
        return
    _fr, sr = roots_from_consistency(first, second, first_root, proof)
    if sr != second_root:
        raise ProofError("the proof does not lead to the second root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when ``proof`` shows the tree of ``first`` leaves is a prefix of the second."""
    try:
        check_consistency(first, second, first_root, second_root, proof)
    except ProofError:
        return False
    return True


def _check_hashes(hashes: Iterable[bytes]) -> None:
    for h in hashes:
        if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
            raise ProofError("a hash is not 32 bytes")


# --- appending ---------------------------------------------------------------------------------


@dataclass
class Frontier:
    """The right edge of a tree: its perfect subtrees' hashes, largest first, and its size.

    Enough to append leaves and compute the root without reading anything else. Appending
    returns the perfect subtrees it completed, which a store keeps for proofs.
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def levels(self) -> list[int]:
        """The level of each frontier hash (the set bits of ``size``, highest first)."""
        return [b for b in range(self.size.bit_length() - 1, -1, -1) if self.size >> b & 1]

    def root(self) -> bytes:
        """The current root hash."""
        return fold(self.hashes)

    def append(self, leaf_hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Append leaves (their hashes); return the interior nodes completed: (level, idx, h)."""
        completed: list[tuple[int, int, bytes]] = []
        hashes = self.hashes
        size = self.size
        for h in leaf_hashes:
            index = size
            size += 1
            level = 0
            # Each trailing one bit of the new size's predecessor closes a subtree.
            while index & 1:
                h = _sha256(b"\x01" + hashes.pop() + h).digest()
                level += 1
                index >>= 1
                completed.append((level, index, h))
            hashes.append(h)
        self.size = size
        return completed

    def encode(self) -> bytes:
        """The hashes, concatenated (the size is stored beside them)."""
        return b"".join(self.hashes)

    @classmethod
    def decode(cls, size: int, blob: bytes) -> Frontier:
        """Rebuild a frontier from its size and :meth:`encode` output."""
        hashes = [bytes(blob[i:i + HASH_SIZE]) for i in range(0, len(blob), HASH_SIZE)]
        if len(hashes) != size.bit_count():
            raise ValueError("the frontier does not match the tree size")
        return cls(size=size, hashes=hashes)


class MemoryTree:
    """A Merkle tree kept in memory: every perfect subtree's hash, one bytearray per level.

    32 bytes per stored node (about 64 bytes per leaf in all); used by the benchmark and by
    ``shanju verify`` to rebuild a downloaded log.

    Appending works a level at a time (all new leaf hashes, then all new parents of level 1,
    and so on), so a batch costs one SHA-256 call per new node and no per-leaf bookkeeping.
    Proofs read stored hashes directly; a range that is not a perfect subtree (only at the
    right edge of the requested tree) is folded once and cached, since the hash of leaves
    ``[a, b)`` never changes once ``b`` leaves exist.
    """

    _CACHE_LIMIT = 4_096

    def __init__(self) -> None:
        self.frontier = Frontier()
        self.levels: list[bytearray] = [bytearray()]
        self._edges: dict[tuple[int, int], bytes] = {}

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self.frontier.size

    def append_data(self, entries: Iterable[bytes]) -> None:
        """Append leaves given as their entry bytes."""
        sha = _sha256
        self.append_hashes([sha(b"\x00" + d).digest() for d in entries])

    def append_hashes(self, hashes: Sequence[bytes]) -> None:
        """Append leaves given as their leaf hashes."""
        if not hashes:
            return
        blob = b"".join(hashes)
        if len(blob) != HASH_SIZE * len(hashes):
            raise ValueError("a leaf hash is not 32 bytes")
        levels = self.levels
        old = self.frontier.size
        new = old + len(hashes)
        levels[0] += blob
        sha = _sha256
        level = 0
        while True:
            first, last = old >> (level + 1), new >> (level + 1)  # new parents: [first, last)
            if first == last:
                break
            children = bytes(levels[level][first * 2 * HASH_SIZE:last * 2 * HASH_SIZE])
            if len(levels) == level + 1:
                levels.append(bytearray())
            levels[level + 1] += b"".join([
                sha(b"\x01" + children[i:i + 2 * HASH_SIZE]).digest()
                for i in range(0, len(children), 2 * HASH_SIZE)
            ])
            level += 1
        edge = [b for b in range(new.bit_length() - 1, -1, -1) if new >> b & 1]
        self.frontier = Frontier(size=new, hashes=[self._node(b, (new >> b) - 1) for b in edge])

    def _node(self, level: int, index: int) -> bytes:
        start = index * HASH_SIZE
        return bytes(self.levels[level][start:start + HASH_SIZE])

    def fetch(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        """A :data:`NodeFetcher` over the stored levels."""
        out: dict[NodeKey, bytes] = {}
        for level, index in keys:
            start = index * HASH_SIZE
            out[(level, index)] = bytes(self.levels[level][start:start + HASH_SIZE])
        return out

    def _range_hash(self, start: int, end: int) -> bytes:
        """The hash of leaves ``[start, end)`` (a range of the kind proofs use)."""
        width = end - start
        if width & (width - 1) == 0:  # a perfect subtree (proof ranges are aligned)
            level = width.bit_length() - 1
            offset = (start >> level) * HASH_SIZE
            return bytes(self.levels[level][offset:offset + HASH_SIZE])
        key = (start, end)
        cached = self._edges.get(key)
        if cached is not None:
            return cached
        if end > self.frontier.size:
            raise ProofError(f"the tree has only {self.frontier.size} leaves")
        levels = self.levels
        parts: list[bytes | bytearray] = []
        position = start
        while width:
            level = width.bit_length() - 1
            offset = (position >> level) * HASH_SIZE
            parts.append(levels[level][offset:offset + HASH_SIZE])
            position += 1 << level
            width -= 1 << level
        acc = bytes(parts[-1])
        sha = _sha256
        for h in reversed(parts[:-1]):
            acc = sha(b"\x01" + h + acc).digest()
        if len(self._edges) >= self._CACHE_LIMIT:
            self._edges.clear()
        self._edges[key] = acc
        return acc

    def _check_size(self, size: int) -> None:
        if size > self.frontier.size:
            raise ProofError(f"the tree has only {self.frontier.size} leaves, not {size}")

    def root(self, size: int | None = None) -> bytes:
        """Root of the whole tree, or of its first ``size`` leaves."""
        if size is None or size == self.frontier.size:
            return self.frontier.root()
        if size == 0:
            return EMPTY_ROOT
        self._check_size(size)
        return self._range_hash(0, size)

    def leaf(self, index: int) -> bytes:
        """The hash of leaf ``index``."""
        return self.fetch([(0, index)])[(0, index)]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof of leaf ``index`` in the tree of ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        ranges = inclusion_ranges(index, size)
        self._check_size(size)
        levels = self.levels
        proof: list[bytes] = []
        for start, end in ranges:
            width = end - start
            if width & (width - 1):
                proof.append(self._range_hash(start, end))
            else:  # a perfect subtree: one stored hash (inlined _range_hash)
                level = width.bit_length() - 1
                offset = (start >> level) * HASH_SIZE
                proof.append(bytes(levels[level][offset:offset + HASH_SIZE]))
        return proof

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """Consistency proof from ``first`` leaves to ``second`` (default: all)."""
        second = self.size if second is None else second
        ranges = consistency_ranges(first, second)
        self._check_size(second)
        return [self._range_hash(a, b) for a, b in ranges]
