"""The layer table (docs: architecture) holds, read from the source with an AST scan.

Every import counts: module-level, deferred (inside a function) and type-only (`if
TYPE_CHECKING:`). Run as a script (`python3 tests/test_layers.py`) it prints the graph: the
layers each layer imports, then each module and the mmlbench modules it imports, deferred ones
marked with '*'; a failing test prints the layer graph too.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Layer -> (its modules, the layers it may import besides its own). Highest first. `base` is
# errors, fsutil, paths, console, provenance; a layer that may import base may import errors.
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cli": (("mmlbench.cli", "mmlbench.__main__"), ("api", "report", "config", "data", "base")),
    "api": (("mmlbench.api",), ("plan", "runs", "report", "store", "config", "data", "base")),
    "plan": (("mmlbench.plan",), ("runs", "store", "config", "data", "base")),
    "runs": (("mmlbench.runs",), ("engine", "store", "config", "data", "base")),
    "engine": (("mmlbench.engine",), ("config", "data", "errors")),
    # A run row's settings are RunConfig's fields: report reads them from config, as store does.
    "report": (("mmlbench.report",), ("store", "config", "base")),
    "store": (("mmlbench.store",), ("config", "base")),
    "config": (("mmlbench.config", "mmlbench.config_checks", "mmlbench.plugins", "mmlbench.metrics"), ("base",)),
    "data": (("mmlbench.data",), ("base",)),
    "base": (("mmlbench.fsutil", "mmlbench.paths", "mmlbench.console", "mmlbench.provenance"), ("errors",)),
    "errors": (("mmlbench.errors",), ()),
}


def layer(module: str) -> str:
    for name, (prefixes, _) in LAYERS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def allowed(name: str) -> set[str]:
    below = set(LAYERS[name][1]) | {name}
    return below | ({"errors"} if "base" in below else set())


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


def layer_graph() -> dict[str, set[str]]:
    """Layer -> the other layers its modules import."""
    graph: dict[str, set[str]] = {name: set() for name in LAYERS}
    for module in modules():
        if module != "mmlbench":
            top, deferred = imports(module)
            graph[layer(module)] |= {layer(target) for target in top | deferred} - {layer(module)}
    return graph


def graph_text() -> str:
    return "\n".join(f"{name} -> {', '.join(sorted(targets)) or '-'}" for name, targets in layer_graph().items())


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_follow_the_layer_table(module):
    if module == "mmlbench":
        return
    top, deferred = imports(module)
    forbidden = sorted(target for target in top | deferred if layer(target) not in allowed(layer(module)))
    assert not forbidden, f"{module} ({layer(module)}) imports {forbidden}; the layers import:\n{graph_text()}"


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
    print(graph_text(), end="\n\n")
    for name in sorted(modules()):
        top, deferred = imports(name)
        print(f"{name}: {', '.join([*sorted(top), *(f'*{t}' for t in sorted(deferred))])}")
