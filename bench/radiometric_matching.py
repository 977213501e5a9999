"""Does matching the comparison's colours to the reference's, before the model, help?

For each data set, a model is scored (global pixel F1 at its own threshold, and the best-F1
threshold on the same pairs) three ways on the same pairs: plain; with the comparison's
per-channel histogram matched to the reference's (`skimage.exposure.match_histograms`); and
with the comparison's per-channel mean and standard deviation matched to the reference's.
A set is `SPEC` or `SPEC@NAMES` (`NAMES` as `changeseg evaluate --names`, e.g. `model-val`).
It answers whether such radiometric normalisation belongs in front of the model (it is
a common preprocessing step for seasonal remote-sensing pairs); it changes nothing in
changeseg. float32 on the CPU.

    python bench/radiometric_matching.py aerial airchange:../shared/data/airchange@model-val \\
        oscd:../shared/data/oscd@model-val folder:../shared/data/levir_samples@model-val
    python bench/radiometric_matching.py default pcd:../shared/data/tsunami
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
from skimage.exposure import match_histograms

from changeseg.data.datasets import open_dataset
from changeseg.data.pairs import PairSubset
from changeseg.data.transforms import in_image_dtype
from changeseg.errors import ChangesegError
from changeseg.evaluation.runner import evaluate
from changeseg.evaluation.selection import parse_options, probability_function, read_names
from changeseg.hardware import cpu_model
from changeseg.inference.predictor import ChangeDetector


def match_histogram(reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
    """The comparison with each channel's histogram matched to the reference's channel."""
    matched = match_histograms(comparison.astype(np.float32), reference.astype(np.float32),
                               channel_axis=-1)
    return in_image_dtype(matched, comparison.dtype)


def match_mean_std(reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
    """The comparison with each channel's mean and standard deviation set to the reference's."""
    ref, cmp_ = reference.astype(np.float32), comparison.astype(np.float32)
    spread = cmp_.std(axis=(0, 1)) + 1e-6
    matched = (cmp_ - cmp_.mean(axis=(0, 1))) / spread * ref.std(axis=(0, 1)) + ref.mean(axis=(0, 1))
    return in_image_dtype(matched, comparison.dtype)


METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray] | None] = {
    "plain": None, "histogram": match_histogram, "mean-std": match_mean_std}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a packaged model name or an exported model folder")
    parser.add_argument("sets", nargs="+", help="SPEC or SPEC@NAMES, e.g. oscd:DIR@model-val")
    parser.add_argument("--data-option", action="append", default=[],
                        help="KEY=VALUE for every set's reader (as changeseg evaluate)")
    return parser.parse_args(argv)


def score_set(detector: ChangeDetector, spec_names: str, options: dict[str, Any]) -> list[str]:
    """One table row per method for the set `spec_names` (SPEC or SPEC@NAMES)."""
    spec, _, names = spec_names.partition("@")
    dataset = open_dataset(spec, **options)
    if names:
        dataset = PairSubset(dataset, read_names(names, detector.config.metadata, spec))
    predict = probability_function(detector, binary=True)
    rows = []
    for method, match in METHODS.items():
        def matched(reference: Any, comparison: Any, match=match) -> Any:
            reference, comparison = np.asarray(reference), np.asarray(comparison)
            return predict(reference, comparison if match is None else match(reference, comparison))
        report = evaluate(matched, dataset, protocols=["global"],
                          threshold=detector.config.threshold, progress=False)
        rows.append(f"| {spec_names} | {len(dataset)} | {method} | {report['f1_at_threshold']:.3f} | "
                    f"{report['best_threshold']:.2f} → {report['best_f1']:.3f} |")
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Score the model on every set plain and with each matching; print a Markdown table."""
    args = parse_args(argv)
    try:
        options = parse_options(args.data_option, "--data-option")
        detector = ChangeDetector.from_pretrained(args.model, device="cpu", precision="fp32")
        print(f"# {shlex.join(['python', 'bench/radiometric_matching.py', *sys.argv[1:]])}")
        print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
              f"{os.cpu_count()} cores, {platform.python_version()}; threshold "
              f"{detector.config.threshold:.2f}")
        print("| set | pairs | comparison | global F1 at the threshold | best threshold → F1 |")
        print("|---|---|---|---|---|")
        for spec_names in args.sets:
            score_set(detector, spec_names, options)
    except ChangesegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
