"""What splitting merged regions costs next to plain connected components, on real predictions.

    OMP_WAIT_POLICY=PASSIVE python bench/split_cost.py pcb deeppcb:../shared/data/deeppcb --boards 20

A model's change probability on its validation boards (predicted once, not timed), then per
threshold the time of `changeseg.region_split.split_components` without a split (depth 0: OpenCV's
connected components) and with `pcb`'s split (depth 1, cover 0.95), side by side in one run, and
how many regions each gives. Low thresholds make large, noisy masks: the case a box-threshold
sweep (`tools/sweep_box_threshold.py --split-depths 1`) spends its time on.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from changeseg.data.datasets import open_dataset
from changeseg.data.pairs import PairSubset
from changeseg.evaluation.selection import probability_function, read_names
from changeseg.inference.multiscale import with_views
from changeseg.inference.predictor import ChangeDetector
from changeseg.region_split import split_components


def timed(masks: list[np.ndarray], depth: float, cover: float, repeats: int) -> tuple[float, int]:
    """(best-of-`repeats` milliseconds per mask, regions over all masks) of one split setting."""
    best = float("inf")
    regions = 0
    for _ in range(repeats):
        start = time.perf_counter()
        regions = sum(split_components(mask, depth, cover)[0] - 1 for mask in masks)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(masks), regions


def main() -> None:
    """Print one line per threshold: ms per board without and with the split, and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model folder or packaged name")
    parser.add_argument("data", help="FORMAT:PATH of its validation data")
    parser.add_argument("--names", default="model-val")
    parser.add_argument("--boards", type=int, default=20, help="how many validation pairs")
    parser.add_argument("--thresholds", default="0.1,0.5,0.68,0.9")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    detector = ChangeDetector.from_pretrained(args.model)
    predict = probability_function(with_views(detector, False, None), binary=True)
    names = read_names(args.names, detector.config.metadata, args.data)[: args.boards]
    probabilities = [predict(s["reference"], s["comparison"])
                     for s in PairSubset(open_dataset(args.data), names)]
    for threshold in (float(t) for t in args.thresholds.split(",")):
        masks = [p >= threshold for p in probabilities]
        plain_ms, plain_regions = timed(masks, 0.0, 1.0, args.repeats)
        split_ms, split_regions = timed(masks, 1.0, 0.95, args.repeats)
        print(f"threshold {threshold:.2f}: {len(masks)} boards, no split {plain_ms:.1f} ms/board "
              f"({plain_regions} regions), split 1/0.95 {split_ms:.1f} ms/board ({split_regions} regions), "
              f"split / plain {split_ms / plain_ms:.1f}x")


if __name__ == "__main__":
    main()
