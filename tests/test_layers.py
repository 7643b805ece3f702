"""The house flows one way: no import from a lower layer to a higher one, no import cycle.

Reads every ``import`` in ``src/leanrec`` with :mod:`ast` (function-level imports too:
a lazy import is still a dependency) and checks them against ``docs/layers.toml``.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
LAYERS = tomllib.loads((ROOT / "docs" / "layers.toml").read_text())


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in (SRC / "leanrec").rglob("*.py") if "migrations" not in p.parts}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only, never imported)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
            else:
                todo.append(child)


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The leanrec modules ``name`` imports (a ``from X import y`` counts X.y when it is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from package import module`` imports the module; ``from module import name`` the module
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t.startswith("leanrec") and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(m, p, known) for m, p in mods.items()}


def _entry(module: str) -> tuple[int, str]:
    """(layer index, 0 = top; the entry) of the longest listed prefix of ``module``."""
    best = None
    for level, entries in enumerate(LAYERS["layers"]):
        for e in entries:
            if (module == e or module.startswith(e + ".")) and (best is None or len(e) > len(best[1])):
                best = (level, e)
    if best is None:
        raise AssertionError(f"{module} is in no layer of docs/layers.toml")
    return best


def test_every_module_has_a_layer():
    for m in _modules():
        _entry(m)


def test_no_import_runs_up_a_layer():
    independent = [set(group) for group in LAYERS["independent"]]
    bad = []
    for m, targets in _graph().items():
        lm, em = _entry(m)
        for t in targets:
            lt, et = _entry(t)
            if lt < lm:
                bad.append(f"{m} -> {t} ({em} is below {et})")
            elif lt == lm and em != et and any({em, et} <= g for g in independent):
                bad.append(f"{m} -> {t} ({em} and {et} are independent)")
    assert not bad, "imports against docs/layers.toml:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    graph = _graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    # a package's __init__ importing its own submodules, which import a sibling through the
    # package, is how Python packages work, not a cycle between concepts
    real = [c for c in cycles if not all(x == c[0] or x.startswith(c[0] + ".") or c[0].startswith(x + ".")
                                         for x in c)]
    assert not real, "import cycles:\n" + "\n".join(" -> ".join(c) for c in real)


@pytest.mark.parametrize("module, target, allowed", [
    ("leanrec.service.core", "leanrec.models.base", True),
    ("leanrec.models.base", "leanrec.service.core", False),
    ("leanrec.core.metrics", "leanrec.data.schema", False),
])
def test_the_layer_check_sees_direction(module, target, allowed):
    (lm, _), (lt, _) = _entry(module), _entry(target)
    assert (lt >= lm) is allowed


def test_one_not_fitted_error_for_every_layer():
    """Models, encoders, codecs and indexes raise the same class (leanrec.core.errors)."""
    from leanrec.core.errors import NotFittedError
    from leanrec.encoders import TfidfEncoder
    from leanrec.models import EASE
    from leanrec.vectors import ExactIndex, NotFittedError as VectorsNotFitted, make_codec

    assert VectorsNotFitted is NotFittedError
    for call in (lambda: EASE().score([1]), lambda: TfidfEncoder().encode(["a"]),
                 lambda: ExactIndex().search(np.zeros((1, 4), np.float32), 1),
                 lambda: make_codec("pq4").encode(np.zeros((1, 8), np.float32))):
        with pytest.raises(NotFittedError):
            call()
