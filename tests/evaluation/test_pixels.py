"""One image against its label: preparation, per-image scores and confusion scores, against hand values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from changeseg.evaluation.pixels import c3po_image_scores, confusion_scores, prepare_image
from tests.evaluation.hand_cases import LABEL_A, PROB_A

approx = pytest.approx


def test_c3po_image_scores_hand_values() -> None:
    s = c3po_image_scores(tp=3, fp=1, fn=2, tn=10)
    assert s["precision"] == approx(0.75, abs=1e-6)
    assert s["recall"] == approx(0.6, abs=1e-6)
    assert s["f1"] == approx(2 / 3, abs=1e-6)
    assert s["accuracy"] == approx(13 / 16, abs=1e-6)


def test_c3po_empty_image_scores_zero() -> None:
    # no true change, nothing predicted: 0/(0+1e-7) = 0 for P and R, so F1 = 0/(0+0+1e-7) = 0
    s = c3po_image_scores(tp=0, fp=0, fn=0, tn=16)
    assert s["precision"] == 0.0 and s["recall"] == 0.0 and s["f1"] == 0.0
    assert s["accuracy"] == approx(1.0, abs=1e-6)
    # no true change but false alarms: also 0
    assert c3po_image_scores(tp=0, fp=5, fn=0, tn=11)["f1"] == 0.0


def test_c3po_epsilon_is_float32() -> None:
    # the epsilon is added in float32: 10 + 1e-7 rounds back to 10, so a perfect image with
    # 10 changed pixels scores exactly 1; with a single changed pixel 1 + 1e-7 is representable
    # (1.00000012) and F1 stays just below 1
    assert c3po_image_scores(tp=10, fp=0, fn=0, tn=6)["f1"] == 1.0
    f1 = c3po_image_scores(tp=1, fp=0, fn=0, tn=15)["f1"]
    assert f1 < 1.0
    assert f1 == approx(1.0, abs=1e-6)


@pytest.mark.parametrize("counts", [(3, 1, 2, 10), (0, 0, 0, 16), (10, 0, 0, 6), (1, 7, 0, 1),
                                    (123456, 789, 1011, 5_000_000)])
def test_c3po_matches_float32_torch_arithmetic_bit_for_bit(counts: tuple[int, ...]) -> None:
    # the official code does the same arithmetic on float32 torch tensors
    tp, fp, fn, tn = (torch.tensor([float(c)], dtype=torch.float32) for c in counts)
    precision = tp / (tp + fp + 1e-7)
    recall = tp / (tp + fn + 1e-7)
    f1 = 2 * recall * precision / (precision + recall + 1e-7)
    ours = c3po_image_scores(*counts)
    assert ours["precision"] == precision.item()
    assert ours["recall"] == recall.item()
    assert ours["f1"] == f1.item()


def test_confusion_scores_undefined_kappa() -> None:
    # everything one class in both label and prediction: p_e = 1, kappa undefined
    r = confusion_scores(np.array([[7, 0], [0, 0]]))
    assert r["kappa"] is None
    assert r["overall_accuracy"] == 1.0
    assert r["per_class_iou"]["changed"] is None
    assert r["f1"] == 0.0


def test_two_channel_probabilities_are_binary_and_thresholded() -> None:
    prob = np.stack([1 - PROB_A, PROB_A])
    image = prepare_image(prob, LABEL_A, threshold=0.5)
    assert image.num_classes == 2
    assert int(image.prediction.sum()) == 4
    image = prepare_image(torch.from_numpy(prob).float(), torch.from_numpy(LABEL_A), 0.95)
    assert int(image.prediction.sum()) == 0


def test_typed_predictions_by_threshold_follow_the_predictor():
    # p(unchanged) 0.6 → the argmax says "unchanged", but at threshold 0.3 the pixel changed
    # and its type is the most likely change class (exchange)
    probs = np.array([[0.6, 0.9], [0.1, 0.02], [0.05, 0.03], [0.25, 0.05]])[:, None, :]
    label = np.array([[3, 0]])
    argmax = prepare_image(probs, label, 0.3)
    typed = prepare_image(probs, label, 0.3, typed_by_threshold=True)
    assert argmax.prediction.tolist() == [[0, 0]]
    assert typed.prediction.tolist() == [[3, 0]]
    assert prepare_image(probs, label, 0.5, typed_by_threshold=True).prediction.tolist() == [[0, 0]]
