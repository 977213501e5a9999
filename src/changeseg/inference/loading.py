"""Load a backend by name — PyTorch, onnxruntime, OpenVINO or `auto` — optionally with TTA.

`BackendSpec` is a small picklable description of a backend (kind, model, device, precision,
TTA), so a process that never saw the loaded model — a worker of a distributed run
(`changeseg.distributed`) — can load the same one with `load_backend(spec)`.

Backends:

- ``torch``: the PyTorch `ChangeDetector` (fp32, or channels_last + bf16 autocast);
- ``onnx``: onnxruntime on the exported model, no torch import;
- ``openvino``: the same exported model compiled by OpenVINO for the CPU (bf16 where the CPU
  has native bf16), no torch import;
- ``auto``: the fastest one installed for the device and model (`choose_backend`).

The two ONNX backends take any model by name or folder: a checkpoint or packaged model is
exported once into the user cache (`changeseg.inference.export_cache`, checked against
PyTorch) and reused; an exported ONNX folder (or `.onnx` file) is used as it is. Precision
``int8`` runs the quantised model cached beside the export (`changeseg.inference.quantize`);
``auto`` precision picks int8 only where its recorded verdict on the model's validation
pairs passes the bar, else bf16 (torch, OpenVINO) or fp32. A packaged model whose int8 recipe
ships with it (`changeseg.inference.packaged_int8`: ranges, fingerprint and verdicts measured
when it was packaged) is quantised from that recipe on first use, no validation data needed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from changeseg.errors import ChangesegError, CheckpointError, InputError
from changeseg.inference.multiscale import parse_scales, with_views

BACKENDS = ("auto", "torch", "onnx", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
ONNX_BACKENDS = ("onnx", "openvino")
# The packages each backend needs at run time (the ONNX backends also need torch + onnx to
# export a checkpoint the first time; a cached or given ONNX model needs neither).
RUNTIME_PACKAGES = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}

Log = Callable[[str], None]
CalibrationPairs = Callable[[], Sequence[tuple[Any, Any]]]


@dataclass(frozen=True)
class BackendSpec:
    """Which backend to load: `backend` (auto, torch, onnx or openvino), `model` (a packaged
    name, preset name or folder), `device`, `precision` (auto, fp32, bf16, int8), `tta`
    (average over test-time views: True or "flip-swap", three views; "dihedral", eight;
    `changeseg.inference.tta`), `scales` (average over the pair resized by each factor;
    None: the model's own, `changeseg.inference.multiscale.model_scales`) and `domain` (one of
    the model's domain calibrations, `changeseg.inference.domains`; None: none)."""

    model: str = "default"
    backend: str = "torch"
    device: str = "cpu"
    precision: str = "auto"
    tta: bool | str | None = False
    scales: tuple[float, ...] | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.scales is not None:
            object.__setattr__(self, "scales", parse_scales(self.scales))

    def portable(self) -> BackendSpec:
        """The same spec with a model folder given by an absolute path, so other processes
        (whose working directory differs) find it; names of packaged models stay as they are."""
        if Path(self.model).exists():
            return replace(self, model=os.path.abspath(self.model))
        return self

    def resolved(self) -> BackendSpec:
        """The same spec with `auto` replaced by the backend `choose_backend` picks, so every
        process of a distributed run loads the same one."""
        if self.backend != "auto":
            return self
        return replace(self, backend=choose_backend(self.model, self.device, self.precision)[0])


def installed(backend: str) -> bool:
    """Whether the runtime package of `backend` can be imported (checked without importing it)."""
    return importlib.util.find_spec(RUNTIME_PACKAGES[backend]) is not None


def _exportable() -> bool:
    return installed("torch") and importlib.util.find_spec("onnx") is not None


def choose_backend(model: str, device: str = "cpu", precision: str = "auto",
                   needs_torch: bool = False) -> tuple[str, str]:
    """The fastest installed backend for `model` on `device`, and why, as (name, reason).

    On the CPU, for a trained model (packaged, checkpoint folder or exported ONNX folder):
    OpenVINO first (measured fastest: bf16 about half of PyTorch bf16's latency, and int8);
    then PyTorch on CPUs with native bf16 (channels_last + bf16 autocast beats onnxruntime
    fp32 there), else onnxruntime. A GPU device, a preset (an untrained network, not exported),
    an unknown name (so PyTorch's error names it) or `needs_torch` mean PyTorch. A checkpoint
    not yet exported needs torch + onnx to be exported; an ONNX folder needs no torch at all.
    """
    from changeseg.hardware import cpu_supports_bf16

    if needs_torch:
        return "torch", "the request needs PyTorch"
    if device != "cpu":
        return "torch", f"device {device} runs on PyTorch"
    source = _onnx_source(model)
    if source is None:
        return "torch", "not an exportable trained model"
    is_onnx, cached = source
    ready = is_onnx or cached or _exportable()
    if ready and installed("openvino"):
        return "openvino", "the fastest installed backend on this CPU"
    if not is_onnx and installed("torch") and (precision == "bf16" or
                                               (precision == "auto" and cpu_supports_bf16())):
        return "torch", "PyTorch bf16 is faster than onnxruntime fp32 on this CPU (OpenVINO not installed)"
    if ready and installed("onnx") and precision != "bf16":
        return "onnx", "OpenVINO is not installed"
    if installed("torch") and not is_onnx:
        return "torch", "no ONNX runtime is installed"
    return ("onnx" if installed("onnx") else "openvino"), "an exported ONNX model"


def _onnx_source(model: str) -> tuple[bool, bool] | None:
    """(is an ONNX model already, is exported in the cache) for a model an ONNX backend can run,
    or None for presets and unknown names. Torch-free."""
    path = Path(model)
    if path.is_file() and path.suffix.lower() == ".onnx":
        return True, True
    from changeseg.inference.export_cache import lookup, resolve_source

    try:
        source = resolve_source(model)
        return source.is_onnx, source.is_onnx or lookup(model) is not None
    except CheckpointError:
        return None


def onnx_model_folder(model: str, log: Log | None = None) -> Path:
    """The ONNX model (folder, or `.onnx` file) an ONNX backend runs for `model`.

    An ONNX folder or `.onnx` file is used as it is; a packaged model or checkpoint folder is
    exported into the cache once (checked against PyTorch) and reused; `log` hears of an export.
    """
    path = Path(model)
    if path.is_file() and path.suffix.lower() == ".onnx":
        return path
    from changeseg.inference.export_cache import cached_onnx

    return cached_onnx(model, log=log)


def _note(log: Log | None, message: str) -> None:
    if log is not None:
        log(f"note: {message}")


def _int8_model(model: str, fp32_folder: Path, calibration: CalibrationPairs | None,
                log: Log | None) -> Path:
    """The quantised model for `model`: a quantised folder given as is, or the cached one
    (quantised now from `calibration` when it is missing)."""
    from changeseg.inference.quantize import int8_folder, is_quantized_folder, quantize_onnx

    if is_quantized_folder(fp32_folder if fp32_folder.is_dir() else fp32_folder.parent):
        return fp32_folder
    from changeseg.inference.export_cache import resolve_source

    if not fp32_folder.is_dir() or resolve_source(model).is_onnx:
        raise InputError(f"--precision int8 needs a packaged model or checkpoint (its quantised model is "
                         f"cached beside its export) or a quantised folder; {model} is an fp32 ONNX model")
    folder = int8_folder(fp32_folder)
    if is_quantized_folder(folder) or _from_packaged_recipe(model, fp32_folder, log) is not None:
        return folder
    if calibration is None:
        raise CheckpointError(f"no int8 model of {model} in the cache yet; quantise it on its validation "
                              f"pairs with: python tools/quantize_model.py {model}")
    pairs = calibration()  # first: data that is missing is an error before any work starts
    if log is not None:
        log(f"quantising {model} to int8, calibrated on {len(pairs)} of its validation pairs ({folder}); "
            "this happens once per model")
    return quantize_onnx(fp32_folder, folder, pairs, description=f"validation pairs of {model}", log=log)


def _package_folder(model: str) -> Path | None:
    """The checkpoint folder behind `model` (where a packaged int8 recipe would be), or None."""
    from changeseg.inference.export_cache import resolve_source

    try:
        source = resolve_source(model)
    except CheckpointError:
        return None
    return None if source.is_onnx else source.folder


def _from_packaged_recipe(model: str, fp32_folder: Path, log: Log | None,
                          backend: str | None = None) -> Path | None:
    """The int8 model built from the recipe packaged beside `model`'s weights (with its verdicts,
    `changeseg.inference.packaged_int8`), or None when the model has no usable recipe — or,
    given `backend`, when the recipe's verdict would not let `auto` use int8 there anyway."""
    from changeseg.inference.packaged_int8 import build_from_recipe, packaged_verdict
    from changeseg.inference.quantize import int8_folder, verdict_applies

    package = _package_folder(model)
    if package is None:
        return None
    if backend is not None and not verdict_applies(packaged_verdict(package, backend), backend):
        return None
    return build_from_recipe(package, fp32_folder, int8_folder(fp32_folder), log)


def _onnx_precision(backend: str, model: str, folder: Path, precision: str, log: Log | None,
                    calibration: CalibrationPairs | None) -> tuple[Path, str]:
    """(model to load, OpenVINO precision hint or "fp32") for an ONNX backend and a precision request."""
    from changeseg.hardware import cpu_supports_bf16

    # OpenVINO runs an int8 model's float parts in bf16 where the CPU has native bf16 ("auto"),
    # the configuration its verdict is measured on (`quantize.int8_runtime`)
    int8_hint = "auto" if backend == "openvino" else "fp32"
    if precision == "int8":
        return _int8_model(model, folder, calibration, log), int8_hint
    if precision == "auto":
        from changeseg.inference.quantize import int8_approved, int8_folder, is_quantized_folder

        if folder.is_dir() and not is_quantized_folder(int8_folder(folder)):
            _from_packaged_recipe(model, folder, log, backend)
        if folder.is_dir() and int8_approved(int8_folder(folder), backend):
            return int8_folder(folder), int8_hint
        return folder, "auto" if backend == "openvino" else "fp32"
    if precision == "bf16":
        if backend == "onnx":
            _note(log, "--precision bf16 is ignored by the onnx backend (onnxruntime runs fp32 on the "
                       "CPU); --backend openvino or torch use bf16")
            return folder, "fp32"
        if not cpu_supports_bf16():
            _note(log, "this CPU has no native bf16 (AVX512-BF16 or AMX); OpenVINO runs fp32")
            return folder, "fp32"
    return folder, precision


def load_backend(spec: BackendSpec, log: Log | None = None,
                 calibration: CalibrationPairs | None = None) -> Any:
    """The detector `spec` describes, with `.backend_name` and `.precision` saying what runs.

    `auto` is resolved by `choose_backend`. `log(line)` hears of one-off work (an export into
    the cache, an int8 quantisation) and of a precision a backend ignores ("note: ..."). For
    int8 without a cached quantised model, `calibration()` yields the model's validation pairs
    (the CLI passes them; `changeseg.evaluation.selection.model_validation_pairs`). With
    `spec.tta` the detector is wrapped to average over its test-time views, with
    `spec.scales` over the pair resized by each factor (`changeseg.inference.multiscale`), with
    `spec.domain` its probabilities carry that domain calibration. Raises
    InputError for contradictory requests (int8 on PyTorch, an ONNX backend on a GPU) and
    CheckpointError for models that cannot be loaded.
    """
    if spec.domain is not None:  # a model without that domain fails here, before any export
        from changeseg.inference.domains import check_model_domain

        check_model_domain(spec.model, spec.domain)
    automatic = spec.backend == "auto"
    spec = spec.resolved()
    detector: Any
    if spec.backend == "torch":
        if spec.precision == "int8":
            raise InputError("--precision int8 runs on the onnx and openvino backends (a quantised ONNX "
                             "model); PyTorch runs fp32 or bf16")
        from changeseg.inference.predictor import ChangeDetector

        detector = ChangeDetector.from_pretrained(spec.model, device=spec.device, precision=spec.precision)
    else:
        if spec.device != "cpu":
            raise InputError(f"the {spec.backend} backend runs on the CPU; --device {spec.device} needs "
                             "--backend torch")
        try:
            exported = onnx_model_folder(spec.model, log)
        except ChangesegError as exc:
            if not (automatic and _is_export_failure(exc)):
                raise
            _note(log, f"{exc}; auto runs it on PyTorch instead")
            return load_backend(replace(spec, backend="torch"), log, calibration)
        folder, precision = _onnx_precision(spec.backend, spec.model, exported, spec.precision, log,
                                            calibration)
        if spec.backend == "openvino":
            from changeseg.inference.openvino_runtime import OpenVinoChangeDetector

            detector = OpenVinoChangeDetector.from_pretrained(folder, precision=precision)
        else:
            try:
                from changeseg.inference.onnx_runtime import OnnxChangeDetector
            except ImportError as exc:
                raise InputError(f"the ONNX backend is unavailable ({exc}); "
                                 "install changeseg[onnx]") from None
            detector = OnnxChangeDetector.from_pretrained(folder)
        detector.name = spec.model
    return with_views(detector, spec.tta, spec.scales, spec.domain)


def _is_export_failure(exc: Exception) -> bool:
    """Whether `exc` is an ONNX export that failed (`changeseg.inference.export.ExportError`,
    recognised by name so this module needs no torch import)."""
    return any(cls.__name__ == "ExportError" for cls in type(exc).__mro__)


def describe_backend(detector: Any, requested: str = "") -> str:
    """"openvino bf16" / "torch fp32" …, with "(auto)" when `requested` was auto."""
    name = getattr(detector, "backend_name", "torch")
    precision = getattr(detector, "precision", "fp32")
    return f"{name}{' (auto)' if requested == 'auto' else ''}, {precision}"
