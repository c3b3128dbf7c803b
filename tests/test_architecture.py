"""The package's shape: imports flow one way, and one place lists every command.

Layers, bottom to top: data and flows; training and evaluation; checks and report; the command
line. An import cycle would let a lower layer reach a higher one, so the import graph of
``replication`` (every ``import``, at module level or inside a function, type-only ones too)
must be acyclic, between modules and between the top-level subpackages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import replication
from replication import cli

PACKAGE = Path(replication.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(name: str, modules: dict[str, Path]) -> str:
    """The module an import of ``name`` loads: itself, else the package that holds it."""
    while name not in modules:
        name = name.rpartition(".")[0]
    return name


def import_graph() -> dict[str, set[str]]:
    """Each module of ``replication`` and the modules of ``replication`` it imports."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1 packages
                    parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parents, base] if base else parents)
                # ``from a import b`` imports module a.b when b is one, else names of a.
                names = [f"{base}.{alias.name}" for alias in node.names]
                names = [name if name in modules else base for name in names]
            else:
                continue
            targets |= {_imported(n, modules) for n in names if n.split(".")[0] == "replication"}
        graph[module] = targets - {module}
    return graph


def collapse(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between top-level units: ``replication.flows.ode`` counts as
    ``replication.flows``; imports inside one unit drop out."""

    def unit(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else module

    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        units.setdefault(unit(module), set()).update(unit(t) for t in targets)
    return {name: targets - {name} for name, targets in units.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the search path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "replication.runs" in graph["replication"]  # replication.__getattr__ imports it
    assert "replication.train" in graph["replication.cli.run"]  # inside the train handler


@pytest.mark.parametrize("level", ["modules", "packages"])
def test_imports_have_no_cycles(level):
    graph = import_graph()
    graph = graph if level == "modules" else collapse(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_data_and_flows_import_nothing_above_them():
    units = collapse(import_graph())
    below = {"replication.datasets", "replication.flows"}
    allowed = below | {"replication.typed", "replication.atomic", "replication.yamlfile"}
    for unit in below:
        assert units[unit] <= allowed, f"{unit} imports {sorted(units[unit] - allowed)}"


def test_the_report_neither_trains_nor_loads_weights():
    """It renders files (metrics, density grids, sample images); evaluating saved weights is
    ``replication.evaluate``'s, through the one loader ``replication.runs``."""
    units = collapse(import_graph())
    assert not units["replication.report"] & {
        "replication.train", "replication.runs", "replication.evaluate", "replication.flows",
    }  # fmt: skip


def test_one_place_lists_every_command():
    parser = cli._parser()
    (commands,) = (a for a in parser._actions if a.dest == "command")
    listed = [name for names in cli.COMMANDS.values() for name in names]
    assert list(commands.choices) == listed
