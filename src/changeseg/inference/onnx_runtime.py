"""`OnnxChangeDetector`: change detection with onnxruntime on an exported model, without torch.

An ONNX model folder, written by `changeseg.inference.export.export_onnx` (or
`changeseg export --onnx DIR`), holds `model.onnx` and `config.json`. The graph takes two
N×C×H×W float32 images in their raw 0–1 scale, named `reference` and `comparison` (any N, H,
W), normalises them itself and returns `probabilities`, N×num_classes×H×W softmax output.

Nothing on this module's import path imports torch: it needs numpy, onnxruntime, OpenCV and
the torch-free parts of changeseg (`io.images`, `io.checkpoints.read_config`,
`inference.result`), so a deployment can ship without PyTorch. `predict` returns the same
`ChangeResult` as the PyTorch `ChangeDetector`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from changeseg.errors import CheckpointError, InputError
from changeseg.inference.align import AlignOptions
from changeseg.inference.multiscale import with_views
from changeseg.inference.pipeline import detect_pair
from changeseg.inference.result import ChangeResult
from changeseg.inference.tiling import DEFAULT_TILE_SIZE, TilingOptions
from changeseg.io.checkpoints import CONFIG_FILE, WEIGHTS_FILE, CheckpointConfig, read_config
from changeseg.io.images import ImageLike, read_image, to_float, to_model_channels

ONNX_FILE = "model.onnx"
INPUT_NAMES = ("reference", "comparison")
OUTPUT_NAME = "probabilities"


@cache
def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads not counted; at least 1).

    Counts distinct (physical id, core id) pairs in /proc/cpuinfo, capped by the CPUs in the
    process's affinity mask; falls back to the logical CPU count where cpuinfo says nothing.
    """
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for block in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "core id" in fields:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    return max(1, min(len(cores) or available, available))


def import_runtime(module: str, what: str, extra: str) -> Any:
    """The optional runtime `module`, or a CheckpointError naming `what` it is and the
    `pip install 'changeseg[extra]'` that brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CheckpointError(f"the {what} is not installed ({exc}); "
                              f"install it with: pip install 'changeseg[{extra}]'") from None


def _import_onnxruntime() -> Any:
    return import_runtime("onnxruntime", "ONNX runtime", "onnx")


SPINNING_ENTRY = "session.intra_op.allow_spinning"


def session_options(threads: int | None = None, spinning: bool = False) -> Any:
    """onnxruntime session options: `threads` intra-op threads (default: physical cores),
    every graph optimisation enabled, sequential execution, and worker threads that sleep
    when idle unless `spinning` (onnxruntime's own default is to spin).

    Spinning off: on a quiet 2-core CPU 4 % more latency for 13 % less CPU per call; beside
    other work (a training run, the batch runner's reader and writer threads) spinning
    workers fight for the cores and a call took 2-3x as long (bench/onnx_spinning.py,
    docs/benchmarks.md).
    """
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.add_session_config_entry(SPINNING_ENTRY, "1" if spinning else "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: keep warnings about unused initialisers quiet
    return options


def create_session(model: str | os.PathLike | bytes, threads: int | None = None,
                   providers: Sequence[str] | None = None, source: str = "",
                   spinning: bool = False) -> Any:
    """An onnxruntime InferenceSession for a model file or serialized bytes
    (options: `session_options(threads, spinning)`).

    Raises CheckpointError (naming `source`) when the model cannot be loaded.
    """
    ort = _import_onnxruntime()
    chosen = list(providers or ["CPUExecutionProvider"])
    missing = [p for p in chosen if p not in ort.get_available_providers()]
    if missing:
        raise CheckpointError(f"onnxruntime execution provider(s) not available: {', '.join(missing)} "
                              f"(available: {', '.join(ort.get_available_providers())})")
    payload = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(payload, sess_options=session_options(threads, spinning),
                                    providers=chosen)
    except Exception as exc:  # onnxruntime raises its own pybind exception types for bad models
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source or 'model'}: not a loadable ONNX model ({first_line})") from None


def resolve_onnx_path(name_or_path: str | os.PathLike) -> tuple[Path, Path]:
    """(model.onnx path, folder holding config.json) for an ONNX folder or a .onnx file."""
    path = Path(name_or_path)
    if path.is_file() and path.suffix.lower() == ".onnx":
        return path, path.parent
    if path.is_dir():
        model = path / ONNX_FILE
        if model.is_file():
            return model, path
        if (path / WEIGHTS_FILE).is_file():
            raise CheckpointError(f"{path} is a PyTorch checkpoint, not an ONNX model folder; export it "
                                  f"first: changeseg export --model {path} --onnx OUT_DIR")
        raise CheckpointError(f"ONNX model folder {path} has no {ONNX_FILE}")
    raise CheckpointError(f"ONNX model not found: {path} (expected a folder with {ONNX_FILE} and "
                          f"{CONFIG_FILE}, or a .onnx file with {CONFIG_FILE} beside it)")


def folder_precision(config: CheckpointConfig) -> str:
    """"int8" for a quantised model folder (its config records `quantization`), else "fp32"."""
    return "int8" if config.metadata.get("quantization") else "fp32"


class OnnxChangeDetector:
    """A change model exported to ONNX, run by onnxruntime: same interface as `ChangeDetector`.

    `session` is anything with onnxruntime's `get_inputs()`, `get_outputs()` and
    `run(output_names, feeds)`; the OpenVINO backend (`changeseg.inference.openvino_runtime`)
    passes its own, so both share this class's pre- and post-processing.
    """

    device = "cpu"
    backend_name = "onnx"

    def __init__(self, session: Any, config: CheckpointConfig, name: str = "",
                 trained: bool = True, precision: str | None = None) -> None:
        self.session = session
        self.config = config
        self.name = name
        self.trained = trained
        self.precision = precision or folder_precision(config)
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        if not set(INPUT_NAMES) <= set(inputs) or OUTPUT_NAME not in outputs:
            raise CheckpointError(f"{name or 'ONNX model'}: expected inputs {', '.join(INPUT_NAMES)} and "
                                  f"output {OUTPUT_NAME}, found inputs {', '.join(inputs) or '(none)'} "
                                  f"and outputs {', '.join(outputs) or '(none)'}")
        channels = inputs["reference"].shape[1]
        self.in_channels = int(channels) if isinstance(channels, int) else int(
            config.model.get("in_channels", 3))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, threads: int | None = None,
                        providers: Sequence[str] | None = None, spinning: bool = False) -> OnnxChangeDetector:
        """Load an ONNX model folder (`model.onnx` + `config.json`) or a `.onnx` file beside a config.

        `threads` sets onnxruntime's intra-op threads (default: the physical cores), `spinning`
        lets them busy-wait between runs (`session_options`); the graph
        is optimised at the highest level. Raises CheckpointError for anything missing or invalid.
        """
        model_path, folder = resolve_onnx_path(name_or_path)
        config = read_config(folder)
        session = create_session(model_path, threads, providers, source=str(model_path), spinning=spinning)
        trained = bool(config.metadata.get("trained", True))
        return cls(session, config, name=str(name_or_path), trained=trained)

    @property
    def class_names(self) -> list[str]:
        """Names of the model's output classes (index 0 is "no change")."""
        return self.config.class_names

    def prepare(self, image: ImageLike, name: str) -> np.ndarray:
        """Read an image and adapt it to the model's channel count (H×W×C, original dtype)."""
        return to_model_channels(read_image(image, name), self.in_channels)

    def _to_input(self, images: np.ndarray) -> np.ndarray:
        array = to_float(images)
        if array.shape[-1] != self.in_channels:
            raise InputError(f"the model expects {self.in_channels} channel(s), the image has "
                             f"{array.shape[-1]}")
        return np.ascontiguousarray(np.moveaxis(array, -1, -3), dtype=np.float32)

    def predict_proba_batch(self, references: np.ndarray, comparisons: np.ndarray) -> np.ndarray:
        """Class probabilities (N×num_classes×H×W float32) for two N×H×W×C stacks of prepared images."""
        if references.shape != comparisons.shape or references.ndim != 4:
            raise InputError(f"expected two N×H×W×C stacks of the same shape, got {references.shape} "
                             f"and {comparisons.shape}")
        feeds = {"reference": self._to_input(references), "comparison": self._to_input(comparisons)}
        (probs,) = self.session.run([OUTPUT_NAME], feeds)
        return np.asarray(probs, np.float32)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        """Class probabilities (num_classes×H×W float32) for two prepared, same-size images."""
        if reference.shape != comparison.shape:
            raise InputError(f"reference {reference.shape} and comparison {comparison.shape} must have "
                             "the same shape")
        return self.predict_proba_batch(reference[None], comparison[None])[0]

    def predict(self, reference: ImageLike, comparison: ImageLike, threshold: float | None = None,
                min_area: int | None = None, resize: bool = False, tile_size: int = DEFAULT_TILE_SIZE,
                tile_overlap: int | None = None, tile_batch: int = 1,
                align: bool | str | AlignOptions = False, tta: bool | str = False,
                scales: Sequence[float] | None = None, scale: str | None = None,
                split_depth: float | None = None, split_cover: float | None = None,
                domain: str | None = None) -> ChangeResult:
        """Detect changes between two images (paths, PIL images or arrays).

        Same contract as `ChangeDetector.predict`, through the same torch-free pipeline:
        `threshold` (default: the model's own), `min_area`, `resize`, tiling of images larger
        than `tile_size`, `align` (register the comparison onto the reference first), `tta`
        (True: average over a mirrored and a swapped view; "dihedral": over the eight rotations
        and mirror images), `scales` (average over the pair resized
        by each factor, e.g. (1, 2); default: the model's own; `changeseg.inference.multiscale`),
        `scale` (raw values to 0–1) and
        `split_depth` / `split_cover` (split merged regions; default: the model's own) and
        `domain` (the model's calibration for that kind of pair; `changeseg.inference.domains`).
        """
        tiling = TilingOptions(tile_size, tile_overlap, tile_batch)
        backend = with_views(self, tta, scales, domain)
        return detect_pair(backend, reference, comparison, threshold, min_area, resize, tiling, align,
                           scale=scale, split_depth=split_depth, split_cover=split_cover)
