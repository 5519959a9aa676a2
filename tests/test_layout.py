"""The package's import graph: no cycles, and data flows one way through the layers.

Layers, in order: the shared top-level modules (config, resources, atomic, integrity, ...),
world/ and fast/, model/, evaluation/ (it reads a model against the world's ground truth),
train/ and stacking/ (training logs evaluation's R2 as it goes), study/, exploration/ (the adaptive
search over study runs), report/, then the entry
points (access, cli, bench). A module imports only from its own layer or earlier ones; imports under
``if TYPE_CHECKING`` are for annotations and do not count.
"""

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "flyvis_study"
LAYER = {"world": 1, "fast": 1, "model": 2, "evaluation": 3, "train": 4, "stacking": 4, "study": 5, "exploration": 6,
         "report": 7}
ENTRY_POINTS = {"flyvis_study", "access", "cli", "bench"}  # above every layer (the package root re-exports access)


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """{module: the package modules it imports at run time} (``from a.b import c`` counts as
    ``a.b.c`` when that is a module)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for stmt in tree.body if isinstance(stmt, ast.If) and "TYPE_CHECKING" in
                       ast.unparse(stmt.test) for n in ast.walk(stmt)}
        found = set()
        for node in ast.walk(tree):
            if id(node) in typing_only or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("flyvis_study")}
            elif node.module and node.module.startswith("flyvis_study") and not node.level:
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    is_module = (REPO / (name.replace(".", "/") + ".py")).is_file()
                    found.add(name if is_module else node.module)
        graph[_module(path)] = found - {_module(path), "flyvis_study"}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in LAYER:
        return LAYER[parts[1]]
    return 8 if parts[-1] in ENTRY_POINTS else 0


def test_the_import_graph_has_no_cycle():
    graph = _imports()
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target] if target in path else [module, target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_module_imports_from_a_later_layer():
    upward = {(a, b) for a, targets in _imports().items() for b in targets if _layer(b) > _layer(a)}
    assert upward == set()
    assert len(_imports()) > 60  # the graph was read (every module of the package)
