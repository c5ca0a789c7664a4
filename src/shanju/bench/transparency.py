"""``shanju bench transparency``: the Merkle log's speed, beside pymerkle, on the same leaves.

One run, on ``N`` realistic leaves (canonical JSON built by :func:`leaves.build`, about 250
bytes: donations with a donor commitment, giving-day gifts and matches, refunds, disbursements
with attachment hashes), generated deterministically from a seed, chunk by chunk (only the
first leaves are kept in memory, for the parts that need their bytes again):

1. **Ours, in memory** (:class:`merkle.MemoryTree`): batched append throughput (``append_data``
   per batch: leaf hashing and tree building; generating the leaves is not counted), then
   ``proofs`` inclusion proofs for random indexes against the whole tree (generation and
   verification, each timed alone), inclusion proofs against random *older* tree sizes
   (nothing cached), and consistency proofs from random sizes to the whole tree.
2. **pymerkle** (its in-memory tree, configured for RFC 6962 hashing) on the first
   ``min(N, pymerkle_leaves)`` of the same leaves: append throughput, inclusion and
   consistency proof generation and verification, and ours at the same tree size, with the
   speedups. Invariants: the same root; pymerkle's inclusion path (after the leaf itself) is
   our proof; every proof verifies. pymerkle keeps a Python object per node (~350 bytes a
   leaf) and appends at ~30,000 leaves/s, hence the cap (``--pymerkle-leaves``).
3. **The database log** (optional): the first ``min(N, db_leaves)`` leaves appended through
   :func:`log.append_rows` in batches of 5,000 (one transaction each, with one journal entry
   per batch as the giving-day engine writes), into a fresh SQLite file or a fresh PostgreSQL
   database ``shanju_bench_<pid>_transparency`` dropped afterwards; then inclusion and
   consistency proofs through :mod:`transparency.service`, checked equal to the in-memory ones.

Every timed operation is reported as wall-clock samples (mean/p50/p99/max, µs) and as the
mean thread CPU time of a second, tight pass over the same calls (``cpu_mean_us``): on a
shared machine the wall clock also counts time the scheduler gave to other processes, CPU
time does not. Speedups over pymerkle are given for the wall mean, the wall median and CPU.

The report is one JSON object (the CLI prints it as the last line of stdout).
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Any

from sqlalchemy import insert

from shanju.bench.common import machine
from shanju.core.db import Database
from shanju.ledger.models import JournalEntry
from shanju.transparency import leaves, log, merkle, service

# phase, done, total
ProgressFn = Callable[[str, int, int], None]

BATCH = 10_000  # leaves per in-memory append (and per pymerkle append_entries call)
DB_BATCH = 5_000  # leaves per database transaction
SECRET = "bench-secret-not-for-production"  # noqa: S105 - salts made-up donors only
TARGET_APPEND_PER_S = 200_000
TARGET_PROOF_MS = 1.0
TARGET_SPEEDUP = 5.0
_OPENING = dt.datetime(2026, 9, 9, 0, 0, tzinfo=dt.UTC)


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


# --- the leaves ------------------------------------------------------------------------------


def make_leaves(start: int, count: int, *, seed: int) -> list[bytes]:
    """Leaves ``start .. start+count-1`` of the benchmark's deterministic sequence.

    Leaf ``i`` belongs to journal entry ``i // DB_BATCH + 1`` (one entry per 5,000-leaf
    batch, as a giving-day batch). The mix: 45% donations credited (donor commitment, project,
    organization), 25% giving-day gifts and 15% their matches, 7% pool top-ups, 5% refunds,
    3% disbursements (purpose and one to three attachment hashes).
    """
    rng = random.Random(seed * 1_000_003 + start)  # noqa: S311 - a reproducible workload
    out: list[bytes] = []
    build = leaves.build
    for i in range(start, start + count):
        entry = i // DB_BATCH + 1
        time_text = leaves.format_time(_OPENING + dt.timedelta(microseconds=i * 1_237))
        project = rng.randrange(1, 5_001)
        org = project // 10 + 1
        roll = rng.random()
        amount = rng.choice((100, 500, 990, 1_000, 1_800, 5_000, 9_900, 10_000)) \
            if roll < 0.6 else rng.randrange(100, 1_000_000)
        if roll < 0.45:
            kind, source, dest = "donation.paid", "donor_clearing:sandbox", f"project:{project}"
            detail = leaves.LogDetail(
                ref=f"donation:d_{rng.getrandbits(64):016x}",
                donor=f"user:{rng.randrange(1, 10**7)}",
                public={"project": project, "organization": org})
        elif roll < 0.70:
            kind, source, dest = "campaign.gift", "donor_clearing:sandbox", f"project:{project}"
            detail = leaves.LogDetail(
                ref=f"gift:g{rng.getrandbits(64):016x}",
                donor=f"user:{rng.randrange(1, 10**7)}",
                public={"campaign": 1, "project": project, "organization": org})
        elif roll < 0.85:
            pool = rng.randrange(1, 4)
            kind, source, dest = "campaign.match", f"pool:{pool}", f"project:{project}"
            detail = leaves.LogDetail(
                ref=f"gift:g{rng.getrandbits(64):016x}",
                public={"campaign": 1, "pool": pool, "project": project, "organization": org})
        elif roll < 0.92:
            pool = rng.randrange(1, 4)
            kind, source, dest = "pool.topped_up", f"sponsor:{pool}", f"pool:{pool}"
            detail = leaves.LogDetail(ref=f"pool:{pool}", public={"campaign": 1, "pool": pool})
        elif roll < 0.97:
            kind, source, dest = "refund.done", f"project:{project}", "refunds"
            detail = leaves.LogDetail(ref=f"refund:{rng.randrange(1, 10**6)}",
                                      public={"project": project})
        else:
            kind, source, dest = "fund_usage.disbursed", f"project:{project}", f"organization:{org}"
            detail = leaves.LogDetail(
                ref=f"usage:{rng.randrange(1, 10**5)}",
                public={"project": project, "organization": org, "purpose": "采购过冬棉衣",
                        "attachments": [f"{rng.getrandbits(256):064x}"
                                        for _ in range(rng.randrange(1, 4))]})
        out.append(build(kind=kind, entry_id=entry, time=time_text,
                         transfer=leaves.Transfer(source, dest, amount), detail=detail,
                         secret=SECRET))
    return out


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(size, total - start)


# --- timing ----------------------------------------------------------------------------------


def stats_us(samples_ns: Sequence[int]) -> dict[str, float]:
    """mean/p50/p99/max of per-call times, in microseconds."""
    if not samples_ns:
        return {}
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1_000, 2)

    return {"mean_us": round(statistics.fmean(ordered) / 1_000, 2), "p50_us": at(0.50),
            "p99_us": at(0.99), "max_us": round(ordered[-1] / 1_000, 2), "n": len(ordered)}


def cpu_us(calls: Sequence[Callable[[], object]]) -> float:
    """Mean thread CPU time per call of a second, tight pass over the same calls (µs).

    Wall-clock samples include time the scheduler gave to other processes on a busy machine;
    CPU time does not, so it is the steadier figure when the load average is high.
    """
    if not calls:
        return 0.0
    start = time.thread_time_ns()
    for call in calls:
        call()
    return round((time.thread_time_ns() - start) / len(calls) / 1_000, 2)


def _with_cpu(stats: dict[str, float], cpu: float) -> dict[str, float]:
    return {**stats, "cpu_mean_us": cpu}


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _ratio(theirs: dict[str, float], ours: dict[str, float], key: str = "mean_us"
           ) -> float | None:
    if not theirs.get(key) or not ours.get(key):
        return None
    return round(theirs[key] / ours[key], 1)


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on this platform
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


# --- 1. ours, in memory ----------------------------------------------------------------------


def _ours(n: int, *, keep: int, seed: int, proofs: int,
          progress: ProgressFn) -> tuple[dict[str, Any], merkle.MemoryTree, list[bytes],
                                         dict[str, bool]]:
    tree = merkle.MemoryTree()
    kept: list[bytes] = []
    append_ns = append_cpu_ns = gen_ns = total_bytes = 0
    for start, count in _chunks(n, BATCH):
        t0 = time.perf_counter_ns()
        chunk = make_leaves(start, count, seed=seed)
        t1 = time.perf_counter_ns()
        c1 = time.thread_time_ns()
        tree.append_data(chunk)
        append_cpu_ns += time.thread_time_ns() - c1
        t2 = time.perf_counter_ns()
        gen_ns += t1 - t0
        append_ns += t2 - t1
        total_bytes += sum(map(len, chunk))
        if start < keep:
            kept.extend(chunk[:keep - start])
        progress("ours_append", start + count, n)
    root = tree.root()

    rng = random.Random(seed)  # noqa: S311 - reproducible indexes
    indexes = [rng.randrange(n) for _ in range(proofs)]
    gen: list[int] = []
    ver: list[int] = []
    made: list[list[bytes]] = []
    ok = True
    tree._edges.clear()  # start cold, as a fresh process would
    for done, index in enumerate(indexes, 1):
        t0 = time.perf_counter_ns()
        proof = tree.inclusion_proof(index)
        made.append(proof)
        t1 = time.perf_counter_ns()
        good = merkle.verify_inclusion(index, n, tree.leaf(index), proof, root)
        t2 = time.perf_counter_ns()
        gen.append(t1 - t0)
        ver.append(t2 - t1)
        ok = ok and good
        progress("ours_proofs", done, 3 * proofs)

    tree._edges.clear()
    incl_cpu = cpu_us([functools.partial(tree.inclusion_proof, i) for i in indexes])
    leaf_of = [tree.leaf(i) for i in indexes]
    ver_cpu = cpu_us([functools.partial(merkle.verify_inclusion, i, n, leaf_of[k], made[k], root)
                      for k, i in enumerate(indexes)])

    old_gen: list[int] = []
    sizes: list[int] = []
    tree._edges.clear()
    for done, index in enumerate(indexes, proofs + 1):
        size = rng.randrange(index + 1, n + 1)
        sizes.append(size)
        t0 = time.perf_counter_ns()
        proof = tree.inclusion_proof(index, size)
        old_gen.append(time.perf_counter_ns() - t0)
        ok = ok and merkle.verify_inclusion(index, size, tree.leaf(index), proof,
                                            tree.root(size))
        progress("ours_proofs", done, 3 * proofs)

    tree._edges.clear()
    old_cpu = cpu_us([functools.partial(tree.inclusion_proof, i, size)
                      for i, size in zip(indexes, sizes, strict=True)])

    cons_gen: list[int] = []
    cons_ver: list[int] = []
    firsts: list[int] = []
    cons_made: list[tuple[bytes, list[bytes]]] = []
    cons_ok = True
    tree._edges.clear()
    for done in range(2 * proofs + 1, 3 * proofs + 1):
        first = rng.randrange(1, n + 1)
        firsts.append(first)
        first_root = tree.root(first)
        t0 = time.perf_counter_ns()
        proof = tree.consistency_proof(first)
        cons_made.append((first_root, proof))
        t1 = time.perf_counter_ns()
        good = merkle.verify_consistency(first, n, first_root, root, proof)
        t2 = time.perf_counter_ns()
        cons_gen.append(t1 - t0)
        cons_ver.append(t2 - t1)
        cons_ok = cons_ok and good
        progress("ours_proofs", done, 3 * proofs)
    tree._edges.clear()
    cons_cpu = cpu_us([functools.partial(tree.consistency_proof, f) for f in firsts])
    cons_ver_cpu = cpu_us([functools.partial(merkle.verify_consistency, f, n, r1, root, p)
                           for f, (r1, p) in zip(firsts, cons_made, strict=True)])

    report = {
        "leaves": n,
        "leaf_bytes_mean": round(total_bytes / n, 1),
        "generate_leaves_per_s": _rate(n, gen_ns / 1e9),
        "append": {"seconds": round(append_ns / 1e9, 3), "batch": BATCH,
                   "leaves_per_s": _rate(n, append_ns / 1e9),
                   "cpu_seconds": round(append_cpu_ns / 1e9, 3),
                   "leaves_per_cpu_s": _rate(n, append_cpu_ns / 1e9)},
        "memory_bytes": sum(len(level) for level in tree.levels),
        "root": root.hex(),
        "inclusion": {"generate": _with_cpu(stats_us(gen), incl_cpu),
                      "verify": _with_cpu(stats_us(ver), ver_cpu),
                      "proof_hashes_mean": round(statistics.fmean(
                          len(merkle.inclusion_ranges(i, n)) for i in indexes), 1)},
        "inclusion_at_random_sizes": {"generate": _with_cpu(stats_us(old_gen), old_cpu)},
        "consistency": {"generate": _with_cpu(stats_us(cons_gen), cons_cpu),
                        "verify": _with_cpu(stats_us(cons_ver), cons_ver_cpu)},
    }
    return report, tree, kept, {"inclusion_proofs_verify": ok,
                                "consistency_proofs_verify": cons_ok}


# --- 2. pymerkle -----------------------------------------------------------------------------


def _pymerkle(data: Sequence[bytes], tree: merkle.MemoryTree, *, seed: int, proofs: int,
              progress: ProgressFn) -> tuple[dict[str, Any], dict[str, bool]]:
    try:
        import pymerkle  # type: ignore[import-untyped]  # noqa: PLC0415 - dev dependency
    except ImportError:
        return {"skipped": "pymerkle is not installed (it is a dev dependency: uv sync)"}, {}
    m = len(data)
    theirs = pymerkle.InmemoryTree(algorithm="sha256")  # 0x00/0x01 prefixes: RFC 6962
    append_ns = append_cpu_ns = 0
    for start, count in _chunks(m, BATCH):
        chunk = data[start:start + count]
        t0 = time.perf_counter_ns()
        c0 = time.thread_time_ns()
        theirs.append_entries(chunk)
        append_cpu_ns += time.thread_time_ns() - c0
        append_ns += time.perf_counter_ns() - t0
        progress("pymerkle_append", start + count, m)
    their_root = theirs.get_root()
    our_root = tree.root(m)

    def their_verify_inclusion(index: int, proof: Any) -> bool:
        try:
            pymerkle.verify_inclusion(theirs.get_leaf(index + 1), their_root, proof)
        except pymerkle.InvalidProof:
            return False
        return True

    def their_verify_consistency(first_root: bytes, proof: Any) -> bool:
        try:
            pymerkle.verify_consistency(first_root, their_root, proof)
        except pymerkle.InvalidProof:
            return False
        return True

    rng = random.Random(seed + 1)  # noqa: S311 - reproducible indexes
    indexes = [rng.randrange(m) for _ in range(proofs)]
    firsts = [rng.randrange(1, m + 1) for _ in range(proofs)]
    first_roots = [tree.root(f) for f in firsts]
    samples: dict[str, list[int]] = {k: [] for k in (
        "their_incl", "their_incl_ver", "our_incl", "our_incl_ver",
        "their_cons", "their_cons_ver", "our_cons", "our_cons_ver")}
    made: dict[str, list[Any]] = {"their_incl": [], "our_incl": [], "their_cons": [],
                                  "our_cons": []}
    same = verified = True
    tree._edges.clear()
    for done, index in enumerate(indexes, 1):
        t0 = time.perf_counter_ns()
        proof = theirs.prove_inclusion(index + 1, m)
        t1 = time.perf_counter_ns()
        verified = their_verify_inclusion(index, proof) and verified
        t2 = time.perf_counter_ns()
        ours = tree.inclusion_proof(index, m)
        t3 = time.perf_counter_ns()
        verified = merkle.verify_inclusion(index, m, tree.leaf(index), ours, our_root) \
            and verified
        t4 = time.perf_counter_ns()
        for key, ns in (("their_incl", t1 - t0), ("their_incl_ver", t2 - t1),
                        ("our_incl", t3 - t2), ("our_incl_ver", t4 - t3)):
            samples[key].append(ns)
        made["their_incl"].append(proof)
        made["our_incl"].append(ours)
        same = same and proof.path[0] == tree.leaf(index) and proof.path[1:] == ours
        progress("pymerkle_proofs", done, 2 * proofs)
    tree._edges.clear()
    for done, (first, first_root) in enumerate(zip(firsts, first_roots, strict=True),
                                               proofs + 1):
        t0 = time.perf_counter_ns()
        proof = theirs.prove_consistency(first, m)
        t1 = time.perf_counter_ns()
        verified = their_verify_consistency(first_root, proof) and verified
        t2 = time.perf_counter_ns()
        ours = tree.consistency_proof(first, m)
        t3 = time.perf_counter_ns()
        verified = merkle.verify_consistency(first, m, first_root, our_root, ours) and verified
        t4 = time.perf_counter_ns()
        for key, ns in (("their_cons", t1 - t0), ("their_cons_ver", t2 - t1),
                        ("our_cons", t3 - t2), ("our_cons_ver", t4 - t3)):
            samples[key].append(ns)
        made["their_cons"].append(proof)
        made["our_cons"].append(ours)
        progress("pymerkle_proofs", done, 2 * proofs)

    # Second, tight passes over the same calls for CPU time (our edge cache cold again).
    partial = functools.partial
    tree._edges.clear()
    cpu = {
        "their_incl": cpu_us([partial(theirs.prove_inclusion, i + 1, m) for i in indexes]),
        "their_incl_ver": cpu_us([partial(their_verify_inclusion, i, p)
                                  for i, p in zip(indexes, made["their_incl"], strict=True)]),
        "our_incl": cpu_us([partial(tree.inclusion_proof, i, m) for i in indexes]),
        "our_incl_ver": cpu_us([partial(merkle.verify_inclusion, i, m, tree.leaf(i), p, our_root)
                                for i, p in zip(indexes, made["our_incl"], strict=True)]),
        "their_cons": cpu_us([partial(theirs.prove_consistency, f, m) for f in firsts]),
        "their_cons_ver": cpu_us([partial(their_verify_consistency, r, p)
                                  for r, p in zip(first_roots, made["their_cons"], strict=True)]),
    }
    tree._edges.clear()
    cpu["our_cons"] = cpu_us([partial(tree.consistency_proof, f, m) for f in firsts])
    cpu["our_cons_ver"] = cpu_us([
        partial(merkle.verify_consistency, f, m, r, our_root, p)
        for f, r, p in zip(firsts, first_roots, made["our_cons"], strict=True)])

    def block(side: str) -> dict[str, Any]:
        return {
            "inclusion": {"generate": _with_cpu(stats_us(samples[f"{side}_incl"]),
                                                cpu[f"{side}_incl"]),
                          "verify": _with_cpu(stats_us(samples[f"{side}_incl_ver"]),
                                              cpu[f"{side}_incl_ver"])},
            "consistency": {"generate": _with_cpu(stats_us(samples[f"{side}_cons"]),
                                                  cpu[f"{side}_cons"]),
                            "verify": _with_cpu(stats_us(samples[f"{side}_cons_ver"]),
                                                cpu[f"{side}_cons_ver"])},
        }

    theirs_report, ours_report = block("their"), block("our")

    def speedups(key: str) -> dict[str, float | None]:
        return {f"{kind}_{step}": _ratio(theirs_report[kind][step], ours_report[kind][step],
                                         key)
                for kind in ("inclusion", "consistency") for step in ("generate", "verify")}

    report = {
        "version": metadata.version("pymerkle"),
        "config": "InmemoryTree(algorithm='sha256'), security on (0x00/0x01 prefixes)",
        "leaves": m,
        "append": {"seconds": round(append_ns / 1e9, 3), "batch": BATCH,
                   "leaves_per_s": _rate(m, append_ns / 1e9),
                   "cpu_seconds": round(append_cpu_ns / 1e9, 3),
                   "leaves_per_cpu_s": _rate(m, append_cpu_ns / 1e9)},
        "root": their_root.hex(),
        **theirs_report,
        "ours_at_same_size": ours_report,
        "speedup": speedups("mean_us"),
        "speedup_p50": speedups("p50_us"),
        "speedup_cpu": speedups("cpu_mean_us"),
    }
    return report, {"roots_equal_pymerkle": their_root == our_root,
                    "inclusion_proofs_equal_pymerkle": same,
                    "pymerkle_comparison_proofs_verify": verified}


# --- 3. the database log ---------------------------------------------------------------------


def _versions(database: Database) -> dict[str, str]:
    with database.engine.connect() as conn:
        if database.is_sqlite:
            return {"sqlite": str(conn.exec_driver_sql("select sqlite_version()").scalar())}
        return {"postgresql": str(conn.exec_driver_sql("show server_version").scalar())}


def _database(kind: str, data: Sequence[bytes], tree: merkle.MemoryTree, *, seed: int,
              proofs: int, progress: ProgressFn) -> tuple[dict[str, Any], dict[str, bool]]:
    from shanju.bench.common import throwaway_database  # noqa: PLC0415 - heavy import

    d = len(data)
    with throwaway_database(kind, suffix="_transparency") as database:
        versions = _versions(database)
        batch_ns: list[int] = []
        for start, count in _chunks(d, DB_BATCH):
            entry_id = start // DB_BATCH + 1
            rows = [(entry_id, None, blob) for blob in data[start:start + count]]
            t0 = time.perf_counter_ns()
            with database.transaction() as session:
                session.execute(insert(JournalEntry), [{
                    "id": entry_id, "kind": "campaign.batch",
                    "memo": f"bench batch {entry_id}", "created_at": _OPENING}])
                log.append_rows(session, rows)
            batch_ns.append(time.perf_counter_ns() - t0)
            progress("db_append", start + count, d)
        append_s = sum(batch_ns) / 1e9

        rng = random.Random(seed + 2)  # noqa: S311 - reproducible indexes
        our_root = tree.root(d)
        gen: list[int] = []
        cgen: list[int] = []
        same = verified = True
        with database.transaction(write=False) as session:
            head = service.head(session)
            for done in range(1, proofs + 1):
                index = rng.randrange(d)
                t0 = time.perf_counter_ns()
                proof = service.inclusion_proof(session, index, d)
                gen.append(time.perf_counter_ns() - t0)
                same = same and proof == tree.inclusion_proof(index, d)
                verified = verified and merkle.verify_inclusion(
                    index, d, tree.leaf(index), proof, head.root)
                progress("db_proofs", done, 2 * proofs)
            for done in range(proofs + 1, 2 * proofs + 1):
                first = rng.randrange(1, d + 1)
                t0 = time.perf_counter_ns()
                proof = service.consistency_proof(session, first, d)
                cgen.append(time.perf_counter_ns() - t0)
                same = same and proof == tree.consistency_proof(first, d)
                verified = verified and merkle.verify_consistency(
                    first, d, tree.root(first), head.root, proof)
                progress("db_proofs", done, 2 * proofs)
        report = {
            "db": kind,
            "leaves": d,
            "batch": DB_BATCH,
            "append": {"seconds": round(append_s, 3),
                       "leaves_per_s": _rate(d, append_s),
                       "batch_ms": {k.replace("_us", "_ms"): round(v / 1_000, 2)
                                    for k, v in stats_us(batch_ns).items() if k != "n"}},
            "inclusion": {"generate": stats_us(gen)},
            "consistency": {"generate": stats_us(cgen)},
            "versions": versions,
        }
        return report, {"db_head_equals_memory": head.size == d and head.root == our_root,
                        "db_proofs_equal_memory": same, "db_proofs_verify": verified}


# --- the whole benchmark ---------------------------------------------------------------------


def bench_transparency(*, leaves_count: int, db: str | None = "sqlite",
                       pymerkle_leaves: int = 1_000_000, db_leaves: int = 1_000_000,
                       proofs: int = 1_000, db_proofs: int = 200, seed: int = 6962,
                       progress: ProgressFn = _no_progress) -> dict[str, Any]:
    """Run the benchmark; return the JSON-ready report (see the module docstring)."""
    n = leaves_count
    m = min(n, pymerkle_leaves)
    d = min(n, db_leaves) if db else 0
    load_start = _loadavg()
    started = time.perf_counter()
    gc.collect()
    ours, tree, kept, invariants = _ours(n, keep=max(m, d), seed=seed, proofs=proofs,
                                         progress=progress)
    report: dict[str, Any] = {
        "benchmark": "transparency",
        "leaves": n,
        "parameters": {"leaves": n, "seed": seed, "batch": BATCH, "proofs": proofs,
                       "pymerkle_leaves": m, "db": db or "none", "db_leaves": d,
                       "db_batch": DB_BATCH, "db_proofs": db_proofs if db else 0},
        "ours": ours,
    }
    if m:
        pm, pm_invariants = _pymerkle(kept[:m], tree, seed=seed, proofs=proofs,
                                      progress=progress)
        report["pymerkle"] = pm
        invariants.update(pm_invariants)
        gc.collect()  # pymerkle's millions of node objects
    else:
        report["pymerkle"] = {"skipped": "--pymerkle-leaves 0"}
    versions: dict[str, str] = {}
    if db:
        report["database"], db_invariants = _database(db, kept[:d], tree, seed=seed,
                                                      proofs=db_proofs, progress=progress)
        versions = report["database"]["versions"]
        invariants.update(db_invariants)
    else:
        report["database"] = None
    del kept
    speed = report["pymerkle"].get("speedup", {})
    speed_cpu = report["pymerkle"].get("speedup_cpu", {})
    report["targets"] = {
        "append_leaves_per_s": TARGET_APPEND_PER_S,
        "append_met": ours["append"]["leaves_per_s"] >= TARGET_APPEND_PER_S,
        "proof_ms": TARGET_PROOF_MS,
        "proof_met": ours["inclusion"]["generate"]["p99_us"] <= TARGET_PROOF_MS * 1_000,
        "proof_met_cpu": ours["inclusion"]["generate"]["cpu_mean_us"] <= TARGET_PROOF_MS * 1_000,
        "speedup_vs_pymerkle": TARGET_SPEEDUP,
        "speedup_met": (speed.get("inclusion_generate") or 0) >= TARGET_SPEEDUP
        if speed else None,
        "speedup_met_cpu": (speed_cpu.get("inclusion_generate") or 0) >= TARGET_SPEEDUP
        if speed_cpu else None,
    }
    report["invariants"] = invariants
    report["ok"] = all(invariants.values())
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = {**machine(), "cpu_model": _cpu_model(), **versions,
                         "loadavg_start": load_start, "loadavg_end": _loadavg()}
    return report
