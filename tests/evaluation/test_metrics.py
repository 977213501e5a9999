"""Evaluation protocols (the streaming accumulators) against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from changeseg.errors import InputError
from changeseg.evaluation.metrics import BoxMetric, C3POMetric, GlobalMetric, ThresholdSweep, build_metrics
from changeseg.evaluation.pixels import prepare_image
from tests.evaluation.hand_cases import LABEL_A, LABEL_B, PROB_A, PROB_B

approx = pytest.approx


def test_c3po_metric_averages_over_images_including_empty_ones() -> None:
    metric = C3POMetric(threshold=0.5)
    assert metric.update(PROB_A, LABEL_A, name="a") == {"c3po_f1": approx(2 / 3, abs=1e-6)}
    metric.update(PROB_B, LABEL_B, name="b")
    result = metric.compute()
    # (2/3 + 0) / 2, (3/4 + 0) / 2, (3/5 + 0) / 2
    assert result["f1"] == approx(1 / 3, abs=1e-6)
    assert result["precision"] == approx(0.375, abs=1e-6)
    assert result["recall"] == approx(0.3, abs=1e-6)
    assert result["accuracy"] == approx((13 / 16 + 1) / 2, abs=1e-6)
    assert result["images"] == 2 and result["images_without_change"] == 1
    assert [r["name"] for r in metric.records] == ["a", "b"]
    # official mIoU from the set's confusion matrix [[26, 1], [2, 3]]: (26/29 + 3/6) / 2
    assert result["miou"] == approx((26 / 29 + 0.5) / 2)


def test_global_binary_hand_values() -> None:
    # images A and B together: TP = 3, FP = 1, FN = 2, TN = 10 + 16 = 26, N = 32
    metric = GlobalMetric()
    metric.update(PROB_A, LABEL_A)
    metric.update(PROB_B, LABEL_B)
    r = metric.compute()
    assert r["counts"] == {"tp": 3, "fp": 1, "fn": 2, "tn": 26, "pixels": 32, "ignored": 0}
    assert r["confusion_matrix"] == [[26, 1], [2, 3]]
    assert r["precision"] == approx(3 / 4)
    assert r["recall"] == approx(3 / 5)
    assert r["f1"] == approx(2 / 3)  # global F1 2/3 against the c3po mean 1/3 above
    assert r["iou"] == approx(1 / 2)
    assert r["overall_accuracy"] == approx(29 / 32)
    # kappa: p_o = 29/32; rows (27, 5), columns (28, 4): p_e = (27·28 + 5·4)/32² = 776/1024
    # (29/32 − 776/1024) / (1 − 776/1024) = 152/248 = 19/31
    assert r["kappa"] == approx(19 / 31)
    # IoU unchanged = 26/(27+28−26) = 26/29, changed = 3/(5+4−3) = 1/2
    assert r["per_class_iou"] == {"unchanged": approx(26 / 29), "changed": approx(0.5)}
    assert r["miou"] == approx((26 / 29 + 0.5) / 2)


def test_ignored_pixels_are_left_out_everywhere() -> None:
    # image A with the FP pixel (0,3) and one FN pixel (1,0) marked 255:
    # TP = 3, FP = 0, FN = 1, TN = 14 − 4 = 10, two ignored
    label = LABEL_A.copy()
    label[0, 3] = 255
    label[1, 0] = 255
    metrics = build_metrics(["c3po", "global", "sweep"], threshold=0.5)
    for metric in metrics.values():
        metric.update(PROB_A, label)
    g = metrics["global"].compute()
    assert g["counts"] == {"tp": 3, "fp": 0, "fn": 1, "tn": 10, "pixels": 14, "ignored": 2}
    c = metrics["c3po"].compute()
    assert c["precision"] == approx(1.0, abs=1e-6)
    assert c["recall"] == approx(0.75, abs=1e-6)
    s = metrics["sweep"].compute()
    assert s["counts"] == {"positive_pixels": 4, "negative_pixels": 10}
    assert s["f1_at_threshold"] == approx(6 / 7)  # 2·3 / (2·3 + 0 + 1)


MULTI_LABEL = np.array([[0, 1, 2], [0, 1, 2]], np.uint8)
MULTI_PREDICTION = np.array([[0, 1, 1], [2, 1, 2]])


def _peaked(prediction: np.ndarray, classes: int, low: float, high: float) -> np.ndarray:
    """C×H×W class probabilities whose argmax is `prediction` (`high` there, `low` elsewhere)."""
    prob = np.full((classes, *prediction.shape), low)
    np.put_along_axis(prob, prediction[None], high, axis=0)
    return prob


def test_multiclass_global_hand_values_and_torchmetrics_agree() -> None:
    # label      prediction (argmax)   M[true, pred]
    # 0 1 2      0 1 1                 [[1, 0, 1],
    # 0 1 2      2 1 2                  [0, 2, 0],
    #                                   [0, 1, 1]]
    label, pred = MULTI_LABEL, MULTI_PREDICTION
    prob = _peaked(pred, 3, 0.1, 0.8)
    metric = GlobalMetric(class_names=["none", "appear", "disappear"])
    metric.update(prob, label)
    r = metric.compute()
    assert r["confusion_matrix"] == [[1, 0, 1], [0, 2, 0], [0, 1, 1]]
    # OA = 4/6; rows (2, 2, 2), cols (1, 3, 2): p_e = (2 + 6 + 4)/36 = 1/3; kappa = (2/3−1/3)/(2/3)
    assert r["overall_accuracy"] == approx(4 / 6)
    assert r["kappa"] == approx(0.5)
    # IoU: 1/(2+1−1), 2/(2+3−2), 1/(2+2−1)
    assert r["per_class_iou"] == {"none": approx(1 / 2), "appear": approx(2 / 3),
                                  "disappear": approx(1 / 3)}
    assert r["miou"] == approx(0.5)
    # change = any class but 0: TP = 4, FP = M[0,1:] = 1, FN = M[1:,0] = 0
    assert (r["precision"], r["recall"], r["f1"]) == (approx(4 / 5), approx(1.0), approx(8 / 9))

    from torchmetrics.functional.classification import multiclass_cohen_kappa, multiclass_jaccard_index

    t, p = torch.from_numpy(label.ravel().astype(np.int64)), torch.from_numpy(pred.ravel())
    assert r["kappa"] == approx(multiclass_cohen_kappa(p, t, num_classes=3).item(), abs=1e-6)
    iou = multiclass_jaccard_index(p, t, num_classes=3, average="none").tolist()
    assert list(r["per_class_iou"].values()) == approx(iou, abs=1e-6)


def test_absent_class_miou_global_versus_official() -> None:
    # same as above with a 4th class that never occurs in label or prediction:
    # global mIoU averages the 3 defined IoUs (0.5); the official C-3PO ConfusionMatrix counts
    # the absent class as 0 and divides by 4: (1/2 + 2/3 + 1/3 + 0) / 4 = 0.375
    label = MULTI_LABEL
    prob = _peaked(MULTI_PREDICTION, 4, 0.05, 0.85)
    g, c = GlobalMetric(), C3POMetric()
    g.update(prob, label)
    c.update(prob, label)
    assert g.compute()["per_class_iou"]["class_3"] is None
    assert g.compute()["miou"] == approx(0.5)
    assert c.compute()["miou"] == approx(0.375)
    assert c.compute()["per_class_iou"]["class_3"] == 0.0


def test_bad_inputs_raise_input_error() -> None:
    with pytest.raises(InputError, match="mask is 4×4"):
        prepare_image(np.zeros((3, 4)), LABEL_A)
    with pytest.raises(InputError, match="not logits"):
        prepare_image(PROB_A * 10, LABEL_A)
    with pytest.raises(InputError, match="0/255"):
        prepare_image(PROB_A, LABEL_A * 7)
    with pytest.raises(InputError, match="unknown evaluation protocol"):
        build_metrics(["c3po", "nope"])
    with pytest.raises(InputError, match="bad option"):
        build_metrics(["boxes"], options={"boxes": {"colour": 1}})


def test_box_metric_hand_values() -> None:
    # 10×20 image, ground truth (inclusive corners) A = [0,0,3,3], B = [10,0,13,3],
    # C = [0,6,1,7] (class column ignored). Predicted components: rows 0–3 × cols 0–3 →
    # [0,0,3,3], IoU(A) = 1, match; rows 0–1 × cols 10–13 → [10,0,13,1], IoU(B) = 8/16 = 0.5,
    # match; rows 6–7 × cols 16–17 → [16,6,17,7], no overlap: a false alarm. C is missed.
    # P = 2/3, R = 2/3, F = 2/3.
    truth = np.array([[0, 0, 3, 3, 1], [10, 0, 13, 3, 2], [0, 6, 1, 7, 5]])
    prob = np.zeros((10, 20))
    prob[0:4, 0:4] = 0.9
    prob[0:2, 10:14] = 0.8
    prob[6:8, 16:18] = 0.7
    label = np.zeros((10, 20), np.uint8)
    metric = BoxMetric()
    per_image = metric.update(prob, label, name="pcb", boxes=truth)
    assert per_image == {"gt_boxes": 3, "pred_boxes": 3, "matched_boxes": 2}
    r = metric.compute()
    assert (r["precision"], r["recall"], r["f1"]) == (approx(2 / 3), approx(2 / 3), approx(2 / 3))
    assert r["counts"] == {"matched": 2, "predicted": 3, "ground_truth": 3}
    # ranked by score: 0.9 hit, 0.8 hit, 0.7 miss → precision 1 up to recall 2/3: AP = 2/3
    assert r["ap"] == approx(2 / 3)
    # a second image with no defects: its one predicted box is a false alarm
    metric.update(prob[:, :10] * (prob[:, :10] > 0.85), np.zeros((10, 10), np.uint8),
                  boxes=np.zeros((0, 5)))
    r = metric.compute()
    assert r["counts"] == {"matched": 2, "predicted": 4, "ground_truth": 3}
    assert r["precision"] == approx(2 / 4)


def test_box_metric_falls_back_to_label_components() -> None:
    label = np.zeros((8, 8), np.uint8)
    label[1:3, 1:3] = 1
    label[5:7, 5:7] = 1
    prob = label.astype(float) * 0.9
    metric = BoxMetric()
    assert metric.update(prob, label) == {"gt_boxes": 2, "pred_boxes": 2, "matched_boxes": 2}
    assert metric.compute()["images_boxes_from_mask"] == 1


def test_box_metric_split_depth_scores_two_overlapping_defects_as_two() -> None:
    # two defects whose boxes overlap (8×8 px): their mask is one component, one box
    # [2,2,33,33] with IoU 400/1024 ≈ 0.39 against each: one match of two. Split, the two
    # pieces' boxes are the defects' own boxes: two matches.
    truth = np.array([[2, 2, 21, 21], [14, 14, 33, 33]])
    prob = np.zeros((40, 40))
    prob[2:22, 2:22] = 0.9
    prob[14:34, 14:34] = 0.9
    label = np.zeros((40, 40), np.uint8)
    whole, split = BoxMetric(), BoxMetric(split_depth=2)
    assert whole.update(prob, label, boxes=truth) == {"gt_boxes": 2, "pred_boxes": 1, "matched_boxes": 1}
    assert split.update(prob, label, boxes=truth) == {"gt_boxes": 2, "pred_boxes": 2, "matched_boxes": 2}
    assert (whole.compute()["recall"], whole.compute()["f1"]) == (approx(0.5), approx(2 / 3))
    r = split.compute()
    assert (r["precision"], r["recall"], r["f1"]) == (1.0, 1.0, 1.0)
    assert (r["split_depth"], r["split_cover"]) == (2.0, 1.0)
    with pytest.raises(InputError, match="split depth"):
        BoxMetric(split_depth=-1)


# --- threshold sweep ------------------------------------------------------------------------


def test_sweep_best_threshold_constructed_case() -> None:
    # changed pixels p = 0.9, 0.8, 0.35; unchanged p = 0.7, 0.2, 0.1, 0.05 (grid 0.00..1.00)
    #   t in (0.80, 0.90]: TP 1 FP 0 FN 2 → F1 2/4
    #   t in (0.70, 0.80]: TP 2 FP 0 FN 1 → F1 4/5
    #   t in (0.35, 0.70]: TP 2 FP 1 FN 1 → F1 4/6
    #   t in (0.20, 0.35]: TP 3 FP 1 FN 0 → F1 6/7   ← best, grid 0.21 … 0.35
    #   t in (0.10, 0.20]: TP 3 FP 2      → F1 6/8
    # the model's threshold 0.5 gives F1 4/6; the best tied threshold nearest 0.5 is 0.35
    label = np.array([[1, 1, 1, 0, 0, 0, 0]], np.uint8)
    prob = np.array([[0.9, 0.8, 0.35, 0.7, 0.2, 0.1, 0.05]])
    sweep = ThresholdSweep(threshold=0.5)
    sweep.update(prob, label)
    r = sweep.compute()
    assert r["best_f1"] == approx(6 / 7)
    assert r["best_threshold"] == 0.35
    assert r["best_threshold_range"] == [0.21, 0.35]
    assert r["f1_at_threshold"] == approx(4 / 6)
    curve = r["curve"]
    assert curve["f1"][75] == approx(4 / 5) and curve["f1"][85] == approx(2 / 4)
    assert curve["precision"][95] == 1.0 and curve["recall"][95] == 0.0  # nothing predicted
    # AP on the grid: recall drops 1→2/3 at 0.35 (P 3/4), 2/3→1/3 at 0.80 (P 1), 1/3→0 at 0.90
    # (P 1): 1/3·3/4 + 1/3 + 1/3 = 11/12
    assert r["average_precision"] == approx(11 / 12)


def test_sweep_matches_thresholded_counts_exactly(rng: np.random.Generator) -> None:
    # streaming histograms give the same F1 as thresholding each image, at every grid value
    images = [(rng.random((32, 32)).astype(np.float32), (rng.random((32, 32)) > 0.7)
               .astype(np.uint8)) for _ in range(3)]
    images[0][1][:2] = 255
    sweep = ThresholdSweep(threshold=0.5, num_thresholds=21)
    for prob, label in images:
        sweep.update(prob, label)
    f1 = sweep.compute()["curve"]["f1"]
    for k in (0, 7, 10, 13, 20):
        metric = GlobalMetric(threshold=k / 20)
        for prob, label in images:
            metric.update(prob, label)
        assert f1[k] == approx(metric.compute()["f1"], abs=1e-12)
    assert sweep.compute()["f1_at_threshold"] == approx(f1[10], abs=1e-12)


def test_sweep_multiclass_uses_one_minus_background() -> None:
    # 3 classes; change probability = 1 − p[0]
    prob = np.array([[[0.25, 0.75]], [[0.5, 0.125]], [[0.25, 0.125]]])  # (3, 1, 2)
    label = np.array([[2, 0]], np.uint8)
    sweep = ThresholdSweep(threshold=0.5)
    sweep.update(prob, label)
    r = sweep.compute()
    # changed pixel p = 0.75, unchanged p = 0.25: perfect from 0.26 to 0.75
    assert r["best_f1"] == 1.0 and r["best_threshold_range"] == [0.26, 0.75]
    assert r["best_threshold"] == 0.5
    # the model's own prediction is the argmax: class 1 at the changed pixel → change → F1 = 1
    assert r["f1_at_threshold"] == 1.0


def test_c3po_mean_is_a_float32_running_total(rng: np.random.Generator) -> None:
    # the official SmoothedValue total turns into a float32 tensor after its first addition
    metric = C3POMetric()
    total = 0.0
    for _ in range(5):
        label = (rng.random((16, 16)) > 0.6).astype(np.uint8)
        prob = rng.random((16, 16))
        metric.update(prob, label)
        counts = [float(c) for c in _counts(prob >= 0.5, label == 1)]
        tp, fp, fn, _tn = (torch.tensor(c, dtype=torch.float32) for c in counts)
        p, r = tp / (tp + fp + 1e-7), tp / (tp + fn + 1e-7)
        total += 2 * r * p / (p + r + 1e-7)  # python float + float32 tensor → float32 tensor
    assert metric.compute()["f1"] == (total / 5).item()


def _counts(pred: np.ndarray, true: np.ndarray) -> tuple[int, int, int, int]:
    return (int((pred & true).sum()), int((pred & ~true).sum()), int((~pred & true).sum()),
            int((~pred & ~true).sum()))
