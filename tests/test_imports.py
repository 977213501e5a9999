"""The README's arrows: which layer of `changeseg` may import which (lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "changeseg"
# the bottom: they import nothing from changeseg (region_split, box_grow: only errors), so anyone
# may import them (and the package root's __version__)
BASE = {"errors", "labels", "region_split", "box_grow", "swap_symmetry", "hardware", "imagenet",
        "changeseg"}
ALLOWED = {
    "errors": {"changeseg"},
    "labels": set(),
    "hardware": set(),
    "imagenet": set(),
    "region_split": {"errors"},
    "box_grow": {"errors"},
    "swap_symmetry": set(),
    "models": BASE,
    "io": BASE,
    "data": BASE | {"io"},
    "inference": BASE | {"io", "models"},
    "training": BASE | {"io", "models", "data"},
    "evaluation": BASE | {"io", "data"},
    "service": BASE | {"io", "inference"},
    "distributed": BASE | {"io", "inference"},
}


def changeseg_imports(path: Path) -> set[str]:
    """Dotted names of every `changeseg` module a file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] == "changeseg"}


def layer_of(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_what_the_arrows_allow(layer: str) -> None:
    files = [p for p in PACKAGE.rglob("*.py") if layer_of(p) == layer]
    assert files, layer
    for path in files:
        for name in changeseg_imports(path):
            target = name.split(".")[1] if "." in name else "changeseg"
            assert target == layer or target in ALLOWED[layer], f"{path.name} imports {name}"


def test_nothing_outside_the_cli_imports_it() -> None:
    roots = [PACKAGE, *(PACKAGE.parents[1] / d for d in ("tools", "bench", "examples"))]
    for path in (p for root in roots for p in root.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "cli"):
            continue
        assert not any(n.startswith("changeseg.cli") for n in changeseg_imports(path)), path


def test_the_pipeline_and_the_windowed_geotiff_path_do_not_import_each_other() -> None:
    inference = PACKAGE / "inference"
    assert "changeseg.inference.pipeline" not in changeseg_imports(inference / "geo.py")
    backend = changeseg_imports(inference / "backend.py")
    assert not any(n.startswith("changeseg.inference") for n in backend)  # the bottom of inference
