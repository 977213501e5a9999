"""Where a box-detection model's misses come from, on its validation boards (DeepPCB protocol).

    OMP_WAIT_POLICY=PASSIVE python bench/pcb_misses.py pcb:0.68 runs/pcb-link5-gaps/last:0.97

For each MODEL:THRESHOLD: how many ground-truth defects have their centre in a predicted region
shared with another defect (merged neighbours; among them those within 6 px of another defect),
and, for the first model, the box F-score of two post-processing rules on the same predictions
(regions split at depth 1 / cover 0.95): small regions kept when their peak probability is high,
predicted boxes enlarged to a minimum side, and regions split where a higher probability level
breaks them into several blobs (a watershed on the probability from those blobs). The numbers of
docs/models.md, `pcb`, "link 5", "link 6" and "Post-processing measured".
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from changeseg.data.datasets import open_dataset
from changeseg.data.pairs import PairSubset
from changeseg.evaluation.boxes import DEEPPCB_IOU, mask_to_boxes, match_boxes
from changeseg.evaluation.selection import probability_function, read_names
from changeseg.inference.multiscale import with_views
from changeseg.inference.predictor import ChangeDetector
from changeseg.region_split import split_components

NEIGHBOUR_PX = 6
SPLIT = {"split_depth": 1.0, "split_cover": 0.95}


def merged_counts(probabilities: list[np.ndarray], truths: list[np.ndarray],
                  threshold: float) -> tuple[int, int, int]:
    """(defects sharing a region, defects near another, near ones sharing a region), before splitting."""
    shared = near_total = near_shared = 0
    for probability, boxes in zip(probabilities, truths, strict=True):
        _, labels = cv2.connectedComponents((probability >= threshold).astype(np.uint8), connectivity=8)
        ids = [int(labels[(y1 + y2) // 2, (x1 + x2) // 2]) for x1, y1, x2, y2 in boxes]
        low = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
        high = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
        close = (low <= high + NEIGHBOUR_PX).all(axis=2) & ~np.eye(len(boxes), dtype=bool)
        near = set(np.flatnonzero(close.any(axis=1)).tolist())
        for i, region in enumerate(ids):
            merged = region > 0 and ids.count(region) > 1
            shared += merged
            near_total += i in near
            near_shared += merged and i in near
    return shared, near_total, near_shared


def box_f(probabilities: list[np.ndarray], truths: list[np.ndarray], threshold: float, min_area: int,
          small_area: int | None = None, small_peak: float = 1.0, min_side: int = 0) -> float:
    """Box F-score with regions of `min_area` px, plus regions of `small_area` px whose peak
    probability is at least `small_peak`, every box enlarged to `min_side` px a side."""
    tp = predicted = total = 0
    for probability, truth in zip(probabilities, truths, strict=True):
        mask = probability >= threshold
        boxes, scores = mask_to_boxes(mask, probability, min_area=min_area, score="max", **SPLIT)
        if small_area is not None:
            small, peaks = mask_to_boxes(mask, probability, min_area=small_area, score="max", **SPLIT)
            extra = [i for i in range(len(small)) if peaks[i] >= small_peak
                     and not any((small[i] == b).all() for b in boxes)]
            boxes, scores = np.concatenate([boxes, small[extra]]), np.concatenate([scores, peaks[extra]])
        boxes = boxes.astype(np.float64)
        if min_side and len(boxes):
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            half = (np.maximum(boxes[:, 2:] - boxes[:, :2] + 1, min_side) - 1) / 2
            boxes = np.concatenate([centre - half, centre + half], 1)
        hits = match_boxes(boxes, scores, truth, DEEPPCB_IOU)
        tp, predicted, total = tp + int(hits.sum()), predicted + len(boxes), total + len(truth)
    precision, recall = tp / max(predicted, 1), tp / max(total, 1)
    return 2 * precision * recall / max(precision + recall, 1e-12)


def level_split_f(probabilities: list[np.ndarray], truths: list[np.ndarray], threshold: float,
                  min_area: int, level: float, piece_area: int, max_cover: float) -> tuple[float, int, int]:
    """(box F, matched defects, boxes) with each region of at least `min_area` px (split as
    shipped) cut again where `probability >= level` holds two or more blobs of `piece_area` px:
    a watershed on the probability from those blobs, kept when the pieces' boxes cover at most
    `max_cover` times the region's box."""
    from skimage.segmentation import watershed

    def box(piece: np.ndarray) -> list[int]:
        ys, xs = np.nonzero(piece)
        return [xs.min(), ys.min(), xs.max(), ys.max()]

    def box_area(b: list[int]) -> int:
        return (b[2] - b[0] + 1) * (b[3] - b[1] + 1)

    tp = predicted = total = 0
    for probability, truth in zip(probabilities, truths, strict=True):
        count, labels = split_components((probability >= threshold).astype(np.uint8),
                                         SPLIT["split_depth"], SPLIT["split_cover"])
        boxes, scores = [], []
        for label in range(1, count):
            region = labels == label
            if region.sum() < min_area:
                continue
            pieces = [region]
            n, blobs, stats, _ = cv2.connectedComponentsWithStats(
                ((probability >= level) & region).astype(np.uint8), connectivity=8)
            seeds = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= piece_area]
            if len(seeds) >= 2:
                markers = np.zeros(labels.shape, np.int32)
                for j, i in enumerate(seeds, 1):
                    markers[blobs == i] = j
                grown = watershed(-probability, markers, mask=region)
                cut = [grown == j for j in range(1, len(seeds) + 1)]
                if sum(box_area(box(c)) for c in cut) <= max_cover * box_area(box(region)):
                    pieces = cut
            boxes += [box(piece) for piece in pieces]
            scores += [float(probability[piece].max()) for piece in pieces]
        hits = match_boxes(np.array(boxes, np.float64).reshape(-1, 4), np.array(scores), truth, DEEPPCB_IOU)
        tp, predicted, total = tp + int(hits.sum()), predicted + len(boxes), total + len(truth)
    precision, recall = tp / max(predicted, 1), tp / max(total, 1)
    return 2 * precision * recall / max(precision + recall, 1e-12), tp, predicted


def main() -> None:
    """Predict the validation boards once per model and print the counts and rule scores."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="MODEL:THRESHOLD (a packaged name or folder)")
    parser.add_argument("--data", default="deeppcb:../shared/data/deeppcb", help="FORMAT:PATH with boxes")
    parser.add_argument("--min-area", type=int, default=200, help="the model's minimum region area")
    args = parser.parse_args()
    specs = [spec.rpartition(":") for spec in args.models]
    for spec, (model, _, threshold) in zip(args.models, specs, strict=True):
        try:
            if not model or not 0 < float(threshold) < 1:
                raise ValueError
        except ValueError:
            parser.error(f"expected MODEL:THRESHOLD, the threshold between 0 and 1; got {spec!r}")
    for number, (model, _, threshold) in enumerate(specs):
        detector = ChangeDetector.from_pretrained(model)
        predict = probability_function(with_views(detector), binary=True)
        names = read_names("model-val", detector.config.metadata, args.data)
        dataset = PairSubset(open_dataset(args.data), names)
        probabilities, truths = [], []
        for sample in dataset:
            probabilities.append(predict(sample["reference"], sample["comparison"]))
            truths.append(sample["boxes"][:, :4])
        shared, near, near_shared = merged_counts(probabilities, truths, float(threshold))
        print(f"{model} at {threshold}: {sum(len(t) for t in truths)} defects, {shared} share a region; "
              f"{near} lie within {NEIGHBOUR_PX} px of another, {near_shared} of them share one")
        if number:
            continue
        t = float(threshold)
        shipped = box_f(probabilities, truths, t, args.min_area)
        print(f"  as shipped ({args.min_area} px): box F {shipped:.4f}")
        for small in (50, 100, 150):
            for peak in (0.9, 0.95, 0.99, 0.995):
                print(f"  + regions of {small} px with peak >= {peak}: "
                      f"{box_f(probabilities, truths, t, args.min_area, small, peak):.4f}")
        for area in (50, 100, 150, 200):
            row = ", ".join(f"side {side}: {box_f(probabilities, truths, t, area, min_side=side):.4f}"
                            for side in (0, 16, 24, 32))
            print(f"  boxes of regions >= {area} px enlarged to a minimum side: {row}")
        for level in (0.8, 0.9, 0.95, 0.98, 0.995):
            row = ", ".join("cover {}: F {:.4f} ({} matched, {} boxes)".format(
                cover, *level_split_f(probabilities, truths, t, args.min_area, level, 20, cover))
                for cover in (0.95, 1.5))
            print(f"  regions split where p >= {level} holds several blobs of >= 20 px: {row}")


if __name__ == "__main__":
    main()
