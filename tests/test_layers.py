"""The package's layers (docs/architecture.md): each imports only layers below it.

Read from the source with ``ast`` (every ``import``, at module level or inside a function), so a
lazy import cannot slip past. Layers of the same rank are siblings and may not import each other:
nothing under ``inference`` imports ``training`` and the reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "csrdmri"
#: Layer of each top-level module or subpackage, from the bottom up.
RANK = {
    "__init__": 0,
    "core": 0,
    "io": 1,
    "weights": 1,
    "dmri": 2,
    "models": 3,
    "phantom": 3,
    "inference": 4,
    "training": 4,
    "evaluation": 5,
    "cohort": 5,
    "workflows": 6,
    "api": 7,
    "cli": 7,
    "__main__": 8,
}


def layer(module: str) -> str:
    """``csrdmri.io.nifti`` → ``io``; ``csrdmri`` → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, csrdmri module) of every import of the package in a source file of ``package``."""
    module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            if name == "csrdmri":  # ``from csrdmri import x``: x is the module imported
                found += [(node.lineno, f"csrdmri.{a.name}") for a in node.names if a.name != "__version__"]
    return [(line, name) for line, name in found if name == "csrdmri" or name.startswith("csrdmri.")]


SOURCES = sorted(PACKAGE.rglob("*.py"))
#: The one import up the layers: ``csrdmri.upsample`` and ``csrdmri.load_model``, looked up on first
#: use by the package's ``__getattr__`` (the Python API's front door).
FACADE = {("__init__", "csrdmri.api")}


def test_every_module_belongs_to_a_layer():
    unknown = {layer(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in SOURCES}
    assert unknown <= set(RANK), f"modules outside every layer: {unknown - set(RANK)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path):
    own = layer(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    wrong = [
        f"line {line}: {name} ({layer(name)})"
        for line, name in imports(path)
        if layer(name) != own and RANK[layer(name)] >= RANK[own] and (own, name) not in FACADE
    ]
    assert not wrong, f"{own} (layer {RANK[own]}) imports its own layer or one above: {wrong}"


def test_the_check_sees_lazy_and_relative_imports(tmp_path):
    source = tmp_path / "csrdmri" / "inference" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from csrdmri.training.loop import run\n    from ..workflows import x\n")
    found = [name for _, name in imports(source, tmp_path / "csrdmri")]
    assert found == ["csrdmri.training.loop", "csrdmri.workflows"]  # lazy and relative, both seen
