"""Frame-differencing baseline on sbi2015 scene pairs: global F1 of a thresholded grey difference.

No network: each frame is turned to grey, blurred with a small Gaussian, and a pixel is
called changed where the absolute difference of the two frames is at least a threshold
(in grey levels, 0–255). Pairs and labels are exactly those of the `sbi2015` reader
(`changeseg.data.datasets.sbi2015`): change where either frame's mask is foreground,
ignored pixels (unknown in either mask) excluded. Scores are **global** F1 (pixel counts
summed over all pairs), at a fixed threshold and at the best-F1 threshold chosen on the
same pairs (an optimistic oracle: it is tuned on what it scores), and of calling every pixel
changed (the trivial reference for scenes that are mostly foreground); per-image mean F1 (the
C-3PO protocol, an image with no change predicted empty scores 0) is printed for the totals.

    python bench/frame_difference.py ../shared/data/surveillance/sbi2015
    python bench/frame_difference.py DATA_ROOT --scenes Board,HighwayI --pairs-per-scene 16
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from datetime import datetime, timezone

import cv2
import numpy as np

from changeseg.data.datasets.sbi2015 import SBI2015Dataset
from changeseg.io.images import to_uint8_rgb

LEVELS = 256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="the sbi2015 folder (<scene>/input, <scene>/groundtruth)")
    parser.add_argument("--scenes", default=None, help="comma-separated scenes (default: all)")
    parser.add_argument("--pairs-per-scene", type=int, default=16)
    parser.add_argument("--min-gap", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--both-foreground", default="change", choices=("change", "ignore", "differs"),
                        help="label of pixels foreground in both frames (the reader's both_foreground)")
    parser.add_argument("--sigma", type=float, default=1.5, help="Gaussian blur sigma in pixels")
    parser.add_argument("--threshold", type=int, default=25,
                        help="the fixed threshold in grey levels (changed where |difference| >= it)")
    return parser.parse_args(argv)


def grey_difference(reference: np.ndarray, comparison: np.ndarray, sigma: float) -> np.ndarray:
    """|blur(grey(reference)) − blur(grey(comparison))|, rounded to integer grey levels 0..255."""
    greys = []
    for image in (reference, comparison):
        grey = cv2.cvtColor(to_uint8_rgb(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
        greys.append(cv2.GaussianBlur(grey, (0, 0), sigma) if sigma > 0 else grey)
    return np.clip(np.rint(np.abs(greys[0] - greys[1])), 0, LEVELS - 1).astype(np.int64)


def pair_histograms(difference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """2×256 counts of difference values over unchanged (row 0) and changed (row 1) pixels."""
    return np.stack([np.bincount(difference[mask == label], minlength=LEVELS) for label in (0, 1)])


def f1_by_threshold(histograms: np.ndarray) -> np.ndarray:
    """Global F1 for every threshold t = 0..256 (changed where difference >= t) from 2×256 counts."""
    at_least = np.concatenate([np.cumsum(histograms[:, ::-1], axis=1)[:, ::-1],
                               np.zeros((2, 1), dtype=np.int64)], axis=1)
    tp, fp = at_least[1], at_least[0]
    fn = histograms[1].sum() - tp
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def per_image_f1(pairs: list[np.ndarray], threshold: int) -> float:
    """Mean over pairs of each pair's F1 at `threshold` (0 when a pair has nothing to score)."""
    return float(np.mean([f1_by_threshold(h)[threshold] for h in pairs])) if pairs else 0.0


def main(argv: list[str] | None = None) -> int:
    """Score frame differencing on sbi2015 pairs and print a table per scene."""
    args = parse_args(argv)
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()] if args.scenes else None
    data = SBI2015Dataset(args.root, scenes=scenes, pairs_per_scene=args.pairs_per_scene,
                          both_foreground=args.both_foreground,
                          min_gap=args.min_gap, seed=args.seed)
    per_pair: dict[str, list[np.ndarray]] = {scene: [] for scene in data.scenes}
    ignored: dict[str, list[int]] = {scene: [0, 0] for scene in data.scenes}
    for index in range(len(data)):
        sample = data[index]
        scene = sample["name"].split("/")[0]
        per_pair[scene].append(pair_histograms(
            grey_difference(sample["reference"], sample["comparison"], args.sigma), sample["mask"]))
        ignored[scene][0] += int((sample["mask"] == 255).sum())
        ignored[scene][1] += sample["mask"].size
    per_pair = {scene: pairs for scene, pairs in per_pair.items() if pairs}
    totals = {scene: np.sum(pairs, axis=0) for scene, pairs in per_pair.items()}
    overall = np.sum(list(totals.values()), axis=0)
    best = int(np.argmax(f1_by_threshold(overall)))
    fixed = int(args.threshold)

    command = [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    print(f"# {' '.join(shlex.quote(a) for a in command)}")
    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}, {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"# grey difference after a Gaussian blur (sigma {args.sigma}); global F1, ignored pixels "
          f"excluded; pairs_per_scene {args.pairs_per_scene}, min_gap {args.min_gap}, seed {args.seed}")
    print(f"# fixed threshold {fixed}; best threshold over all pairs {best} (tuned on these pairs)")
    header = (f"{'scene':16s} {'pairs':>5s} {'change%':>7s} {'ignore%':>7s} {'F1 all':>7s} "
              f"{f'F1@{fixed}':>7s} {f'F1@{best}':>7s} {'own t':>5s} {'F1@own':>7s}")
    print(header)
    print("-" * len(header))

    def row(label: str, pairs: int, counts: np.ndarray, ignore: list[int]) -> str:
        curve = f1_by_threshold(counts)
        own = int(np.argmax(curve))
        return (f"{label:16s} {pairs:5d} {100 * counts[1].sum() / counts.sum():7.2f} "
                f"{100 * ignore[0] / ignore[1]:7.2f} {curve[0]:7.3f} {curve[fixed]:7.3f} "
                f"{curve[best]:7.3f} {own:5d} {curve[own]:7.3f}")

    for scene, counts in totals.items():
        print(row(scene, len(per_pair[scene]), counts, ignored[scene]))
    print("-" * len(header))
    everything = [h for pairs in per_pair.values() for h in pairs]
    all_ignored = [sum(v[0] for v in ignored.values()), sum(v[1] for v in ignored.values())]
    print(row("all (global)", len(everything), overall, all_ignored))
    print(f"{'all (per-image)':16s} {len(everything):5d} {'':7s} {'':7s} "
          + " ".join(f"{per_image_f1(everything, t):7.3f}" for t in (0, fixed, best)))
    print("# change% / ignore%: of scored / of all pixels; F1 all: every pixel called changed;"
          " own t / F1@own: each scene's own best threshold (an oracle per scene)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
