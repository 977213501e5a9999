"""The ceiling of shrunk-core training for the DeepPCB boxes protocol, on the true masks.

    .venv/bin/python tools/shrink_oracle.py ../shared/data/deeppcb --shrinks 0,0.1,0.15,0.2,0.25

For each `shrink` S, every board's true mask is rasterised with each box's sides pulled in by S
(the `deeppcb` reader's `shrink` option), scored as a prediction by the boxes protocol with each
region's box grown back by 1 / (1 - 2S) (`BoxMetric(grow=…)`), against the annotated boxes. S = 0
is the plain true mask: adjacent defects merge into one region there, which caps any mask-based
detector trained on it. Prints one line per S; no model is involved.
"""

from __future__ import annotations

import argparse

import numpy as np

from changeseg.data.datasets.deeppcb import DeepPCBDataset
from changeseg.evaluation.metrics import BoxMetric


def main() -> None:
    """Score the shrunk true masks of every listed board at each `--shrinks` value."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the DeepPCB folder (holding PCBData/)")
    parser.add_argument("--split", default="trainval", help="a list file in PCBData/ (default trainval)")
    parser.add_argument("--shrinks", default="0,0.1,0.15,0.2,0.25", help="comma-separated shrink fractions")
    args = parser.parse_args()
    for shrink in (float(s) for s in args.shrinks.split(",")):
        data = DeepPCBDataset(args.root, split=args.split, shrink=shrink)
        metric = BoxMetric(threshold=0.5, grow=1 / (1 - 2 * shrink))
        for index in range(len(data)):
            sample = data[index]
            metric.update(sample["mask"].astype(np.float32), np.zeros_like(sample["mask"]),
                          sample["name"], boxes=sample["boxes"])
        result = metric.compute()
        counts = result["counts"]
        print(f"shrink {shrink:g} (grow {1 / (1 - 2 * shrink):.3f}): boxes F {result['f1']:.4f} "
              f"(P {result['precision']:.4f} R {result['recall']:.4f}; {counts['matched']} of "
              f"{counts['ground_truth']} defects, {counts['predicted']} boxes) on {len(data)} boards")


if __name__ == "__main__":
    main()
