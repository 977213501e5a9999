"""Load a script of bench/ or tools/ (not a package) as a module, for its tests."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.conftest import PROJECT_ROOT

ROOT = PROJECT_ROOT


def load_script(relative: str) -> ModuleType:
    """The script at ROOT/`relative` (e.g. "tools/average_weights.py") imported as a module."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
