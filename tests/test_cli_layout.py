"""The CLI package's import layout: no circle, and no group module importing another.

Read from the source with ``ast`` (nothing is imported): each module of ``src/leanrec/cli``
may import ``common`` and the library; only ``__init__`` (which assembles the app) and
``__main__`` import group modules; ``common`` imports no CLI module at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import leanrec.cli

CLI = Path(leanrec.cli.__file__).parent
ASSEMBLERS = {"__init__", "__main__"}


def cli_imports(path: Path) -> set[str]:
    """The modules of the CLI package that ``path`` imports (by their short names)."""
    mods = {p.stem for p in CLI.glob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from . import x / from .x import y
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            elif node.level == 0 and (node.module or "").startswith("leanrec.cli"):
                rest = node.module.split(".")[2:]
                names = rest[:1] if rest else [a.name for a in node.names]
            else:
                continue
            found |= {"__init__" if n == "" else n for n in names if n in mods}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[:2] == ["leanrec", "cli"]:
                    found.add(parts[2] if len(parts) > 2 and parts[2] in mods else "__init__")
    return found


def graph() -> dict[str, set[str]]:
    return {p.stem: cli_imports(p) for p in sorted(CLI.glob("*.py"))}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path of module names, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_layout_has_a_shared_module_and_groups():
    edges = graph()
    assert {"common", "data", "model", "encoder", "cost", "batch", "service", "demo"} <= set(edges)


def test_no_import_circle_and_groups_import_only_the_shared_module():
    edges = graph()
    assert cycle(edges) is None, f"import circle: {' -> '.join(cycle(edges))}"
    assert edges["common"] == set(), f"common imports {edges['common']}"
    for module, imports in edges.items():
        if module not in ASSEMBLERS:
            assert imports <= {"common"}, f"{module} imports {sorted(imports - {'common'})}"


def test_the_checks_catch_a_circle_and_a_group_import(tmp_path):
    """The checker itself: it sees ``from .x import y``, ``from . import x`` and absolute imports."""
    (tmp_path / "a.py").write_text("from .b import thing\nfrom . import common\n")
    (tmp_path / "b.py").write_text("import leanrec.cli.a\n")
    assert cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert cycle({"a": {"b"}, "b": {"common"}, "common": set()}) is None
    global CLI
    saved, CLI = CLI, tmp_path
    try:
        (tmp_path / "common.py").write_text("")
        assert graph() == {"a": {"b", "common"}, "b": {"a"}, "common": set()}
    finally:
        CLI = saved
