"""Global pixel F1 of a model when the pair is upscaled before inference (and the probabilities
scaled back), at the model's own threshold and at the best one: is the model missing objects
because they are small?

    OMP_NUM_THREADS=1 python bench/test_time_scale.py runs/calibrated/default-link6 \
        sbi2015:../shared/data/surveillance/sbi2015 \
        --option "scenes=[CaVignal, HallAndMonitor]" --option pairs_per_scene=16 \
        --option both_foreground=differs --scales 1,2,3

Every pair of the data set is scored (`--names` as in `changeseg evaluate` to select some).
Upscaling is bicubic; the change probability is area-averaged back to the label's size.
`changeseg evaluate --scales 1,2` now scores multi-scale inference as users run it (bilinear
enlarging, the scales averaged; docs/models.md, "Multi-scale inference"); this script stays
because the link 6 figures in docs/models.md came from it.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from changeseg.data.datasets import open_dataset
from changeseg.evaluation.selection import parse_options, read_names
from changeseg.inference.predictor import ChangeDetector

THRESHOLDS = np.round(np.arange(0.02, 0.96, 0.02), 2)


def change_probability(detector: ChangeDetector, reference: np.ndarray, comparison: np.ndarray,
                       scale: int) -> np.ndarray:
    """P(change) of each pixel, predicted on the pair upscaled `scale` times."""
    height, width = reference.shape[:2]
    if scale > 1:
        size = (width * scale, height * scale)
        reference = cv2.resize(reference, size, interpolation=cv2.INTER_CUBIC)
        comparison = cv2.resize(comparison, size, interpolation=cv2.INTER_CUBIC)
    probability = 1.0 - detector.predict_proba(reference, comparison)[0]
    if scale > 1:
        probability = cv2.resize(probability.astype(np.float32), (width, height),
                                 interpolation=cv2.INTER_AREA)
    return probability


def main() -> None:
    """Print F1 at the model's threshold and at the best threshold for each scale."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a checkpoint folder or packaged model name")
    parser.add_argument("data", help="FORMAT:PATH")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="reader option")
    parser.add_argument("--names", default=None, help="pair names (a file or model-val[:MODEL])")
    parser.add_argument("--scales", default="1,2", help="comma-separated integer upscaling factors")
    args = parser.parse_args()
    data = open_dataset(args.data, **parse_options(args.option, "--option"))
    detector = ChangeDetector.from_pretrained(args.model, precision="fp32")
    indices = list(range(len(data)))
    if args.names:
        wanted = set(read_names(args.names, detector.config.metadata, args.data))
        indices = [i for i, name in enumerate(data.names) if name in wanted]
    own = int(np.argmin(np.abs(THRESHOLDS - detector.config.threshold)))
    for scale in (int(s) for s in args.scales.split(",")):
        counts = np.zeros((3, len(THRESHOLDS)))  # tp, fp, fn per threshold
        for index in indices:
            sample = data[index]
            probability = change_probability(detector, sample["reference"], sample["comparison"], scale)
            valid = sample["mask"] != 255
            truth = (sample["mask"] > 0) & valid
            for k, threshold in enumerate(THRESHOLDS):
                decided = (probability >= threshold) & valid
                counts[:, k] += [(decided & truth).sum(), (decided & ~truth).sum(), (~decided & truth).sum()]
        tp, fp, fn = counts
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        print(f"{len(indices)} pairs, scale {scale}: F1 {f1[own]:.3f} at {THRESHOLDS[own]:.2f}, "
              f"best {f1.max():.3f} at {THRESHOLDS[f1.argmax()]:.2f}")


if __name__ == "__main__":
    main()
