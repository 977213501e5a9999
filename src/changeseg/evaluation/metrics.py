"""Evaluation protocols for change maps, as streaming accumulators.

Each protocol is an object with ``update(probability, target, name, boxes)`` and
``compute() -> dict``; it keeps running counts, so memory does not grow with the number of
pixels in the data set (only ``c3po`` keeps one small record per image, and ``boxes`` one
per predicted box).

Protocols (each names itself in a report by its ``name``):

- ``c3po`` (:class:`C3POMetric`): precision / recall / F1 computed **per image** and averaged
  over images, exactly as the official C-3PO code does (``CD_metric_torch`` in ``src/utils.py``
  and ``CD_evaluate`` in ``src/train.py`` of DoctorKey/C-3PO): per image
  ``P = TP/(TP+FP+1e-7)``, ``R = TP/(TP+FN+1e-7)``, ``F1 = 2·R·P/(P+R+1e-7)`` in float32, so an
  image without true change scores P = R = F1 = 0 whatever is predicted. It also reports the
  data-set mIoU the official code uses for ChangeSim (``SS_evaluate``/``ConfusionMatrix``:
  classes never seen count as IoU 0 in the mean).
- ``global`` (:class:`GlobalMetric`): one confusion matrix over every pixel of the set (the
  remote-sensing convention): F1, IoU, precision, recall, overall accuracy, Cohen's kappa,
  per-class IoU and mIoU.
- ``boxes`` (:class:`BoxMetric`): the DeepPCB protocol, class-agnostic: connected components
  of the predicted mask become boxes, matched greedily (highest score first) to ground-truth
  boxes with IoU > 0.33.
- ``sweep`` (:class:`ThresholdSweep`): streaming histograms of the change probability of
  changed and unchanged pixels give TP/FP/FN at every threshold of a grid: the
  precision-recall curve, F1 against threshold and the best-F1 threshold.

The conventions (labels, threshold rule, zero denominators) are those of
:mod:`changeseg.evaluation.pixels`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from changeseg.box_grow import check_grow
from changeseg.errors import InputError
from changeseg.evaluation.boxes import DEEPPCB_IOU, average_precision, mask_to_boxes, match_boxes
from changeseg.evaluation.pixels import (
    C3PO_EPS,
    PixelCounts,
    PreparedImage,
    c3po_image_scores,
    class_names_for,
    confusion_scores,
    prepare_image,
    ratio,
)
from changeseg.labels import IGNORE_INDEX
from changeseg.region_split import DEFAULT_MAX_COVER, check_split

# --------------------------------------------------------------------------------------------
# Protocol accumulators
# --------------------------------------------------------------------------------------------


class Metric(Protocol):
    """What every protocol accumulator provides."""

    name: str
    threshold: float

    def update(self, probability: Any, target: Any, name: str = "", boxes: Any = None
               ) -> dict[str, Any] | None: ...

    def update_prepared(self, image: PreparedImage) -> dict[str, Any] | None: ...

    def compute(self) -> dict[str, Any]: ...

    def reset(self) -> None: ...


class _MetricBase:
    """Shared ``update`` that prepares the image with this metric's threshold."""

    name = ""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)

    def update(self, probability: Any, target: Any, name: str = "", boxes: Any = None
               ) -> dict[str, Any] | None:
        """Add one image: ``probability`` H×W (or C×H×W), ``target`` H×W class indices.

        Returns this protocol's per-image numbers (or None when it has none).
        """
        image = prepare_image(probability, target, self.threshold, name=name, boxes=boxes)
        return self.update_prepared(image)

    def update_prepared(self, image: PreparedImage) -> dict[str, Any] | None:
        """Add one image prepared by :func:`prepare_image` (shared across protocols)."""
        raise NotImplementedError


class C3POMetric(_MetricBase):
    """The official C-3PO protocol: per-image precision/recall/F1, averaged over images.

    For every image the change mask (any class other than 0) is compared with the label's
    change mask and scored by :func:`c3po_image_scores`; ``compute`` returns the plain mean
    over images of precision, recall, accuracy and F1 (the official ``SmoothedValue`` global
    average with the test loader's batch size 1; the official running total becomes a float32
    tensor after its first addition, so the sum is kept in float32 here too). An image without
    true change scores 0 and still counts in the mean. Ignored pixels (255) are left out; the
    official code has no ignore value (it uses ``target > 0``), which is the same on its
    binarised 0/1 masks.

    It also accumulates the official ``ConfusionMatrix`` of the segmentation evaluation
    (``SS_evaluate``, used for ChangeSim): IoU per class over the whole set, a class never
    seen in label or prediction counts as 0, and ``miou`` is the mean over **all** classes.
    """

    name = "c3po"

    def __init__(self, threshold: float = 0.5, eps: float = C3PO_EPS,
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__(threshold)
        self.eps = float(eps)
        self.class_names = list(class_names) if class_names is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self.records: list[dict[str, Any]] = []
        self._sums = {key: np.float32(0.0) for key in ("precision", "recall", "accuracy", "f1")}
        self._matrix: np.ndarray | None = None
        self._empty = 0

    def update_prepared(self, image: PreparedImage) -> dict[str, Any]:
        """Score one image; returns ``{"c3po_f1": ...}`` (all its numbers go to ``records``)."""
        counts = PixelCounts.of(image)
        scores = c3po_image_scores(counts.tp, counts.fp, counts.fn, counts.tn, self.eps)
        for key in self._sums:  # float32 running totals, as the official SmoothedValue's
            self._sums[key] = np.float32(self._sums[key] + np.float32(scores[key]))
        if counts.tp + counts.fn == 0:
            self._empty += 1
        n = image.num_classes
        if self._matrix is None:
            self._matrix = np.zeros((n, n), dtype=np.int64)
        elif self._matrix.shape[0] != n:
            raise InputError(f"{image.name}: {n} classes, but earlier images had "
                             f"{self._matrix.shape[0]}")
        t = image.target[image.valid]
        p = image.prediction[image.valid]
        self._matrix += np.bincount(t * n + p, minlength=n * n).reshape(n, n)
        self.records.append({"name": image.name, **scores})
        return {"c3po_f1": scores["f1"]}

    def compute(self) -> dict[str, Any]:
        """Mean per-image precision/recall/accuracy/F1, plus the official mIoU."""
        count = len(self.records)
        result: dict[str, Any] = {
            "protocol": self.name,
            "images": count,
            "images_without_change": self._empty,
            "threshold": self.threshold,
            "eps": self.eps,
        }
        for key, total in self._sums.items():
            result[key] = float(total / np.float32(count)) if count else 0.0
        if self._matrix is not None:
            m = self._matrix.astype(np.float32)  # the official ConfusionMatrix uses .float()
            diag = np.diag(m)
            union = m.sum(axis=1) + m.sum(axis=0) - diag
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = np.where(union > 0, diag / np.where(union > 0, union, 1),
                               np.float32(0.0)).astype(np.float32)
            names = class_names_for(m.shape[0], self.class_names)
            result["per_class_iou"] = {names[k]: float(iou[k]) for k in range(len(names))}
            result["miou"] = float(iou.mean())
        return result


class GlobalMetric(_MetricBase):
    """Pixel counts over the whole set: one confusion matrix, standard scores.

    The matrix is accumulated with ``torchmetrics``' ``MulticlassConfusionMatrix``
    (``ignore_index=255``; it can also be synchronised across processes), and every score is
    derived from it by :func:`confusion_scores`: F1 / IoU / precision / recall of change (all
    non-zero classes together), overall accuracy, Cohen's kappa, per-class IoU and mIoU.
    """

    name = "global"

    def __init__(self, threshold: float = 0.5, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__(threshold)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._confmat = None
        self._images = 0
        self._ignored = 0

    def _ensure(self, num_classes: int, name: str) -> None:
        if self.num_classes is not None and self.num_classes != num_classes:
            raise InputError(f"{name}: a {num_classes}-class prediction for a "
                             f"{self.num_classes}-class evaluation")
        if self._confmat is None:
            from torchmetrics.classification import MulticlassConfusionMatrix

            self.num_classes = num_classes
            self._confmat = MulticlassConfusionMatrix(
                num_classes=num_classes, ignore_index=IGNORE_INDEX, validate_args=False)

    def update_prepared(self, image: PreparedImage) -> None:
        """Add one image's pixels to the confusion matrix."""
        import torch

        self._ensure(image.num_classes, image.name)
        self._confmat.update(torch.from_numpy(image.prediction.ravel()),
                             torch.from_numpy(image.target.ravel()))
        self._images += 1
        self._ignored += int(image.valid.size - np.count_nonzero(image.valid))
        return None

    @property
    def confusion_matrix(self) -> np.ndarray:
        """The accumulated ``M[true, predicted]`` (int64), zeros before any update."""
        if self._confmat is None:
            n = self.num_classes or 2
            return np.zeros((n, n), dtype=np.int64)
        return self._confmat.compute().cpu().numpy().astype(np.int64)

    def compute(self) -> dict[str, Any]:
        """F1, IoU, precision, recall, OA, kappa, per-class IoU and mIoU over all pixels."""
        matrix = self.confusion_matrix
        result: dict[str, Any] = {"protocol": self.name, "images": self._images,
                                  "threshold": self.threshold}
        result.update(confusion_scores(matrix, self.class_names))
        result["counts"]["ignored"] = self._ignored
        result["confusion_matrix"] = matrix.tolist()
        return result


class BoxMetric(_MetricBase):
    """The DeepPCB protocol, class-agnostic: predicted components against ground-truth boxes.

    Per image: connected components of the predicted change mask (see :func:`mask_to_boxes`)
    become boxes scored by the mean (or max) change probability of their pixels; they are
    matched greedily, highest score first, to unmatched ground-truth boxes with IoU > 0.33
    (:func:`match_boxes`). Over the set: precision = matched / predicted boxes, recall =
    matched / ground-truth boxes, F-score = 2PR/(P+R); also the all-point average precision
    of the score-ranked boxes (class-agnostic, over the components present at this
    threshold).

    Ground-truth boxes come from the sample's ``boxes`` (N×4 or N×5, x1, y1, x2, y2[, class],
    inclusive pixel corners; the class is ignored), and IoU is that of the pixel sets
    (:func:`box_iou`). A sample without boxes uses the connected components of its label's
    change mask instead, and ``compute`` counts such images in ``images_boxes_from_mask``.
    Predicted pixels on ignored label pixels (255) are dropped before labelling.

    ``split_depth`` > 0 splits predicted components that hold several blobs before boxing them
    (:func:`changeseg.region_split.split_components`, with ``split_cover``); ground-truth
    boxes are never split. 0 (default) leaves the protocol as DeepPCB defines it. ``grow`` > 1
    scales each predicted box about its centre (:func:`mask_to_boxes`), for a model trained on
    shrunk boxes (the ``deeppcb`` reader's ``shrink``).
    """

    name = "boxes"

    def __init__(self, threshold: float = 0.5, iou_threshold: float = DEEPPCB_IOU,
                 min_area: int = 0, score: str = "mean", merge_distance: int = 0,
                 connectivity: int = 8, split_depth: float = 0.0,
                 split_cover: float = DEFAULT_MAX_COVER, grow: float = 1.0) -> None:
        super().__init__(threshold)
        if score not in ("mean", "max"):
            raise InputError(f"box score must be 'mean' or 'max', got {score!r}")
        check_split(split_depth, split_cover)
        check_grow(float(grow))
        self.grow = float(grow)
        self.split_depth = float(split_depth)
        self.split_cover = float(split_cover)
        self.iou_threshold = float(iou_threshold)
        self.min_area = int(min_area)
        self.score = score
        self.merge_distance = int(merge_distance)
        self.connectivity = int(connectivity)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._tp = 0
        self._pred = 0
        self._gt = 0
        self._images = 0
        self._from_mask = 0
        self._scores: list[np.ndarray] = []
        self._hits: list[np.ndarray] = []

    def update_prepared(self, image: PreparedImage) -> dict[str, int]:
        """Match one image's components to its boxes; returns its box counts."""
        pred_boxes, scores = mask_to_boxes(
            image.predicted_change, image.change_probability, min_area=self.min_area,
            score=self.score, merge_distance=self.merge_distance, connectivity=self.connectivity,
            split_depth=self.split_depth, split_cover=self.split_cover, grow=self.grow)
        if image.boxes is not None:
            truth = image.boxes[:, :4]
        else:
            truth, _ = mask_to_boxes(image.true_change, connectivity=self.connectivity)
            self._from_mask += 1
        hits = match_boxes(pred_boxes, scores, truth, self.iou_threshold)
        matched = int(hits.sum())
        self._tp += matched
        self._pred += len(pred_boxes)
        self._gt += len(truth)
        self._images += 1
        self._scores.append(scores)
        self._hits.append(hits)
        return {"gt_boxes": len(truth), "pred_boxes": len(pred_boxes), "matched_boxes": matched}

    def compute(self) -> dict[str, Any]:
        """Precision, recall, F-score and AP of boxes over the set, with the counts."""
        precision = ratio(self._tp, self._pred)
        recall = ratio(self._tp, self._gt)
        scores = np.concatenate(self._scores) if self._scores else np.zeros(0)
        hits = np.concatenate(self._hits) if self._hits else np.zeros(0, dtype=bool)
        return {
            "protocol": self.name,
            "images": self._images,
            "threshold": self.threshold,
            "precision": precision,
            "recall": recall,
            "f1": ratio(2 * precision * recall, precision + recall),
            "ap": average_precision(scores, hits, self._gt),
            "counts": {"matched": self._tp, "predicted": self._pred, "ground_truth": self._gt},
            "images_boxes_from_mask": self._from_mask,
            "iou_threshold": self.iou_threshold,
            "min_area": self.min_area,
            "score": self.score,
            "merge_distance": self.merge_distance,
            "connectivity": self.connectivity,
            "split_depth": self.split_depth,
            "split_cover": self.split_cover,
            "grow": self.grow,
        }


class ThresholdSweep(_MetricBase):
    """TP/FP/FN at every threshold of a grid, from streaming probability histograms.

    The grid is ``num_thresholds`` evenly spaced values from 0 to 1 (101 → 0.00, 0.01, …,
    1.00). Each valid pixel's change probability ``p`` is put in the bin of the largest grid
    threshold ``t_k <= p``, separately for changed and unchanged pixels; a pixel is predicted
    changed at ``t_k`` when ``p >= t_k``, so ``TP(t_k)`` is the number of changed pixels in
    bins ``k`` and above. Memory is two integer arrays whatever the data set's size, and the
    counts are exact at the grid thresholds.

    ``compute`` gives precision, recall and F1 at every grid threshold (precision is 1 where
    nothing is predicted, the usual end point of a PR curve), the best-F1 threshold (the lowest
    one reaching the maximum, with the range of thresholds that tie), the average precision
    (area under the stepwise PR curve on this grid), and separately the F1 of the model's own
    prediction (threshold ``threshold`` for binary tasks, the argmax for multi-class ones).
    When several grid thresholds reach the same best F1, ``best_threshold`` is the one nearest
    the model's own threshold (so a model already at its best is told so), and
    ``best_threshold_range`` gives the lowest and highest of them.
    """

    name = "sweep"

    def __init__(self, threshold: float = 0.5, num_thresholds: int = 101) -> None:
        super().__init__(threshold)
        if num_thresholds < 2:
            raise InputError(f"num_thresholds must be at least 2, got {num_thresholds}")
        n = int(num_thresholds)
        self.thresholds = np.arange(n) / (n - 1)  # exactly k/(n-1): 0.35 is 0.35, not 0.35000…03
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        n = self.thresholds.size
        self.positive_hist = np.zeros(n, dtype=np.int64)
        self.negative_hist = np.zeros(n, dtype=np.int64)
        self._own = np.zeros(3, dtype=np.int64)  # tp, fp, fn of the model's own prediction
        self._images = 0

    def update_prepared(self, image: PreparedImage) -> None:
        """Add one image's changed and unchanged pixel probabilities to the histograms."""
        n = self.thresholds.size
        true = image.true_change
        prob = image.change_probability
        neg_mask = image.valid & ~true
        for mask, hist in ((true, self.positive_hist), (neg_mask, self.negative_hist)):
            values = prob[mask]
            if values.size:
                bins = np.searchsorted(self.thresholds, values, side="right") - 1
                hist += np.bincount(np.clip(bins, 0, n - 1), minlength=n)
        counts = PixelCounts.of(image)
        self._own += (counts.tp, counts.fp, counts.fn)
        self._images += 1
        return None

    def curve(self) -> dict[str, np.ndarray]:
        """Arrays over the grid: thresholds, tp, fp, fn, precision, recall, f1."""
        tp = np.cumsum(self.positive_hist[::-1])[::-1]
        fp = np.cumsum(self.negative_hist[::-1])[::-1]
        fn = self.positive_hist.sum() - tp
        predicted = tp + fp
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 1.0)
            recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
            denom = 2 * tp + fp + fn
            f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        return {"thresholds": self.thresholds.copy(), "tp": tp, "fp": fp, "fn": fn,
                "precision": precision, "recall": recall, "f1": f1}

    def compute(self) -> dict[str, Any]:
        """Best-F1 threshold, F1 at the model's threshold, AP, and the full curves."""
        c = self.curve()
        f1 = c["f1"]
        ties = np.flatnonzero(np.isclose(f1, f1.max(), rtol=0, atol=1e-12))
        # among tied thresholds, the one nearest the model's own (stable: the lower on a tie)
        best = int(ties[np.argmin(np.abs(self.thresholds[ties] - self.threshold))])
        recall, precision = c["recall"], c["precision"]
        # thresholds ascending → recall non-increasing; area of the step curve
        ap = float(np.sum((recall - np.r_[recall[1:], 0.0]) * precision))
        tp, fp, fn = (int(v) for v in self._own)
        return {
            "protocol": self.name,
            "images": self._images,
            "threshold": self.threshold,
            "f1_at_threshold": ratio(2 * tp, 2 * tp + fp + fn),
            "best_threshold": float(self.thresholds[best]),
            "best_f1": float(f1[best]),
            "best_threshold_range": [float(self.thresholds[ties[0]]),
                                     float(self.thresholds[ties[-1]])],
            "best_precision": float(precision[best]),
            "best_recall": float(recall[best]),
            "average_precision": ap if self.positive_hist.sum() else None,
            "num_thresholds": int(self.thresholds.size),
            "curve": {key: value.tolist() for key, value in c.items()},
            "counts": {"positive_pixels": int(self.positive_hist.sum()),
                       "negative_pixels": int(self.negative_hist.sum())},
        }


PROTOCOLS: Mapping[str, type] = {
    "c3po": C3POMetric,
    "global": GlobalMetric,
    "boxes": BoxMetric,
    "sweep": ThresholdSweep,
}
"""Protocol name → accumulator class (a plain mapping; nothing registers itself)."""

DEFAULT_PROTOCOLS = ("c3po", "global", "sweep")
"""Run when no protocols are named (``boxes`` is added when the samples carry boxes)."""


def build_metrics(
    protocols: Sequence[str],
    threshold: float = 0.5,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Metric]:
    """Create one accumulator per protocol name, in the given order.

    Args:
        protocols: names from :data:`PROTOCOLS` (``c3po``, ``global``, ``boxes``, ``sweep``).
        threshold: the decision threshold every protocol uses.
        options: per-protocol keyword arguments, e.g.
            ``{"boxes": {"min_area": 4}, "sweep": {"num_thresholds": 256}}``.

    Raises:
        InputError: on an unknown protocol name or option.
    """
    options = dict(options or {})
    unknown = [p for p in list(protocols) + list(options) if p not in PROTOCOLS]
    if unknown:
        raise InputError(f"unknown evaluation protocol {unknown[0]!r}; "
                         f"choose from {', '.join(PROTOCOLS)}")
    metrics: dict[str, Metric] = {}
    for name in protocols:
        if name in metrics:
            continue
        try:
            metrics[name] = PROTOCOLS[name](threshold=threshold, **dict(options.get(name, {})))
        except TypeError as exc:
            raise InputError(f"bad option for protocol {name!r}: {exc}") from None
    return metrics
