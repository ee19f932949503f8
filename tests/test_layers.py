"""The architecture in the folders: each layer of pat_lite imports only from the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pat_lite"
#: Bottom to top. A module may import from its own layer and from any layer listed before it.
LAYERS = [
    "utils", "resources", "core", "data", "evaluation", "models",
    "baselines", "training", "bench", "reproduce", "demo", "notebook", "cli",
]  # fmt: skip


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "pat_lite":
        raise ValueError(module)
    if len(parts) == 1:
        return "core"  # `from pat_lite import PATConfig` is the public face of the core
    return parts[1]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "pat_lite"}


def test_every_module_belongs_to_a_layer():
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts != ("__init__",):
            assert parts[0] in LAYERS, f"{path}: not in a layer {LAYERS}"


def test_imports_only_go_down_the_layers():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        own = "core" if parts == ("__init__",) else parts[0]
        for module in _imports(path):
            if LAYERS.index(_layer(module)) > LAYERS.index(own):
                wrong.append(f"{path.relative_to(PACKAGE)} ({own}) imports {module}")
    assert not wrong, "\n".join(wrong)


def test_no_relative_imports():
    relative = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert not relative, f"use absolute `pat_lite.` imports in {relative}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_itself_through_others():
    """No import circle between pat_lite's modules, counting imports inside functions too (a circle that
    only works because one side imports late is still a circle in the design)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}

    def targets(module: str) -> set[str]:
        found = set()
        for name in _imports(modules[module]):
            while name and name not in modules:  # `from pat_lite.x import y`: y may be a name, not a module
                name = name.rpartition(".")[0]
            if name and name != module and name != "pat_lite":
                found.add(name)
        return found

    graph = {module: targets(module) for module in modules}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
