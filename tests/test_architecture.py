"""The package's shape, read from its source: no import circles, the core never imports the book,
no module borrows another's private names, no module grows much past 400 lines, and the five
places that turn Phi's outputs into proposals all go through ``twist_lib.proposals.propose``."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "twist_lib"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package (``__init__`` = the package)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _package_of(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str) -> list[tuple[str, list[str], int]]:
    """``(imported module, names imported from it, line)`` of every import in module ``name``,
    at any depth (function-level imports count: they are circles too, only later)."""
    tree = ast.parse(MODULES[name].read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name).split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names], node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    graph = {}
    for name in MODULES:
        deps = set()
        for target, names, _ in _imports(name):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                if candidate in MODULES and candidate != name:
                    deps.add(candidate)
                    break
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), ignoring the edges
    from a package's ``__init__`` to its own submodules (re-exports, never a circle by design)."""
    def edges(v):
        return [w for w in graph[v] if not w.startswith(v + ".")]
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"p": {"p.x"}, "p.x": {"p"}}) == []      # a package re-exporting its module


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_the_core_never_imports_the_book():
    core = [m for m in MODULES if not m.startswith("twist_lib.book")]
    offenders = [(m, t, line) for m in core for t, names, line in _imports(m)
                 if t.startswith("twist_lib.book") or (t == "twist_lib" and "book" in names)]
    assert offenders == []


def test_no_private_name_crosses_a_module_boundary():
    offenders = []
    for name in MODULES:
        for target, names, line in _imports(name):
            if target.startswith("twist_lib"):
                offenders += [f"{name}:{line} imports {target}.{n}" for n in names
                              if n.startswith("_") and not n.startswith("__")]
    assert offenders == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_the_line_budget(name):
    assert len(MODULES[name].read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("name", ["twist_lib.self_training", "twist_lib.inference",
                                  "twist_lib.psi_training", "twist_lib.book.proposal_study",
                                  "twist_lib.book.psi_diagnostics"])
def test_every_path_from_phi_to_proposals_goes_through_propose(name):
    """Phi's outputs -> module A -> Psi is written once (:func:`twist_lib.proposals.propose`):
    its callers call it, and neither turn logits into probabilities nor run Psi themselves
    (``inference.recluster`` runs module A again on a stored prediction: no Phi, no Psi)."""
    source = MODULES[name].read_text()
    assert "propose(" in source
    assert "recorrect(" not in source and "softmax(" not in source
