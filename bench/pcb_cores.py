"""Splitting one model's regions by another's defect cores: the box F-score it would give.

    OMP_WAIT_POLICY=PASSIVE python bench/pcb_cores.py runs/chain/pcb-2 runs/pcb-link7-shrink/last \
        --cache runs/pcb-cores-cache
    OMP_WAIT_POLICY=PASSIVE python bench/pcb_cores.py runs/pcb-link8-cores/last

A PSENet/DBNet-style measurement on the validation boards of the DeepPCB protocol: the regions
of a model trained on whole defect boxes (FULL, e.g. the shipped `pcb`) keep their extent, and
a region that holds two or more cores of a model trained on shrunk boxes (CORES, e.g. link 7,
`shrink: 0.2`) is cut between them (a watershed on the core probability from the cores). Its
box is then either each piece's own box (`pieces`) or each core's box grown back (`cores`).
With one model only, it is a three-class model trained with the `deeppcb` reader's `cores`
(link 8): its change probability (1 − p(unchanged)) is FULL and its "core" probability CORES.
Both models predict each board once (cached as .npz under `--cache`), then every setting of the
grid is scored with the protocol's greedy matching (IoU > 0.33). Decides whether one network
predicting both (whole defect and core) is worth training: docs/models.md, `pcb`, "link 8".
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
from skimage.segmentation import watershed

from changeseg.box_grow import grow_boxes
from changeseg.data.datasets import open_dataset
from changeseg.data.pairs import PairSubset
from changeseg.evaluation.boxes import DEEPPCB_IOU, mask_to_boxes, match_boxes
from changeseg.evaluation.selection import probability_function, read_names
from changeseg.inference.multiscale import with_views
from changeseg.inference.predictor import ChangeDetector
from changeseg.region_split import component_stats

SHIPPED_SPLIT = {"split_depth": 1.0, "split_cover": 0.95}


def predictions(model: str, data: str, names: str, cache: Path, part: str = "change"
                ) -> dict[str, np.ndarray]:
    """Per validation board of `model`: its change probability (`part` "change") or its "core"
    class's probability ("core"), predicted once and cached as float16."""
    stem = model.strip("/").replace("/", "_")
    paths = {"change": cache / f"{stem}.npz", "core": cache / f"{stem}-core.npz"}
    if paths[part].exists():
        with np.load(paths[part]) as stored:
            return {name: stored[name].astype(np.float32) for name in stored.files}
    detector = ChangeDetector.from_pretrained(model)
    classes = list(detector.config.class_names)
    predict = probability_function(with_views(detector, False, None), binary=False)
    dataset = PairSubset(open_dataset(data), read_names(names, detector.config.metadata, data))
    parts: dict[str, dict[str, np.ndarray]] = {"change": {}, "core": {}}
    for sample in dataset:
        probs = predict(sample["reference"], sample["comparison"])
        parts["change"][sample["name"]] = (1.0 - probs[0]).astype(np.float16)
        if "core" in classes:
            parts["core"][sample["name"]] = probs[classes.index("core")].astype(np.float16)
    cache.mkdir(parents=True, exist_ok=True)
    for key, values in parts.items():
        if values:
            np.savez_compressed(paths[key], **values)
    return {name: value.astype(np.float32) for name, value in parts[part].items()}


def core_split_boxes(full: np.ndarray, cores: np.ndarray, threshold: float, min_area: int,
                     core_threshold: float, core_area: int, mode: str, grow: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores of `full`'s regions, each cut between the cores it holds (see module doc)."""
    mask = full >= threshold
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= max(min_area, 1)
    mask &= keep[labels]
    n_cores, core_labels, core_stats, _ = cv2.connectedComponentsWithStats(
        ((cores >= core_threshold) & mask).astype(np.uint8), connectivity=8)
    big = np.zeros(n_cores, dtype=bool)
    big[1:] = core_stats[1:, cv2.CC_STAT_AREA] >= max(core_area, 1)
    markers = np.where(big[core_labels], core_labels, 0)
    # which full region each kept core lies in, and how many cores each region holds
    region_of = np.zeros(n_cores, dtype=np.int64)
    region_of[markers[markers > 0]] = labels[markers > 0]
    held = np.bincount(region_of[big], minlength=count)
    several = held >= 2
    out_boxes, out_scores = [], []
    whole = mask & ~several[labels]
    boxes, scores = mask_to_boxes(whole, full, min_area=min_area, score="max", **SHIPPED_SPLIT)
    out_boxes.append(boxes)
    out_scores.append(scores)
    if several.any():
        inside = mask & several[labels]
        split_markers = np.where(inside, markers, 0)
        pieces = watershed(-cores, split_markers, mask=inside, connectivity=2)
        ids, source = (pieces, full) if mode == "pieces" else (split_markers, cores)
        n_ids = int(ids.max()) + 1
        id_stats, _ = component_stats(ids, n_ids)
        present = id_stats[:, 4] > 0
        present[0] = False
        x, y, w, h = (id_stats[present, i].astype(np.float64) for i in range(4))
        boxes = np.stack([x, y, x + w - 1, y + h - 1], axis=1)
        peaks = np.zeros(n_ids)
        np.maximum.at(peaks, ids.ravel(), source.ravel())
        out_boxes.append(boxes if mode == "pieces" else grow_boxes(boxes, grow, full.shape))
        out_scores.append(peaks[present])
    return np.concatenate(out_boxes).reshape(-1, 4), np.concatenate(out_scores)


def score(boards: list[tuple[np.ndarray, np.ndarray, np.ndarray]], **setting: object) -> dict:
    """Box F-score, precision, recall and counts of one setting over all boards."""
    tp = predicted = total = 0
    for full, cores, truth in boards:
        boxes, scores = core_split_boxes(full, cores, **setting)  # type: ignore[arg-type]
        hits = match_boxes(boxes, scores, truth, DEEPPCB_IOU)
        tp, predicted, total = tp + int(hits.sum()), predicted + len(boxes), total + len(truth)
    precision, recall = tp / max(predicted, 1), tp / max(total, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"box_f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4),
            "matched": tp, "predicted": predicted, "ground_truth": total}


def floats(text: str) -> list[float]:
    """Comma-separated numbers."""
    return [float(v) for v in text.split(",")]


def main() -> None:
    """Predict both models once, then print the box F-score of every setting and the best."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("full", help="model trained on whole boxes (folder or packaged name)")
    parser.add_argument("cores", nargs="?", default=None, help="model trained on shrunk boxes (default: "
                        "FULL's own \"core\" class)")
    parser.add_argument("--data", default="deeppcb:../shared/data/deeppcb")
    parser.add_argument("--names", default="model-val")
    parser.add_argument("--cache", type=Path, default=Path("runs/pcb-cores-cache"))
    parser.add_argument("--thresholds", default="0.5,0.68,0.8")
    parser.add_argument("--min-areas", default="150,200,250")
    parser.add_argument("--core-thresholds", default="0.9,0.97,0.99")
    parser.add_argument("--core-areas", default="20,50,100")
    parser.add_argument("--modes", default="pieces,cores")
    parser.add_argument("--grow", type=float, default=5 / 3, help="core box scale (mode `cores`)")
    args = parser.parse_args()

    full = predictions(args.full, args.data, args.names, args.cache)
    cores = (predictions(args.cores, args.data, args.names, args.cache) if args.cores
             else predictions(args.full, args.data, args.names, args.cache, part="core"))
    dataset = open_dataset(args.data)
    truth = {s["name"]: s["boxes"] for s in PairSubset(dataset, sorted(full))}
    boards = [(full[n], cores[n], np.asarray(truth[n], dtype=np.float64)[:, :4]) for n in sorted(full)]
    rows = []
    grid = itertools.product(floats(args.thresholds), floats(args.min_areas), floats(args.core_thresholds),
                             floats(args.core_areas), args.modes.split(","))
    for t, a, ct, ca, mode in grid:
        setting = {"threshold": t, "min_area": int(a), "core_threshold": ct, "core_area": int(ca),
                   "mode": mode, "grow": args.grow}
        row = {**setting, **score(boards, **setting)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: (r["box_f1"], r["matched"]))
    print(json.dumps({"boards": len(boards), "best": best}))


if __name__ == "__main__":
    main()
