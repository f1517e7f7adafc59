"""No import cycles between the modules of esper_slot and kernels, and the layering holds: the
lower modules (records, registry, grad-flow buffers, telemetry, ...) never import the slot.
Read from the source with ``ast`` (imports inside functions count; those under
``if TYPE_CHECKING:`` do not, since they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent
PACKAGES = ("esper_slot", "kernels")
# Modules below the slot: what they import must never reach esper_slot.slot.
LOWER = (
    "alpha",
    "blueprints",
    "blueprints.cnn",
    "blueprints.transformer",
    "discovery",
    "events",
    "extra_state",
    "gate",
    "gate_inputs",
    "gates",
    "grad_flow",
    "gradient_gate",
    "integrity",
    "lifecycle",
    "metrics",
    "migration",
    "norms",
    "optim",
    "probes",
    "registry",
    "telemetry",
    "telemetry_step",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, anywhere in it but under TYPE_CHECKING."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:  # `from . import registry` imports a module
                found.add(f"{target}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    paths = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = dfs(node)
            if cycle:
                return cycle
    return None


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_the_walker_sees_what_it_must():
    edges = graph()
    assert "esper_slot.discovery" in edges["esper_slot.counterfactual"]
    assert "esper_slot.checkpoint" in edges["esper_slot.slot"]  # imported inside a function
    assert "kernels" in edges["esper_slot.slot"]  # `import kernels`
    assert "esper_slot.registry" in edges["esper_slot.slot"]  # `from . import registry`
    assert "esper_slot.slot" not in edges["esper_slot.discovery"]  # TYPE_CHECKING only
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    edges = graph()
    edges.pop("esper_slot", None)  # the package __init__ re-exports everything above it
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("lower", LOWER)
def test_lower_modules_never_reach_the_slot(lower):
    edges = graph()
    assert "esper_slot.slot" not in reachable(edges, f"esper_slot.{lower}")


def test_kernels_never_import_esper_slot():
    edges = graph()
    for module, targets in edges.items():
        if module.startswith("kernels"):
            assert not any(t.startswith("esper_slot") for t in targets), module
