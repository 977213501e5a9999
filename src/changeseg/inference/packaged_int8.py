"""The int8 recipe shipped beside a packaged model, so `auto` can use int8 without its data.

`tools/quantize_model.py MODEL --package` quantises a packaged model on its validation pairs,
measures the int8 gate on all of them (`quantize.assess_int8`) and writes ``int8.json`` into
the model's package folder: the activation ranges the quantiser measured, a fingerprint of the
int8 graph it built, and the verdicts. On a user's machine, where the validation data is
absent, the first `auto` (or `int8`) load quantises the exported model from those ranges
(seconds, no pairs); only when the rebuilt graph has the recorded fingerprint — the very model
the verdicts were measured on — are the verdicts copied beside it (`verdict.json`), where
`quantize.int8_approved` reads them as it reads locally measured ones. A recipe for other
weights (the model was retrained since) or a graph that came out different (another exporter
or quantiser version) gives an int8 model without a verdict: `auto` then keeps float.

Torch-free: onnx, onnxruntime and the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from changeseg.errors import CheckpointError
from changeseg.inference.onnx_runtime import ONNX_FILE
from changeseg.inference.quantize import (
    RANGES_FILE,
    is_quantized_folder,
    quantize_onnx,
    read_verdicts,
    write_verdict,
)
from changeseg.io.checkpoints import WEIGHTS_FILE, read_config
from changeseg.io.digest import file_sha256
from changeseg.io.images import write_json

RECIPE_FILE = "int8.json"
RECIPE_FORMAT = "changeseg-int8-recipe"


def graph_fingerprint(model_file: str | os.PathLike) -> str:
    """The SHA-256 (hex) of an ONNX model's graph (nodes, weights, inputs and outputs), not of
    the file: producer strings and other metadata do not change it."""
    import onnx

    graph = onnx.load(str(model_file)).graph
    return hashlib.sha256(graph.SerializeToString(deterministic=True)).hexdigest()


def write_recipe(package_folder: str | os.PathLike, int8: str | os.PathLike,
                 verdicts: Mapping[str, Mapping[str, Any]], machine: str) -> Path:
    """Record (atomically) the int8 recipe of the packaged model in `package_folder`.

    `int8` is the quantised folder the `verdicts` (backend -> `assess_int8` numbers with
    `int8_runtime`) were measured on; `machine` says where. The recipe holds its ranges, its
    graph fingerprint and the hash of the weights it belongs to.
    """
    package, quantized = Path(package_folder), Path(int8)
    ranges = json.loads((quantized / RANGES_FILE).read_text(encoding="utf-8"))
    settings = json.loads((quantized / "config.json").read_text(encoding="utf-8"))
    quantization = settings.get("metadata", {}).get("quantization", {})
    return write_json(package / RECIPE_FILE, {
        "format": RECIPE_FORMAT, "format_version": 1,
        "weights_sha256": file_sha256(package / WEIGHTS_FILE),
        "int8_graph_sha256": graph_fingerprint(quantized / ONNX_FILE),
        # the settings, less where the quantised file lived on the packaging machine
        "quantization": {key: value for key, value in quantization.items() if key != "source_onnx"},
        "machine": machine, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "verdicts": {name: dict(numbers) for name, numbers in verdicts.items()},
        "ranges": ranges})


def read_recipe(package_folder: str | os.PathLike) -> dict[str, Any] | None:
    """The int8 recipe beside a model's weights, or None when there is none or it belongs to
    other weights (the model changed after the recipe was written) or cannot be read."""
    folder = Path(package_folder)
    try:
        recipe = json.loads((folder / RECIPE_FILE).read_text(encoding="utf-8"))
        if recipe.get("format") != RECIPE_FORMAT or not isinstance(recipe.get("ranges"), dict):
            return None
        if recipe.get("weights_sha256") != file_sha256(folder / WEIGHTS_FILE):
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return recipe


def packaged_verdict(package_folder: str | os.PathLike, backend: str) -> dict[str, Any] | None:
    """The verdict the model's recipe records for `backend`, or None (no usable recipe or none
    measured for that backend)."""
    recipe = read_recipe(package_folder)
    numbers = (recipe or {}).get("verdicts", {}).get(backend)
    return numbers if isinstance(numbers, dict) else None


def _threshold(package_folder: str | os.PathLike) -> float | None:
    try:
        return float(read_config(package_folder).threshold)
    except (CheckpointError, TypeError, ValueError):
        return None


def build_from_recipe(package_folder: str | os.PathLike, fp32_folder: str | os.PathLike,
                      out_folder: str | os.PathLike,
                      log: Callable[[str], None] | None = None) -> Path | None:
    """Quantise `fp32_folder` into `out_folder` from the packaged recipe; None without a recipe.

    The recipe's verdicts are recorded beside the result only when its graph matches the
    recorded fingerprint; otherwise `log` hears why `auto` will not use it.
    """
    recipe = read_recipe(package_folder)
    if recipe is None:
        return None
    target = Path(out_folder)
    if not is_quantized_folder(target):
        if log is not None:
            log(f"quantising to int8 from the ranges packaged with the model ({target}); "
                "this happens once per model")
        handle, name = tempfile.mkstemp(prefix=".ranges.", suffix=".json", dir=Path(fp32_folder))
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(recipe["ranges"], stream)
            quantize_onnx(fp32_folder, target, [], ranges=name,
                          description=f"ranges packaged with {Path(package_folder).name}")
        finally:
            Path(name).unlink(missing_ok=True)
    if graph_fingerprint(target / ONNX_FILE) != recipe.get("int8_graph_sha256"):
        if log is not None:
            log("note: the int8 model built here differs from the one the packaged verdict was "
                "measured on (another exporter or quantiser version?); auto keeps float — "
                "measure it with tools/quantize_model.py")
        return target
    present = read_verdicts(target)
    threshold = _threshold(package_folder)
    for backend, numbers in recipe.get("verdicts", {}).items():
        # a verdict is measured at the model's decision threshold: another one voids it
        if backend not in present and threshold is not None and numbers.get("threshold") == threshold:
            write_verdict(target, backend, {**numbers, "source": f"packaged ({recipe.get('machine', '?')})"})
    return target
