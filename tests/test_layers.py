"""Imports point down the layers only (ARCHITECTURE.md), read from the source with an AST scan.

Run as a script (`python3 tests/test_layers.py`) it prints the import graph: each module and
the mmlbench modules it imports, deferred ones (inside functions) marked with '*'.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first; a module may import its own layer or the ones below, never above.
LAYERS = (
    ("mmlbench.errors", "mmlbench.fsutil", "mmlbench.paths", "mmlbench.console", "mmlbench.provenance", "mmlbench.metrics"),
    ("mmlbench.data",),
    ("mmlbench.store", "mmlbench.config", "mmlbench.config_checks", "mmlbench.plugins"),
    ("mmlbench.engine", "mmlbench.runs", "mmlbench.report"),
    ("mmlbench.plan",),
    ("mmlbench.cli", "mmlbench.__main__"),
)


def layer(module: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


@cache
def modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "mmlbench").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@cache
def imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(module-level, deferred) mmlbench imports of `module`; those of `if TYPE_CHECKING:` blocks count as
    module-level: a type-only import ties the modules together as much as any other."""
    path = modules()[module]
    top: set[str] = set()
    deferred: set[str] = set()

    def visit(node: ast.AST, inside_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            in_function = inside_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            for target in _targets(child, module, path.name == "__init__.py"):
                (deferred if in_function else top).add(target)
            visit(child, in_function)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    top.discard(module)
    return frozenset(top), frozenset(deferred - top - {module})


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parent = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
            base = ".".join([*parent, base] if base else parent)
        names = [f"{base}.{alias.name}" for alias in node.names]
    else:
        return []
    found = []
    for name in names:
        while name not in modules() and "." in name:  # `from mmlbench.x import f` names the module mmlbench.x
            name = name.rsplit(".", 1)[0]
        if name.startswith("mmlbench") and name != "mmlbench":
            found.append(name)
    return found


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_point_down_only(module):
    if module == "mmlbench":
        return
    top, deferred = imports(module)
    upward = sorted(target for target in top | deferred if layer(target) > layer(module))
    assert not upward, f"{module} imports from a layer above: {upward}"


def test_engine_and_report_do_not_import_each_other():
    for module in modules():
        top, deferred = imports(module)
        for other, forbidden in (("mmlbench.engine", "mmlbench.report"), ("mmlbench.report", "mmlbench.engine")):
            if module.startswith(other + "."):
                assert not any(t.startswith(forbidden) for t in top | deferred), module


def test_no_import_cycles():
    """Deferred imports count too (a cycle broken only by an import inside a function is still
    a cycle), except a package's deferred imports of its own submodules: `cli` registering its
    commands, which import helpers from `cli`."""
    graph = {}
    for module in modules():
        top, deferred = imports(module)
        graph[module] = top | {t for t in deferred if not t.startswith(module + ".")}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                raise AssertionError(" -> ".join([*path[path.index(target):], target]))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


if __name__ == "__main__":
    for name in sorted(modules()):
        top, deferred = imports(name)
        print(f"{name}: {', '.join([*sorted(top), *(f'*{t}' for t in sorted(deferred))])}")
