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

Conventions shared by all protocols (see ``docs/evaluation.md``):

- ``target`` holds class indices; 255 (:data:`IGNORE_INDEX`) marks pixels that are ignored
  everywhere. "Change" is any class other than 0.
- ``probability`` is H×W (the probability of change) or C×H×W class probabilities. With H×W,
  1×H×W or 2×H×W the task is binary and a pixel is predicted changed when its change
  probability is ``>= threshold``; with C > 2 classes the prediction is the argmax and the
  change probability used by the sweep and box scores is ``1 − p[0]``.
- A ratio whose denominator is zero is reported as 0 (precision, recall, F1) or ``None``
  (IoU of a class that appears nowhere, kappa when it is undefined).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from changeseg.errors import InputError

IGNORE_INDEX = 255
"""Label value of pixels that no protocol counts (padding, unlabelled borders)."""

C3PO_EPS = 1e-7
"""The epsilon the official C-3PO code adds to every denominator (``CD_metric_torch``)."""

DEEPPCB_IOU = 0.33
"""DeepPCB's box-match criterion: a detection is correct when IoU > 0.33."""


# --------------------------------------------------------------------------------------------
# One image, prepared once and shared by every protocol
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedImage:
    """One image's prediction and label, validated and in the form every protocol uses.

    Attributes:
        name: the sample's name (for per-image rows and worst-image panels).
        change_probability: H×W float64 in [0, 1], the probability of "any change".
        prediction: H×W int64 predicted class indices (binary tasks: 0/1).
        target: H×W int64 class indices, with :data:`IGNORE_INDEX` for ignored pixels.
        valid: H×W bool, ``target != IGNORE_INDEX``.
        num_classes: 2 for binary change, C for C-class probabilities.
        threshold: the threshold the prediction was made with (binary tasks).
        boxes: ground-truth boxes ``N×4+`` (x1, y1, x2, y2, ...; inclusive pixel corners) or
            None.
    """

    name: str
    change_probability: np.ndarray
    prediction: np.ndarray
    target: np.ndarray
    valid: np.ndarray
    num_classes: int
    threshold: float
    boxes: np.ndarray | None = None

    @property
    def predicted_change(self) -> np.ndarray:
        """H×W bool: predicted as any change class, on valid pixels only."""
        return (self.prediction != 0) & self.valid

    @property
    def true_change(self) -> np.ndarray:
        """H×W bool: labelled as any change class, on valid pixels only."""
        return (self.target != 0) & self.valid


def _to_numpy(array: Any) -> np.ndarray:
    """Accept numpy arrays, torch tensors (any device) and nested sequences."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def binarize(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Predicted change mask: ``probability >= threshold``, compared in float64.

    Comparing in float64 (not the array's float32) makes the mask agree exactly with the
    threshold sweep's counts at the same threshold.
    """
    return np.asarray(probability, dtype=np.float64) >= float(threshold)


def prepare_image(
    probability: Any,
    target: Any,
    threshold: float = 0.5,
    name: str = "",
    boxes: Any = None,
    typed_by_threshold: bool = False,
) -> PreparedImage:
    """Validate one prediction/label pair and derive what every protocol needs.

    Args:
        probability: H×W change probability, or C×H×W class probabilities (C = 1 or 2 is
            binary: the change probability is the last channel; C > 2 is multi-class and the
            prediction is the argmax).
        target: H×W class indices (uint8), 255 = ignored. A leading axis of size 1 is dropped.
        threshold: binary decision threshold (``probability >= threshold`` is change).
        name: the sample's name.
        boxes: optional ground-truth boxes, ``N×4`` or ``N×5`` (x1, y1, x2, y2[, class]) with
            inclusive pixel corners (the changeseg sample convention).
        typed_by_threshold: multi-class predictions as changeseg's predictor makes them —
            class 0 where the change probability ``1 − p(class 0)`` is below `threshold`,
            elsewhere the most likely of the other classes — instead of the plain argmax of
            the official code.

    Raises:
        InputError: on mismatched shapes, probabilities outside [0, 1], or label values that
            are neither a class index nor 255 (e.g. an unconverted 0/255 mask of a
            multi-class task).
    """
    prob = _to_numpy(probability)
    label = _to_numpy(target)
    if label.ndim == 3 and label.shape[0] == 1:
        label = label[0]
    if label.ndim == 3 and label.shape[2] == 1:
        label = label[:, :, 0]
    if label.ndim != 2:
        raise InputError(f"{name or 'mask'}: expected an H×W label mask, got shape {label.shape}")
    if label.dtype == np.bool_:
        label = label.astype(np.uint8)
    if not np.issubdtype(label.dtype, np.integer):
        raise InputError(f"{name or 'mask'}: label masks must hold integer class indices, "
                         f"got dtype {label.dtype}")
    label = label.astype(np.int64, copy=False)

    if prob.ndim == 3 and prob.shape[0] == 1:
        prob = prob[0]
    if prob.ndim == 2:
        num_classes = 2
        change = prob.astype(np.float64)
    elif prob.ndim == 3 and prob.shape[0] == 2:
        num_classes = 2
        change = prob[1].astype(np.float64)
    elif prob.ndim == 3 and prob.shape[0] > 2:
        num_classes = int(prob.shape[0])
        change = 1.0 - prob[0].astype(np.float64)
    else:
        raise InputError(f"{name or 'prediction'}: expected an H×W or C×H×W probability map, "
                         f"got shape {prob.shape}")
    if change.shape != label.shape:
        raise InputError(f"{name or 'prediction'}: probability map is {change.shape[0]}×"
                         f"{change.shape[1]} but the mask is {label.shape[0]}×{label.shape[1]}")
    if not np.all(np.isfinite(change)):
        raise InputError(f"{name or 'prediction'}: probability map holds NaN or infinity")
    tolerance = 1e-4  # float32 softmax outputs may overshoot 1 by a rounding error
    if change.size and (change.min() < -tolerance or change.max() > 1 + tolerance):
        raise InputError(f"{name or 'prediction'}: probabilities must lie in [0, 1], got "
                         f"[{change.min():.4g}, {change.max():.4g}] (pass probabilities, "
                         f"not logits)")
    change = np.clip(change, 0.0, 1.0)

    valid = label != IGNORE_INDEX
    bad = valid & ((label < 0) | (label >= num_classes))
    if bad.any():
        values = np.unique(label[bad])[:5].tolist()
        raise InputError(f"{name or 'mask'}: label values {values} are not class indices of a "
                         f"{num_classes}-class task (0..{num_classes - 1}, 255 = ignore); "
                         f"convert 0/255 masks to 0/1")

    if num_classes == 2:
        prediction = binarize(change, threshold).astype(np.int64)
    elif typed_by_threshold:
        prediction = np.where(binarize(change, threshold), np.argmax(prob[1:], axis=0) + 1, 0)
        prediction = prediction.astype(np.int64)
    else:
        prediction = np.argmax(prob, axis=0).astype(np.int64)

    gt_boxes = None
    if boxes is not None:
        gt_boxes = _to_numpy(boxes).astype(np.float64)
        if gt_boxes.size == 0:
            gt_boxes = gt_boxes.reshape(0, 4)
        elif gt_boxes.ndim == 1:
            gt_boxes = gt_boxes.reshape(1, -1)
        if gt_boxes.ndim != 2 or gt_boxes.shape[1] < 4:
            raise InputError(f"{name or 'boxes'}: boxes must be N×4 or N×5 "
                             f"(x1, y1, x2, y2[, class]), got shape {gt_boxes.shape}")
    return PreparedImage(
        name=name,
        change_probability=change,
        prediction=prediction,
        target=label,
        valid=valid,
        num_classes=num_classes,
        threshold=float(threshold),
        boxes=gt_boxes,
    )


@dataclass(frozen=True)
class PixelCounts:
    """Binary change counts of one image (valid pixels only)."""

    tp: int
    fp: int
    fn: int
    tn: int
    ignored: int

    @classmethod
    def of(cls, image: PreparedImage) -> PixelCounts:
        """Count TP/FP/FN/TN of "any change" against the label, skipping ignored pixels."""
        pred = image.predicted_change
        true = image.true_change
        tp = int(np.count_nonzero(pred & true))
        fp = int(np.count_nonzero(pred & ~true))
        fn = int(np.count_nonzero(~pred & true))
        valid = int(np.count_nonzero(image.valid))
        return cls(tp=tp, fp=fp, fn=fn, tn=valid - tp - fp - fn, ignored=image.valid.size - valid)


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or 0 when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator else 0.0


def exact_scores(tp: int, fp: int, fn: int, tn: int = 0) -> dict[str, float]:
    """Precision, recall, F1, IoU and accuracy from counts, with no epsilon (0 when undefined)."""
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
    }


def c3po_image_scores(tp: int, fp: int, fn: int, tn: int, eps: float = C3PO_EPS) -> dict[str, float]:
    """One image's precision, recall, accuracy and F1 as the official C-3PO code computes them.

    Mirrors ``CD_metric_torch`` in DoctorKey/C-3PO ``src/utils.py``: counts are float32, every
    denominator gets ``+ 1e-7`` (added in float32), and F1 is ``2 * R * P / (P + R + 1e-7)``
    evaluated left to right. An image with no true change therefore scores P = R = F1 = 0,
    including when nothing is predicted. Because the epsilon is added in float32 it vanishes
    in rounding once a denominator is 2 or more (a perfect image scores exactly 1), and only
    a denominator of 1 is nudged (F1 0.99999982 for a perfect one-pixel change).
    """
    f32 = np.float32
    tp32, fp32, fn32, tn32, e = f32(tp), f32(fp), f32(fn), f32(tn), f32(eps)
    precision = tp32 / (tp32 + fp32 + e)
    recall = tp32 / (tp32 + fn32 + e)
    accuracy = (tp32 + tn32) / (tp32 + fp32 + fn32 + tn32 + e)
    f1 = f32(2) * recall * precision / (precision + recall + e)
    return {"precision": float(precision), "recall": float(recall),
            "accuracy": float(accuracy), "f1": float(f1)}


def _class_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is not None:
        names = [str(n) for n in class_names]
        if len(names) != num_classes:
            raise InputError(f"{len(names)} class names given for a {num_classes}-class task")
        return names
    if num_classes == 2:
        return ["unchanged", "changed"]
    return ["unchanged"] + [f"class_{i}" for i in range(1, num_classes)]


def confusion_scores(matrix: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Standard scores from a confusion matrix ``M[true, predicted]``.

    Returns overall accuracy, Cohen's kappa (``(p_o − p_e) / (1 − p_e)`` with
    ``p_e = Σ_k row_k · col_k / N²``; None when ``p_e = 1``), per-class IoU
    (``M[k,k] / (row_k + col_k − M[k,k])``, None for a class absent from both label and
    prediction), mIoU over the classes whose IoU is defined, and the binary change scores
    (class 0 against all others together): precision, recall, F1, IoU.
    """
    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    names = _class_names(n, class_names)
    total = m.sum()
    diag = np.diag(m)
    rows, cols = m.sum(axis=1), m.sum(axis=0)
    accuracy = _ratio(diag.sum(), total)
    if total:
        expected = float((rows * cols).sum()) / (total * total)
        kappa = None if expected >= 1.0 else (accuracy - expected) / (1.0 - expected)
    else:
        kappa = None
    union = rows + cols - diag
    per_class = {names[k]: (float(diag[k] / union[k]) if union[k] else None) for k in range(n)}
    defined = [v for v in per_class.values() if v is not None]
    tp = float(m[1:, 1:].sum())
    fp = float(m[0, 1:].sum())
    fn = float(m[1:, 0].sum())
    tn = float(m[0, 0])
    change = exact_scores(tp, fp, fn, tn)
    return {
        "precision": change["precision"],
        "recall": change["recall"],
        "f1": change["f1"],
        "iou": change["iou"],
        "overall_accuracy": accuracy,
        "kappa": kappa,
        "per_class_iou": per_class,
        "miou": float(np.mean(defined)) if defined else None,
        "counts": {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn),
                   "pixels": int(total)},
    }


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
            names = _class_names(m.shape[0], self.class_names)
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
    _count, labels, _stats, _centroids = cv2.connectedComponentsWithStats(
        source, connectivity=connectivity, ltype=cv2.CV_32S)
    boxes, areas, scores = _group_components(binary, labels, prob, score)
    keep = areas >= max(int(min_area), 1)
    return boxes[keep], scores[keep]


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


def _voc_average_precision(scores: np.ndarray, hits: np.ndarray, positives: int) -> float | None:
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
    """

    name = "boxes"

    def __init__(self, threshold: float = 0.5, iou_threshold: float = DEEPPCB_IOU,
                 min_area: int = 0, score: str = "mean", merge_distance: int = 0,
                 connectivity: int = 8) -> None:
        super().__init__(threshold)
        if score not in ("mean", "max"):
            raise InputError(f"box score must be 'mean' or 'max', got {score!r}")
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
            score=self.score, merge_distance=self.merge_distance, connectivity=self.connectivity)
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
        precision = _ratio(self._tp, self._pred)
        recall = _ratio(self._tp, self._gt)
        scores = np.concatenate(self._scores) if self._scores else np.zeros(0)
        hits = np.concatenate(self._hits) if self._hits else np.zeros(0, dtype=bool)
        return {
            "protocol": self.name,
            "images": self._images,
            "threshold": self.threshold,
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "ap": _voc_average_precision(scores, hits, self._gt),
            "counts": {"matched": self._tp, "predicted": self._pred, "ground_truth": self._gt},
            "images_boxes_from_mask": self._from_mask,
            "iou_threshold": self.iou_threshold,
            "min_area": self.min_area,
            "score": self.score,
            "merge_distance": self.merge_distance,
            "connectivity": self.connectivity,
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
            "f1_at_threshold": _ratio(2 * tp, 2 * tp + fp + fn),
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
