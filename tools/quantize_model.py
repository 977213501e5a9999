"""Quantise a trained model to int8 and measure whether `auto` may use it (the int8 gate).

    .venv/bin/python tools/quantize_model.py default                 # OpenVINO and onnxruntime
    .venv/bin/python tools/quantize_model.py pcb --backends openvino --json runs/int8-pcb.json

1. The model is exported to ONNX into the user cache (once; `changeseg.inference.export_cache`).
2. It is quantised to int8 (onnxruntime's static QDQ quantiser), calibrated on up to `--pairs`
   of its own validation pairs spread over its data sources (`changeseg.inference.quantize`).
3. For each backend, fp32 and int8 are run over *all* its validation pairs (the data in
   $CHANGESEG_DATA, default ../shared/data): pixel agreement of the masks and validation F1
   (pixel counts pooled over the pairs, the model's own threshold) of each. The numbers are
   written to `verdict.json` beside the quantised model, where `--precision auto` reads them:
   int8 is used only when the masks agree on ≥ 99.5 % of pixels and F1 drops ≤ 0.5 points,
   and — timed here in interleaved rounds against the float model `auto` would otherwise run
   (OpenVINO bf16 / onnxruntime fp32) — it is at least 1.1× as fast.
4. With `--package`, the ranges, the int8 graph's fingerprint and these verdicts are also written
   beside the model's weights (`int8.json`, `changeseg.inference.packaged_int8`), so `auto`
   uses int8 on a user's machine too, where the validation data is absent.

    .venv/bin/python tools/quantize_model.py default --package      # then commit int8.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from changeseg.errors import ChangesegError
from changeseg.evaluation.selection import CALIBRATION_PAIRS, calibration_pairs, model_validation_pairs
from changeseg.hardware import cpu_model, cpu_supports_bf16
from changeseg.inference.export_cache import cached_onnx, resolve_source
from changeseg.inference.loading import installed
from changeseg.inference.packaged_int8 import write_recipe
from changeseg.inference.quantize import (
    RANGES_FILE,
    assess_int8,
    describe_verdict,
    int8_folder,
    int8_runtime,
    is_quantized_folder,
    measure_speedup,
    quantize_onnx,
    write_verdict,
)
from changeseg.io.checkpoints import read_config


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def load(backend: str, folder: Path, int8: bool = False, fastest_float: bool = False) -> Any:
    """The fp32 reference (OpenVINO: the f32 hint), the float model `auto` would run without int8
    (`fastest_float`; OpenVINO: bf16 where the CPU has native bf16) or the int8 detector as
    `--precision int8` runs it (OpenVINO: float parts in bf16 where the CPU has native bf16)."""
    if backend == "openvino":
        from changeseg.inference.openvino_runtime import OpenVinoChangeDetector

        precision = "auto" if int8 or fastest_float else "fp32"
        return OpenVinoChangeDetector.from_pretrained(folder, precision=precision)
    from changeseg.inference.onnx_runtime import OnnxChangeDetector

    return OnnxChangeDetector.from_pretrained(folder)


def samples(parts: list[tuple[str, Any]], limit: int | None) -> Iterator[dict[str, Any]]:
    """Every validation sample with its source spec (the first `limit` of each source, if given)."""
    for spec, pairs in parts:
        for index in range(len(pairs) if limit is None else min(limit, len(pairs))):
            yield {**pairs[index], "source": spec}


def machine() -> str:
    """This machine in a few words: CPU model, cores, native bf16."""
    bf16 = "yes" if cpu_supports_bf16() else "no"
    return f"{cpu_model()}, {os.cpu_count()} logical CPU(s), native bf16: {bf16}"


def main(argv: list[str] | None = None) -> int:
    """Quantise, assess, record; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="default",
                        help="packaged model name or checkpoint folder")
    parser.add_argument("--backends", default=None,
                        help="comma-separated: openvino,onnx (default: those installed)")
    parser.add_argument("--pairs", type=int, default=CALIBRATION_PAIRS, help="calibration pairs")
    parser.add_argument("--limit", type=int, default=None,
                        help="assess on at most this many pairs per source (default: all)")
    parser.add_argument("--requantize", action="store_true", help="quantise again even when cached")
    parser.add_argument("--json", type=Path, default=None, help="also write the verdicts here")
    parser.add_argument("--package", action="store_true",
                        help="also write the ranges and verdicts beside the model's weights (int8.json)")
    args = parser.parse_args(argv)
    if args.package and args.limit is not None:
        parser.error("--package records verdicts measured on all validation pairs; drop --limit")
    backends = [b for b in (args.backends or "openvino,onnx").split(",") if b]
    unknown = [b for b in backends if b not in ("openvino", "onnx")]
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; choose openvino, onnx")
    backends = [b for b in backends if installed(b)] if args.backends is None else backends
    try:
        fp32_folder = cached_onnx(args.model, log=log)
        metadata = read_config(fp32_folder).metadata
        folder = int8_folder(fp32_folder)
        # quantised before the ranges were kept beside the model: quantise again to have them
        stale = is_quantized_folder(folder) and not (folder / RANGES_FILE).is_file()
        if args.requantize or stale or not is_quantized_folder(folder):
            started = time.perf_counter()
            log(f"quantising {args.model} ({fp32_folder}) on {args.pairs} of its validation pairs")
            quantize_onnx(fp32_folder, folder, calibration_pairs(metadata, args.pairs),
                          description=f"validation pairs of {args.model}", log=log)
            log(f"  quantised in {time.perf_counter() - started:.0f} s → {folder}")
        parts = model_validation_pairs(metadata)
        results = {}
        for backend in backends:
            log(f"{backend}: fp32 vs int8 on {sum(len(p) for _, p in parts)} validation pairs")
            int8 = load(backend, folder, int8=True)
            numbers = {**assess_int8(load(backend, fp32_folder), int8, samples(parts, args.limit), log=log),
                       "int8_runtime": int8_runtime(backend),
                       **measure_speedup(load(backend, fp32_folder, fastest_float=True), int8)}
            if args.limit is None:  # a partial assessment is printed, never recorded
                write_verdict(folder, backend, numbers)
            results[backend] = numbers
            print(f"{args.model} int8 on {backend}: {describe_verdict(numbers)}")
            for spec, entry in numbers["sources"].items():
                print(f"  {spec}: {entry['pairs']} pairs, agreement {100 * entry['pixel_agreement']:.2f}%, "
                      f"F1 {entry['f1_fp32']:.4f} → {entry['f1_int8']:.4f}")
        if args.package:
            recipe = write_recipe(resolve_source(args.model).folder, folder, results, machine())
            print(f"int8 recipe written: {recipe}")
    except ChangesegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "int8_folder": str(folder),
                                         "verdicts": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
