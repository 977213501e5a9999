"""Box F-score (DeepPCB protocol) over decision thresholds and minimum areas, on validation pairs.

    .venv/bin/python tools/sweep_box_threshold.py runs/pcb/best deeppcb:../shared/data/deeppcb \
        --min-areas 0,10,20,40

Each validation pair is predicted once; the `boxes` protocol is then scored at every
threshold × minimum region area × region split (and pixel F1 alongside). Use it to choose a
box-detection model's threshold on its *validation* split (`--names model-val`, the default),
never on a test split.

    .venv/bin/python tools/sweep_box_threshold.py pcb deeppcb:../shared/data/deeppcb --oracle \
        --thresholds 0.5 --split-depths 0,1,2,4 --split-covers 1,inf

`--split-depths` (0 = no split) and `--split-covers` sweep the splitting of merged regions
(`changeseg.region_split.split_components`: watershed from the extended maxima of the distance
transform, kept where the pieces' boxes cover at most that multiple of the whole's box).
`--grow G` scales each predicted box by G about its centre (a model trained on boxes shrunk by
S per side, the `deeppcb` reader's `shrink`, takes G = 1 / (1 - 2S)); the default is the model's
own (`metadata.box_grow`, else 1). `--scales 2` predicts each pair enlarged 2× (as `changeseg
evaluate --scales 2`); the default is the model's own (2 for a model trained with `data.val_scale: 2`).
`--tta` averages each pair's probabilities over a mirrored and a swapped view (as `changeseg evaluate --tta`),
`--tta-views dihedral` over the eight rotations and mirror images (as `changeseg evaluate --tta-views`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from changeseg.data.datasets import open_dataset
from changeseg.data.pairs import PairSubset
from changeseg.evaluation.metrics import BoxMetric, GlobalMetric
from changeseg.evaluation.selection import probability_function, read_names
from changeseg.inference.multiscale import views_of, with_views
from changeseg.inference.predictor import ChangeDetector
from changeseg.inference.tta import TTA_SETS, tta_option
from changeseg.region_split import DEFAULT_MAX_COVER

DEFAULT_THRESHOLDS = ",".join(f"{t:g}" for t in (*np.arange(0.5, 0.951, 0.05).round(2),
                                                  0.96, 0.97, 0.98, 0.99, 0.995, 0.998))


def main() -> None:
    """Predict the validation pairs once, then print box F-score and pixel F1 per threshold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model folder or packaged name")
    parser.add_argument("data", help="FORMAT:PATH of a data set with boxes (e.g. deeppcb:...)")
    parser.add_argument("--names", default="model-val", help="pair names (as changeseg evaluate)")
    parser.add_argument("--thresholds", default=DEFAULT_THRESHOLDS, help="comma-separated thresholds")
    parser.add_argument("--oracle", action="store_true",
                        help="score the true mask itself instead of the model's prediction: the "
                             "ceiling of the mask -> boxes protocol on these pairs")
    parser.add_argument("--min-areas", default="0", help="comma-separated min_area values of the "
                        "boxes protocol (the same as `changeseg detect --min-area`)")
    parser.add_argument("--split-depths", default="0", help="comma-separated split depths (pixels of "
                        "the distance transform; 0 = regions are not split)")
    parser.add_argument("--split-covers", default=f"{DEFAULT_MAX_COVER:g}", help="comma-separated "
                        "split covers (max pieces' box area / whole box area; inf = every split)")
    parser.add_argument("--grow", type=float, default=None, help="box scale factor about the centre "
                        "(default: the model's own metadata.box_grow, else 1)")
    parser.add_argument("--scales", default=None, help="comma-separated scales the pairs are predicted at, "
                        "probabilities averaged (as `changeseg evaluate --scales`; default: the model's own)")
    parser.add_argument("--tta", action="store_true", help="average over a mirrored and a swapped view of "
                        "each pair (as `changeseg evaluate --tta`; three forward passes, two for pcb)")
    parser.add_argument("--tta-views", choices=("none", *TTA_SETS), default=None,
                        help="which test-time views to average over (as `changeseg evaluate "
                             "--tta-views`; dihedral: 8 passes)")
    args = parser.parse_args()

    detector = ChangeDetector.from_pretrained(args.model)
    predictor = with_views(detector, tta_option(args.tta, args.tta_views), args.scales)
    dataset = open_dataset(args.data)
    dataset = PairSubset(dataset, read_names(args.names, detector.config.metadata, args.data))
    predict = probability_function(predictor, binary=True)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    areas = [int(a) for a in args.min_areas.split(",")]
    depths = [float(d) for d in args.split_depths.split(",")]
    covers = [float(c) for c in args.split_covers.split(",")]
    splits = list(dict.fromkeys((d, c if d > 0 else DEFAULT_MAX_COVER) for d in depths for c in covers))
    grow = args.grow if args.grow is not None else float(detector.config.metadata.get("box_grow", 1.0))
    boxes = {(t, a, d, c): BoxMetric(threshold=t, min_area=a, split_depth=d, split_cover=c, grow=grow)
             for t in thresholds for a in areas for d, c in splits}
    pixels = {t: GlobalMetric(threshold=t) for t in thresholds}
    for sample in dataset:
        probability = (sample["mask"].astype(np.float32) if args.oracle
                       else predict(sample["reference"], sample["comparison"]))
        for metric in boxes.values():
            metric.update(probability, sample["mask"], sample["name"], boxes=sample.get("boxes"))
        for metric in pixels.values():
            metric.update(probability, sample["mask"], sample["name"])
    rows = []
    for (t, a, d, c), metric in boxes.items():
        b, g = metric.compute(), pixels[t].compute()
        rows.append({"threshold": t, "min_area": a, "split_depth": d, "split_cover": c, "box_f1": b["f1"],
                     "box_precision": b["precision"], "box_recall": b["recall"], "pixel_f1": g["f1"],
                     **b["counts"]})
        split = f"split {d:g}/{c:g}" if d > 0 else "no split "
        print(f"t={t:.3f} min_area={a:<3d} {split:<14s} boxes F {b['f1']:.4f} (P {b['precision']:.4f} "
              f"R {b['recall']:.4f}, {b['counts']['matched']}/{b['counts']['ground_truth']} matched, "
              f"{b['counts']['predicted']} predicted)  pixel F1 {g['f1']:.4f}")
    # ties: the smaller area, no (or the least eager) split, the threshold nearest 0.5
    best = max(rows, key=lambda r: (r["box_f1"], -r["min_area"], r["split_depth"] == 0,
                                    r["split_depth"], -abs(r["threshold"] - 0.5)))
    views = views_of(predictor)  # what the predictor really averages over, not what was asked
    print(json.dumps({"pairs": len(dataset), "oracle": args.oracle, "scales": list(views.scales),
                      "tta": views.tta, "grow": grow, "best": best}))


if __name__ == "__main__":
    main()
