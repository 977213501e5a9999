"""Boxes from change masks, box IoU and matching: the geometry of the DeepPCB protocol.

Boxes are ``x1, y1, x2, y2`` with **inclusive** pixel corners (the convention of changeseg
samples and DeepPCB annotations): a box covering columns 3..5 has x1 = 3, x2 = 5.
"""

from __future__ import annotations

import cv2
import numpy as np

from changeseg.box_grow import grow_boxes
from changeseg.errors import InputError
from changeseg.region_split import DEFAULT_MAX_COVER, split_components

DEEPPCB_IOU = 0.33
"""DeepPCB's box-match criterion: a detection is correct when IoU > 0.33."""


def _group_components(mask: np.ndarray, labels: np.ndarray,
                      probability: np.ndarray, score: str
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (x1, y1, x2, y2, inclusive pixel corners), areas and scores per label.

    Only pixels of ``mask`` count; ``labels`` may come from a dilated copy of the mask, in
    which case nearby components share a label and become one box.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0)
    lab = labels[ys, xs]
    order = np.argsort(lab, kind="stable")
    lab, ys, xs = lab[order], ys[order], xs[order]
    probs = probability[ys, xs]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    areas = np.diff(np.r_[starts, lab.size])
    boxes = np.stack([
        np.minimum.reduceat(xs, starts), np.minimum.reduceat(ys, starts),
        np.maximum.reduceat(xs, starts), np.maximum.reduceat(ys, starts),
    ], axis=1).astype(np.float64)
    reduce_max = score == "max"
    scores = np.maximum.reduceat(probs, starts) if reduce_max else np.add.reduceat(probs, starts) / areas
    return boxes, areas.astype(np.int64), scores.astype(np.float64)


def mask_to_boxes(
    mask: np.ndarray,
    probability: np.ndarray | None = None,
    min_area: int = 0,
    score: str = "mean",
    merge_distance: int = 0,
    connectivity: int = 8,
    split_depth: float = 0.0,
    split_cover: float = DEFAULT_MAX_COVER,
    grow: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of a binary mask as boxes with scores.

    Args:
        mask: H×W bool (or 0/1) mask.
        probability: H×W change probability for the scores (all ones when None).
        min_area: components with fewer pixels are dropped.
        score: ``"mean"`` or ``"max"`` probability over the component's pixels.
        merge_distance: 0 (default) labels the mask as it is; ``g > 0`` first dilates it with a
            (g+1)×(g+1) square so that components separated by at most ``g`` background
            pixels (horizontally, vertically or diagonally) merge into one box. Boxes, areas
            and scores still use the original pixels only.
        connectivity: 8 (default) or 4, passed to OpenCV.
        split_depth: 0 (default) keeps each component whole; ``h > 0`` splits components that
            hold several blobs, by a watershed from the extended maxima of the distance transform
            (:func:`changeseg.region_split.split_components`; after ``merge_distance``).
        split_cover: a split is kept only where the pieces' boxes cover at most this multiple
            of the whole component's box (``inf``: every split).
        grow: each box's width and height are multiplied by this about its centre (clipped to
            the image) after ``min_area`` has been applied: 1 (default) keeps the component's
            own box; a model trained on boxes shrunk by ``S`` per side (the ``deeppcb`` reader's
            ``shrink``) finds cores whose boxes ``1 / (1 - 2S)`` restores.

    Returns:
        ``(boxes, scores)``: ``N×4`` float64 boxes ``x1, y1, x2, y2`` with inclusive pixel
        corners (a component covering columns 3..5 has x1 = 3, x2 = 5), the convention of
        changeseg samples and DeepPCB annotations, and ``N`` scores.
    """
    if score not in ("mean", "max"):
        raise InputError(f"box score must be 'mean' or 'max', got {score!r}")
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, got {connectivity}")
    binary = np.asarray(mask).astype(bool)
    prob = (np.ones(binary.shape, np.float64) if probability is None
            else np.asarray(probability, dtype=np.float64))
    source = binary.astype(np.uint8)
    if merge_distance > 0:
        kernel = np.ones((merge_distance + 1, merge_distance + 1), np.uint8)
        source = cv2.dilate(source, kernel, anchor=(0, 0))
    _count, labels = split_components(source, split_depth, split_cover, connectivity)
    boxes, areas, scores = _group_components(binary, labels, prob, score)
    keep = areas >= max(int(min_area), 1)
    return grow_boxes(boxes[keep], grow, binary.shape), scores[keep]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between ``N×4`` and ``M×4`` boxes with inclusive pixel corners.

    A box ``x1, y1, x2, y2`` covers columns x1..x2 and rows y1..y2, so its area is
    ``(x2 − x1 + 1)·(y2 − y1 + 1)`` pixels: the IoU is that of the two pixel sets.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]) + 1, 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0] + 1, 0, None) * np.clip(a[:, 3] - a[:, 1] + 1, 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0] + 1, 0, None) * np.clip(b[:, 3] - b[:, 1] + 1, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(pred: np.ndarray, scores: np.ndarray, truth: np.ndarray,
                iou_threshold: float = DEEPPCB_IOU) -> np.ndarray:
    """Greedy one-to-one matching; returns a bool per predicted box (True = matched).

    Predicted boxes are visited from the highest score down (ties keep their order); each
    takes the still-unmatched ground-truth box with the highest IoU, if that IoU is strictly
    greater than ``iou_threshold``.
    """
    matched = np.zeros(len(pred), dtype=bool)
    if len(pred) == 0 or len(truth) == 0:
        return matched
    # candidate pairs above the threshold, computed in row blocks so that thousands of noisy
    # components against thousands of boxes never need the full IoU matrix in memory
    candidates: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(pred), 256):
        for row in box_iou(pred[start:start + 256], truth):
            index = np.flatnonzero(row > iou_threshold)
            candidates.append((index, row[index]))
    taken = np.zeros(len(truth), dtype=bool)
    for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        index, values = candidates[i]
        free = ~taken[index]
        if free.any():
            j = index[free][int(np.argmax(values[free]))]
            taken[j] = True
            matched[i] = True
    return matched


def average_precision(scores: np.ndarray, hits: np.ndarray, positives: int) -> float | None:
    """All-point interpolated average precision of ranked detections (None without positives)."""
    if positives == 0:
        return None
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = tp / positives
    precision = tp / (tp + fp)
    # precision envelope from the right, then the area under the recall steps
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    previous = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - previous) * envelope))
