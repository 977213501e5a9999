"""One image's prediction against its label, and the scores computed from pixel counts.

Every protocol (:mod:`changeseg.evaluation.metrics`) sees an image through
:func:`prepare_image`, which validates the pair once and derives what they all need.

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from changeseg.errors import InputError
from changeseg.labels import BINARY_CLASSES, IGNORE_INDEX, is_change

C3PO_EPS = 1e-7
"""The epsilon the official C-3PO code adds to every denominator (``CD_metric_torch``)."""


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


def to_numpy(array: Any) -> np.ndarray:
    """Accept numpy arrays, torch tensors (any device) and nested sequences."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def binarize(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Predicted change mask by the decision rule (:func:`changeseg.labels.is_change`), in float64.

    Comparing in float64 (not the array's float32) makes the mask agree exactly with the
    threshold sweep's counts at the same threshold.
    """
    return is_change(np.asarray(probability, dtype=np.float64), float(threshold))


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
    prob = to_numpy(probability)
    label = to_numpy(target)
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
        gt_boxes = to_numpy(boxes).astype(np.float64)
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


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or 0 when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator else 0.0


def exact_scores(tp: int, fp: int, fn: int, tn: int = 0) -> dict[str, float]:
    """Precision, recall, F1, IoU and accuracy from counts, with no epsilon (0 when undefined)."""
    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "accuracy": ratio(tp + tn, tp + fp + fn + tn),
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


def class_names_for(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """The given class names, checked against `num_classes`, or the defaults for that many classes."""
    if class_names is not None:
        names = [str(n) for n in class_names]
        if len(names) != num_classes:
            raise InputError(f"{len(names)} class names given for a {num_classes}-class task")
        return names
    if num_classes == 2:
        return list(BINARY_CLASSES)
    return [BINARY_CLASSES[0]] + [f"class_{i}" for i in range(1, num_classes)]


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
    names = class_names_for(n, class_names)
    total = m.sum()
    diag = np.diag(m)
    rows, cols = m.sum(axis=1), m.sum(axis=0)
    accuracy = ratio(diag.sum(), total)
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
