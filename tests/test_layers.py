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
