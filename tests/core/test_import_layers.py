"""Arrows only downward: the import graph of ``src/shanju`` keeps the money path's layers.

The graph is read from the source with ``ast``, so it sees every import — at module level,
under ``if TYPE_CHECKING:`` and inside functions (the usual places a cycle hides) — and does
not depend on what happens to be imported already. An edge ``a → b`` means module ``a``
imports module ``b`` (``from pkg import mod`` names the module ``pkg.mod``; importing
``a.b.c`` also runs the packages ``a`` and ``a.b``).

On the money path the layers are, from the bottom (docs/architecture.md):

1. the ledger's tables, ``ledger.models``;
2. the transparency log's storage — its tables, the pure leaf and Merkle code, and the append
   the ledger calls in the posting transaction (``STORAGE`` below);
3. the ledger service, which posts money and appends its leaves;
4. the log's readers, verifiers, checkpoints, receipts, API and pages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import shanju

SRC = Path(shanju.__file__).parent

# The transparency log's storage: what the ledger may import of the transparency package.
STORAGE = frozenset({
    "shanju.transparency.models",
    "shanju.transparency.log",
    "shanju.transparency.leaves",
    "shanju.transparency.merkle",
})

# Import cycles elsewhere, known and not broken yet (listed in issue 12's work). Delete a line
# when you break its cycle; never add one.
KNOWN_CYCLES = frozenset({
    frozenset({"shanju.demo.seed", "shanju.demo.summit"}),
    frozenset({"shanju.summit.hub", "shanju.summit.live_auth"}),
})


def modules_under(root: Path) -> dict[str, tuple[Path, bool]]:
    """Return ``{dotted name: (file, is a package)}`` of every module of the package at root."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Return, for every module under ``root``, the modules under ``root`` it imports."""
    modules = modules_under(root)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..a import b
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.add(submodule if submodule in modules else base)
        edges: set[str] = set()
        for target in targets:
            parts = target.split(".")
            # The module itself and every package above it run when it is imported.
            edges.update(m for i in range(1, len(parts) + 1)
                         if (m := ".".join(parts[:i])) in modules)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Return the strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _in(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def _described(graph: dict[str, set[str]], component: frozenset[str]) -> str:
    return "; ".join(f"{a} → {', '.join(sorted(graph[a] & component))}"
                     for a in sorted(component))


# --- the walker itself ----------------------------------------------------------------------


def test_the_walker_finds_cycles_hidden_in_functions_and_type_checking(tmp_path: Path) -> None:
    """A cycle made of a module-level import and one a function or TYPE_CHECKING hides."""
    files = {
        "__init__.py": "",
        "a.py": "from pkg import b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import X\n",
        "c.py": "def f():\n    from pkg.d import g\n    return g\n",
        "d.py": "import pkg.c\n",
        "e.py": "from . import a\nfrom .sub import f\n",
        "sub/__init__.py": "",
        "sub/f.py": "from ..e import thing\n",
        "alone.py": "import json\nfrom pkg import a\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph(tmp_path / "pkg")
    assert graph["pkg.a"] == {"pkg", "pkg.b"}
    assert graph["pkg.b"] == {"pkg", "pkg.a"}
    assert graph["pkg.c"] == {"pkg", "pkg.d"}
    assert graph["pkg.sub.f"] == {"pkg", "pkg.e"}
    assert graph["pkg.e"] == {"pkg", "pkg.a", "pkg.sub", "pkg.sub.f"}
    assert cycles(graph) == {frozenset({"pkg.a", "pkg.b"}), frozenset({"pkg.c", "pkg.d"}),
                             frozenset({"pkg.e", "pkg.sub.f"})}


# --- the money path -------------------------------------------------------------------------


def test_the_ledger_and_the_transparency_log_are_in_no_import_cycle() -> None:
    """``ledger.service`` appends to the log; nothing the log imports may lead back to it."""
    graph = import_graph(SRC)
    assert "shanju.ledger.service" in graph and STORAGE <= graph.keys()
    bad = [_described(graph, c) for c in cycles(graph)
           if any(_in("shanju.ledger", m) or _in("shanju.transparency", m) for m in c)]
    assert not bad, bad


def test_the_ledger_imports_only_the_logs_storage() -> None:
    """The ledger never imports the log's readers, verifiers, checkpoints or pages."""
    graph = import_graph(SRC)
    assert "shanju.transparency.log" in graph["shanju.ledger.service"]
    bad = {m: sorted(t for t in targets if _in("shanju.transparency", t)
                     and t != "shanju.transparency" and t not in STORAGE)
           for m, targets in graph.items() if _in("shanju.ledger", m)}
    assert not {m: t for m, t in bad.items() if t}, bad


def test_the_logs_storage_stays_below_the_ledger_service() -> None:
    """The storage imports of the ledger only its tables, of transparency only storage."""
    graph = import_graph(SRC)
    assert "shanju.ledger.models" in graph["shanju.transparency.log"]
    bad = {m: sorted(t for t in graph[m]
                     if (_in("shanju.ledger", t) and t not in ("shanju.ledger",
                                                              "shanju.ledger.models"))
                     or (_in("shanju.transparency", t) and t != "shanju.transparency"
                         and t not in STORAGE))
           for m in STORAGE}
    assert not {m: t for m, t in bad.items() if t}, bad


def test_no_new_import_cycle_anywhere() -> None:
    """Every import cycle of the code base is a known one (KNOWN_CYCLES, to be broken)."""
    graph = import_graph(SRC)
    found = cycles(graph)
    assert not found - KNOWN_CYCLES, [_described(graph, c) for c in found - KNOWN_CYCLES]
    assert not KNOWN_CYCLES - found, ("broken at last — delete from KNOWN_CYCLES:",
                                      [sorted(c) for c in KNOWN_CYCLES - found])


# --- the benchmarks -------------------------------------------------------------------------


def test_the_benchmarks_stay_apart_from_the_product() -> None:
    """``shanju.bench`` imports the domains; only the command line imports it back, and no
    domain keeps a benchmark module of its own."""
    graph = import_graph(SRC)
    assert "shanju.bench.giving_day" in graph and "shanju.bench" in graph["shanju.cli"]
    assert "shanju.campaigns.engine" in graph["shanju.bench.giving_day"]
    bad = {m: sorted(t for t in targets if _in("shanju.bench", t))
           for m, targets in graph.items() if not _in("shanju.bench", m) and m != "shanju.cli"}
    assert not {m: t for m, t in bad.items() if t}, bad
    strays = [m for m in graph if not _in("shanju.bench", m)
              and m.rpartition(".")[2].startswith("bench")]
    assert not strays, strays
