"""Full `predict` latency side by side: the packaged `default` model (or each of `--models`) on
each backend against the C-3PO paper configuration (ResNet-18 + DeepLabv3, untrained weights:
speed does not depend on them) on PyTorch fp32, in one process, in interleaved rounds.

`predict` is what a user calls: the pair as uint8 arrays in, normalisation, the network,
softmax, threshold, connected regions and the class map out (no file decoding or writing).

    OMP_WAIT_POLICY=PASSIVE python bench/full_predict.py --size 512 --rounds 7
    OMP_WAIT_POLICY=PASSIVE python bench/full_predict.py --only "OpenVINO,auto" --rounds 30
    OMP_WAIT_POLICY=PASSIVE python bench/full_predict.py --models default,runs/calibrated/x \
        --only "paper config (,OpenVINO bf16"

Prints the command, machine, load, and per path the median of its rounds and the ratio to the
paper configuration's median. Each round runs the paths in a rotated order (onnxruntime's
threads spin for a while after a run and slow whatever runs next).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone

import numpy as np

PAPER = "c3po-resnet18-deeplabv3"
PAPER_PATHS = {  # label: (model, backend, precision)
    "paper config (c3po-resnet18-deeplabv3), PyTorch fp32": (PAPER, "torch", "fp32"),
    "paper config, PyTorch bf16": (PAPER, "torch", "bf16"),
}
MODEL_PATHS = {  # label suffix: (backend, precision), for each model of --models
    "PyTorch fp32": ("torch", "fp32"),
    "PyTorch bf16": ("torch", "bf16"),
    "onnxruntime fp32": ("onnx", "fp32"),
    "OpenVINO bf16": ("openvino", "bf16"),
    "OpenVINO int8": ("openvino", "int8"),
    "auto (what `changeseg detect` picks)": ("auto", "auto"),
}


def all_paths(models: list[str]) -> dict[str, tuple[str, str, str]]:
    """Every path to time: the paper configuration's, then each model's on every backend."""
    paths = dict(PAPER_PATHS)
    for model in models:
        for suffix, (backend, precision) in MODEL_PATHS.items():
            paths[f"{model}, {suffix}"] = (model, backend, precision)
    return paths


def seeded_pair(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A size×size RGB pair with a few changed squares."""
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    comparison = reference.copy()
    for _ in range(6):
        y, x = (int(v) for v in rng.integers(0, size - size // 8, 2))
        comparison[y:y + size // 8, x:x + size // 8] = rng.integers(0, 256, 3)
    return reference, comparison


def main() -> None:
    """Time every path's full predict in interleaved rounds and print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="",
                        help="comma-separated parts of path labels: time only the paths whose label "
                             "holds one (the ratio column then compares with the first path timed)")
    parser.add_argument("--models", default="default",
                        help="comma-separated packaged model names or checkpoint folders to time "
                             "(e.g. default,runs/calibrated/candidate: side by side in one run)")
    args = parser.parse_args()
    every = all_paths([m for m in args.models.split(",") if m])
    wanted = [part for part in args.only.split(",") if part]
    paths = {label: path for label, path in every.items() if not wanted or any(w in label for w in wanted)}
    if not paths:
        parser.error(f"--only {args.only!r} matches no path; paths: {'; '.join(every)}")
    from changeseg.errors import ChangesegError
    from changeseg.inference.loading import describe_backend
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.models.presets import build_preset

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}; load {os.getloadavg()}")
    reference, comparison = seeded_pair(args.size)
    detectors = {}
    for label, (model, backend, precision) in paths.items():
        if model == PAPER:  # random weights, no ImageNet download: speed does not depend on them
            detector = ChangeDetector.from_model(build_preset(PAPER), precision=precision, name=PAPER)
        else:
            try:
                detector = ChangeDetector.from_pretrained(model, backend=backend, precision=precision)
            except ChangesegError as error:  # e.g. int8 of a folder never quantised: the others still run
                print(f"skipped {label}: {error}")
                continue
        detector.predict(reference, comparison)  # warm-up (and the one-time export for onnx/openvino)
        detectors[f"{label} [{describe_backend(detector, backend)}]"] = detector
    if not detectors:
        sys.exit("error: no path could be loaded (see the skipped lines above)")
    times: dict[str, list[float]] = {label: [] for label in detectors}
    labels = list(detectors)
    for number in range(args.rounds):  # a rotating order: no path always runs after the same one
        shift = number % len(labels)
        for label in labels[shift:] + labels[:shift]:
            detector = detectors[label]
            started = time.perf_counter()
            detector.predict(reference, comparison)
            times[label].append(time.perf_counter() - started)
    first = next(iter(detectors))
    reference_label = "the paper configuration" if first.startswith("paper") else first.split(" [")[0]
    baseline = statistics.median(times[first])
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label:75s} {median * 1e3:8.1f} ms (best {min(values) * 1e3:.1f})  {baseline / median:5.1f}× "
              f"{reference_label}")
    print(f"load at the end {os.getloadavg()}; {args.size}² pair, {args.rounds} rounds")


if __name__ == "__main__":
    main()
