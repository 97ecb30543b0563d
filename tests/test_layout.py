"""Code layout: no import cycle among the portal's modules, and every module in a layer of the
import contracts (pyproject.toml), which `lint-imports` enforces in ./run_tests.sh."""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

PACKAGE = Path(__file__).resolve().parent.parent / "portal"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The portal module an imported name refers to (its nearest enclosing module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> portal modules it imports at module level (function bodies excluded)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # `from . import x` names a submodule when there is one, else an attribute
                # of the package, which needs the package's __init__.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    edges.add(resolved)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_among_portal_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_relative_imports():
    graph = import_graph()
    assert "portal.platform.crypto" in graph["portal.ops.maintenance"]
    assert "portal.platform.locks" in graph["portal.ops.scheduler"]


# Not in a layer: the package's own __init__ (create_app builds everything), the version
# (imports nothing), and the simulator and the migrations, which are not the portal.
UNLAYERED = {"__init__", "version", "simulator", "migrations"}


def test_every_module_of_the_portal_is_in_a_layer():
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    [contract] = [c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers"]
    layered = {
        name.strip() for layer in contract["layers"] for name in layer.replace("|", ":").split(":")
    }
    present = {
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" or (path / "__init__.py").exists())
    }
    assert present - UNLAYERED == layered, (present - UNLAYERED) ^ layered


# Modules stay small enough to read in one sitting. The simulator (a test tool) and the
# migrations (one file per schema step) are left out.
MAX_MODULE_LINES = 500
UNMEASURED = ("simulator", "migrations")


def long_modules(limit: int = MAX_MODULE_LINES) -> dict[str, int]:
    """Modules of the portal over `limit` lines, by dotted name."""
    found = {}
    for name, path in _modules().items():
        if name.split(".")[1:2] and name.split(".")[1] in UNMEASURED:
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found[name] = lines
    return found


def test_no_module_of_the_portal_is_over_the_line_limit():
    assert long_modules() == {}


def test_the_line_count_sees_a_long_module():
    assert long_modules(limit=100), "some portal module is over 100 lines"
    assert all(not name.startswith("portal.simulator") for name in long_modules(limit=100))
