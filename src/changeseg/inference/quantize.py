"""int8: post-training static quantisation of an exported model, and the gate that lets `auto` use it.

**The quantiser.** onnxruntime's (`onnxruntime.quantization.quantize_static`), not NNCF: it
ships with the `onnx` extra changeseg already needs for export (NNCF would add a large
dependency tree for one step), and its output is an ordinary ONNX model in QDQ form
(QuantizeLinear/DequantizeLinear around each convolution), which *both* CPU backends run as
int8 — onnxruntime directly, OpenVINO by folding the QDQ pairs into int8 kernels — so one
quantised file serves `--backend onnx` and `--backend openvino` alike (and stays an ONNX
folder, loadable like any other). Settings: weights int8 symmetric per output channel,
activations uint8 asymmetric per tensor, ranges by min/max over the calibration pairs.

**What is quantised** (`DEFAULT_SCOPE`): the MSF's 3×3 convs (the per-level smoothing and the
fusion conv, about half of the `default` model's MACs at 512²) and the head's first conv;
the backbone, the MTF branch convs, the MSF's 1×1 laterals and the classifier stay float.
Measured on `default`'s validation pairs (docs/benchmarks.md): quantising the backbone too
(every conv) left the masks agreeing with fp32 on only 98.9 % of pixels — the change
features are *differences* of the two images' backbone features, and int8 noise in both
shows up as spurious difference — while the MSF and head convs alone keep ≥ 99.8 %. OpenVINO
additionally ran the QDQ 1×1 laterals wrongly (75 % agreement where onnxruntime, on the same
file, had 99.9 %), so they stay float.

**Calibration** uses the model's own validation pairs (`changeseg.evaluation.selection.
calibration_pairs`, passed in by the caller: this layer does not read data sets), 32 by
default, spread over every data source, each centre-cropped to at most `CALIBRATION_SIDE`
pixels a side.

**The gate.** `assess_int8` runs the fp32 and the int8 model over the validation pairs and
records, per backend, how many pixels' changed/unchanged decisions agree and the validation
F1 (pixel counts pooled over all pairs) of each. `auto` precision uses int8 only where a
recorded verdict passes `gate_passes`: agreement ≥ 99.5 % and an F1 drop ≤ 0.5 points — and
where int8 pays (`pays_off`): `measure_speedup` timed it at least 1.1× as fast as the float
model `auto` would run otherwise (on the `default` model with its depthwise-separable fusion,
OpenVINO int8 is no faster than OpenVINO bf16, while onnxruntime int8 beats fp32). The
verdict lives in ``verdict.json`` beside the quantised model, inside the model's export-cache
entry (``<entry>/int8/``), so a changed model never inherits an old verdict; a packaged model
also ships its verdicts (`changeseg.inference.packaged_int8`).

Torch-free: onnx, onnxruntime and numpy only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from changeseg import __version__
from changeseg.errors import CheckpointError, InputError
from changeseg.inference.onnx_runtime import INPUT_NAMES, ONNX_FILE, OnnxChangeDetector
from changeseg.io.checkpoints import CONFIG_FILE, read_config
from changeseg.io.images import output_error, write_json
from changeseg.labels import IGNORE_INDEX, is_change

INT8_SUBDIR = "int8"
VERDICT_FILE = "verdict.json"
RANGES_FILE = "ranges.json"  # onnxruntime's calibration cache: the activation ranges used
MIN_PIXEL_AGREEMENT = 0.995
MAX_F1_DROP = 0.005  # 0.5 F1 points
# int8 must also pay: at least this much faster than the float model `auto` would run otherwise
MIN_INT8_SPEEDUP = 1.1
SPEED_SIDE = 512
CALIBRATION_SIDE = 512
QUANTIZED_OPS = ("Conv",)
# Node-name prefixes of the quantised convs (the exporter names nodes after the PyTorch modules).
DEFAULT_SCOPE = ("/model/pyramid/smooth.", "/model/pyramid/fuse/", "/model/head/head.0/")

Sample = Mapping[str, Any]  # {"reference", "comparison", "mask", "name"[, "source"]}


def int8_folder(onnx_folder: str | os.PathLike) -> Path:
    """Where the quantised model of an fp32 ONNX folder (an export-cache entry) lives."""
    return Path(onnx_folder) / INT8_SUBDIR


def is_quantized_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a finished quantised model (model.onnx + a config recording it)."""
    root = Path(folder)
    if not (root / ONNX_FILE).is_file():
        return False
    try:
        return bool(read_config(root).metadata.get("quantization"))
    except CheckpointError:
        return False


def _centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    y, x = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return image[y:y + side, x:x + side]


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over prepared image pairs.

    `__len__` and `set_range` let the quantiser take the pairs one at a time
    (``CalibStridedMinMax``): the min/max of each pair is merged into the running range, so
    memory holds one pair's activations, not every pair's.
    """

    def __init__(self, detector: OnnxChangeDetector, pairs: Sequence[tuple[Any, Any]], side: int,
                 log: Callable[[str], None] | None) -> None:
        self.detector = detector
        self.pairs = pairs
        self.side = side
        self.log = log
        self.count = 0
        self.position, self.end = 0, len(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serve pairs start_index … end_index − 1 next."""
        self.position, self.end = start_index, min(end_index, len(self.pairs))

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next pair's feeds, or None when the range is used up."""
        if self.position >= self.end:
            return None
        pair = self.pairs[self.position]
        self.position += 1
        reference, comparison = (_centre_crop(self.detector.prepare(image, name), self.side)
                                 for image, name in zip(pair, INPUT_NAMES))
        if reference.shape != comparison.shape:
            raise InputError(f"calibration pair {self.position - 1}: the images differ in size "
                             f"({reference.shape} and {comparison.shape})")
        self.count += 1
        if self.log is not None and self.count % 8 == 0:
            self.log(f"  calibrated on {self.count} pair(s)")
        return {"reference": self.detector._to_input(reference[None]),
                "comparison": self.detector._to_input(comparison[None])}


def quantize_onnx(onnx_folder: str | os.PathLike, out_folder: str | os.PathLike,
                  calibration: Sequence[tuple[Any, Any]], side: int = CALIBRATION_SIDE,
                  description: str = "", log: Callable[[str], None] | None = None,
                  scope: Sequence[str] | None = DEFAULT_SCOPE,
                  ranges: str | os.PathLike | None = None) -> Path:
    """Quantise the fp32 ONNX model in `onnx_folder` to int8 (QDQ) into `out_folder`.

    `calibration` holds (reference, comparison) images (paths or arrays, prepared like any
    input); each is centre-cropped to `side` and calibrated on one at a time. Or `ranges`
    names activation ranges measured before (a `ranges.json` of an earlier quantisation, e.g.
    the ones packaged with a model, `changeseg.inference.packaged_int8`): then no pairs are
    needed and the same ranges give the same int8 model. `out_folder` gets `model.onnx`,
    `ranges.json` (the ranges used) and a `config.json` whose metadata records the
    quantisation (settings, pairs, `description`); it appears whole or not at all. `scope`
    lists node-name prefixes of the convs to quantise (None: every conv); a scope matching
    none quantises every conv. Raises InputError when there are neither calibration pairs nor
    ranges, CheckpointError when the packages are missing.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise CheckpointError(f"int8 quantisation needs onnxruntime and onnx ({exc}); "
                              "install them with: pip install 'changeseg[onnx]'") from None
    source = Path(onnx_folder)
    detector = OnnxChangeDetector.from_pretrained(source)
    if detector.precision != "fp32":
        raise InputError(f"{source} is already quantised")
    target = Path(out_folder)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise output_error(target, exc) from None
    started = time.perf_counter()
    pairs = list(calibration)
    nodes = _scoped_convs(source / ONNX_FILE, scope)
    reader = _Calibration(detector, pairs, side, log)
    try:
        if ranges is not None:
            try:
                shutil.copyfile(ranges, temporary / RANGES_FILE)
            except OSError as exc:
                raise InputError(f"cannot read the int8 ranges {ranges}: {exc.strerror or exc}") from None
        elif not pairs:
            raise InputError("int8 quantisation needs calibration pairs; none were given")
        with _quiet_root_logger():
            quantize_static(str(source / ONNX_FILE), str(temporary / ONNX_FILE),
                            None if ranges is not None else reader,
                            calibration_cache_path=str(temporary / RANGES_FILE),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
                            nodes_to_quantize=nodes, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                           "CalibStridedMinMax": 1})
        settings = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                    "ops": list(QUANTIZED_OPS), "scope": list(scope or ["(every conv)"]),
                    "quantized_nodes": len(nodes) if nodes else "all",
                    "weights": "int8 symmetric, per channel",
                    "activations": "uint8 asymmetric, per tensor", "calibration": "min/max",
                    "calibration_pairs": reader.count, "calibration_crop": side,
                    "ranges": "given" if ranges is not None else "measured",
                    "description": description, "source_onnx": str(source.resolve()),
                    "changeseg_version": __version__,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "seconds": round(time.perf_counter() - started, 1)}
        config = replace(detector.config, metadata={**detector.config.metadata, "quantization": settings})
        write_json(temporary / CONFIG_FILE, config.to_json("float32"))
        os.chmod(temporary, 0o755)
        shutil.rmtree(target, ignore_errors=True)  # a damaged or stale earlier attempt
        try:
            os.rename(temporary, target)
        except OSError as exc:
            if not is_quantized_folder(target):  # another process finished first: keep theirs
                raise output_error(target, exc) from None
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return target


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Silence the root logger's warnings for a while: onnxruntime's quantiser logs advice
    ("consider pre-processing before quantization") there that a user cannot act on."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _scoped_convs(model_file: Path, scope: Sequence[str] | None) -> list[str] | None:
    """Names of the conv nodes under `scope` (None: let the quantiser take every conv)."""
    if not scope:
        return None
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    # An ensemble's nodes sit under /model/members.N/ (changeseg.models.ensemble): the same scope
    # applies to every member.
    nodes = [n.name for n in graph.node if n.op_type in QUANTIZED_OPS
             and re.sub(r"^/model/members\.\d+/", "/model/", n.name).startswith(tuple(scope))]
    return nodes or None


# ------------------------------------------------------------------ the verdict


def _counts(decided: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.array([np.sum(decided & truth & valid), np.sum(decided & ~truth & valid),
                     np.sum(~decided & truth & valid)], np.int64)


def _f1(counts: np.ndarray) -> float:
    tp, fp, fn = (int(c) for c in counts)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def assess_int8(fp32: Any, int8: Any, samples: Iterable[Sample], threshold: float | None = None,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compare an fp32 and an int8 backend on labelled pairs; the numbers `gate_passes` judges.

    Each backend predicts the whole image (`prepare` + `predict_proba`, as `changeseg
    evaluate` does) and decides change at `threshold` (default: the model's own). Returns the
    fraction of labelled pixels whose decisions agree, and the F1 of each (pixel counts pooled
    over all pairs; mask value 255 is ignored), overall and per `source`.
    """
    threshold = float(fp32.config.threshold if threshold is None else threshold)
    totals = {"agree": 0, "pixels": 0, "fp32": np.zeros(3, np.int64), "int8": np.zeros(3, np.int64)}
    by_source: dict[str, dict[str, Any]] = {}
    pairs = 0
    started = time.perf_counter()
    for sample in samples:
        mask = np.asarray(sample["mask"])
        valid = mask != IGNORE_INDEX
        truth = (mask > 0) & valid
        decided = []
        for backend in (fp32, int8):
            probs = backend.predict_proba(backend.prepare(sample["reference"], "reference"),
                                          backend.prepare(sample["comparison"], "comparison"))
            decided.append(np.asarray(is_change(1.0 - probs[0], threshold)))
        entry = by_source.setdefault(str(sample.get("source", "")), {
            "agree": 0, "pixels": 0, "fp32": np.zeros(3, np.int64), "int8": np.zeros(3, np.int64),
            "pairs": 0})
        for record in (totals, entry):
            record["agree"] += int(np.sum((decided[0] == decided[1]) & valid))
            record["pixels"] += int(valid.sum())
            record["fp32"] += _counts(decided[0], truth, valid)
            record["int8"] += _counts(decided[1], truth, valid)
        entry["pairs"] += 1
        pairs += 1
        if log is not None and pairs % 25 == 0:
            log(f"  assessed {pairs} pair(s)")
    if not pairs:
        raise InputError("assessing int8 needs labelled validation pairs; none were given")

    def summary(record: dict[str, Any]) -> dict[str, Any]:
        f1_fp32, f1_int8 = _f1(record["fp32"]), _f1(record["int8"])
        return {"pixel_agreement": record["agree"] / max(record["pixels"], 1), "f1_fp32": f1_fp32,
                "f1_int8": f1_int8, "f1_drop_points": 100 * (f1_fp32 - f1_int8), "pixels": record["pixels"]}

    return {**summary(totals), "pairs": pairs, "threshold": threshold,
            "fp32_precision": getattr(fp32, "precision", "fp32"),
            "seconds": round(time.perf_counter() - started, 1),
            "sources": {name: {**summary(record), "pairs": record["pairs"]}
                        for name, record in by_source.items()}}


def gate_passes(numbers: Mapping[str, Any] | None) -> bool:
    """Whether measured int8 numbers clear the bar: ≥ 99.5 % pixel agreement, F1 drop ≤ 0.5 points.

    Judged from the numbers themselves (a `passes` field in a file is never trusted).
    """
    if not numbers:
        return False
    try:
        agreement = float(numbers["pixel_agreement"])
        drop = float(numbers["f1_fp32"]) - float(numbers["f1_int8"])
    except (KeyError, TypeError, ValueError):
        return False
    return agreement >= MIN_PIXEL_AGREEMENT and drop <= MAX_F1_DROP + 1e-12


def read_verdicts(folder: str | os.PathLike) -> dict[str, Any]:
    """The verdicts recorded beside a quantised model, by backend ({} when none)."""
    try:
        record = json.loads((Path(folder) / VERDICT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    backends = record.get("backends") if isinstance(record, dict) else None
    return backends if isinstance(backends, dict) else {}


def write_verdict(folder: str | os.PathLike, backend: str, numbers: Mapping[str, Any]) -> Path:
    """Record (atomically) the numbers measured for `backend`, keeping other backends' verdicts."""
    backends = read_verdicts(folder)
    backends[backend] = {**numbers, "passes": gate_passes(numbers),
                         "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return write_json(Path(folder) / VERDICT_FILE, {
        "format": "changeseg-int8-verdict", "format_version": 1,
        "bar": {"min_pixel_agreement": MIN_PIXEL_AGREEMENT, "max_f1_drop_points": 100 * MAX_F1_DROP},
        "backends": backends})


def int8_runtime(backend: str) -> str:
    """How `backend` runs an int8 model on this machine: "onnx", or "openvino/bf16" (the float
    parts in bf16, where the CPU has native bf16) or "openvino/fp32". A verdict counts only
    for the runtime it was measured on."""
    if backend != "openvino":
        return backend
    from changeseg.inference.openvino_runtime import resolve_precision

    return f"openvino/{resolve_precision('auto')}"


def _measured_runtime(backend: str, numbers: Mapping[str, Any]) -> str:
    # verdicts written before runtimes were recorded: onnxruntime, and OpenVINO with the f32 hint
    return str(numbers.get("int8_runtime") or {"openvino": "openvino/fp32"}.get(backend, backend))


def pays_off(numbers: Mapping[str, Any] | None) -> bool:
    """Whether a verdict's measured speed-up (`int8_speedup`: the float model's median latency
    over the int8 model's, `measure_speedup`) reaches `MIN_INT8_SPEEDUP`. A verdict without
    one (written before speed was measured, or by hand) is judged on accuracy alone."""
    if not numbers or numbers.get("int8_speedup") is None:
        return True
    try:
        return float(numbers["int8_speedup"]) >= MIN_INT8_SPEEDUP
    except (TypeError, ValueError):
        return False


def int8_approved(folder: str | os.PathLike, backend: str) -> bool:
    """Whether `auto` may use the quantised model in `folder` on `backend`: a verdict that
    passes the accuracy bar (`gate_passes`), measured on the runtime this machine would use
    (`int8_runtime`), where int8 was measured to pay off (`pays_off`)."""
    return is_quantized_folder(folder) and verdict_applies(read_verdicts(folder).get(backend), backend)


def verdict_applies(numbers: Mapping[str, Any] | None, backend: str) -> bool:
    """Whether a verdict lets `auto` use int8 on `backend` here: it passes the accuracy bar
    (`gate_passes`), int8 pays off (`pays_off`) and it was measured on the runtime this machine
    would use (`int8_runtime`)."""
    return (gate_passes(numbers) and pays_off(numbers)
            and _measured_runtime(backend, numbers or {}) == int8_runtime(backend))


def measure_speedup(float_backend: Any, int8_backend: Any, side: int = SPEED_SIDE, rounds: int = 25,
                    seed: int = 0) -> dict[str, float]:
    """Time `predict_proba` of both backends on a seeded side×side pair in interleaved rounds
    (so they share the machine's load; one warm-up each) and return the medians (ms) and
    `int8_speedup` = float median / int8 median."""
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[side // 4:side // 2, side // 4:side // 2] = rng.integers(0, 256, 3, dtype=np.uint8)
    prepared = [(backend.prepare(reference, "reference"), backend.prepare(comparison, "comparison"))
                for backend in (float_backend, int8_backend)]
    times: list[list[float]] = [[], []]
    for number in range(rounds + 1):
        order = (0, 1) if number % 2 == 0 else (1, 0)
        for index in order:
            backend = (float_backend, int8_backend)[index]
            started = time.perf_counter()
            backend.predict_proba(*prepared[index])
            if number:  # round 0 warms both up
                times[index].append(time.perf_counter() - started)
    float_ms, int8_ms = (1e3 * float(np.median(values)) for values in times)
    return {"float_ms": float_ms, "int8_ms": int8_ms, "int8_speedup": float_ms / int8_ms,
            "speed_side": side, "float_precision": str(getattr(float_backend, "precision", "?"))}


def describe_verdict(numbers: Mapping[str, Any] | None) -> str:
    """One line: the verdict's numbers against the bar, or that none was measured."""
    if not numbers:
        return "not measured"
    state = "passes" if gate_passes(numbers) else "fails"
    runtime = f" ({numbers['int8_runtime']})" if numbers.get("int8_runtime") else ""
    return (f"{state} the bar: masks agree on {100 * float(numbers['pixel_agreement']):.2f}% of pixels "
            f"(≥ {100 * MIN_PIXEL_AGREEMENT:.1f}%), F1 {float(numbers['f1_fp32']):.4f} → "
            f"{float(numbers['f1_int8']):.4f} (drop {float(numbers['f1_drop_points']):+.2f} points, "
            f"≤ {100 * MAX_F1_DROP:.1f}) on {numbers.get('pairs', '?')} validation pairs{runtime}"
            + _describe_speed(numbers))


def _describe_speed(numbers: Mapping[str, Any]) -> str:
    if numbers.get("int8_speedup") is None:
        return ""
    verdict = "pays off" if pays_off(numbers) else f"too small to use (< {MIN_INT8_SPEEDUP:.2f}×)"
    return (f"; {float(numbers['int8_speedup']):.2f}× the speed of {numbers.get('float_precision', 'float')} "
            f"at {numbers.get('speed_side', '?')}² ({verdict})")
