"""One decision rule everywhere: a probability equal to the threshold is change."""

from __future__ import annotations

import numpy as np
import torch

from changeseg.evaluation.calibration import f1_curve
from changeseg.evaluation.metrics import ThresholdSweep
from changeseg.evaluation.pixels import prepare_image
from changeseg.inference.result import result_from_probabilities
from changeseg.labels import BINARY_CLASSES, TYPED_CLASSES, class_names, is_change

# change probabilities 0.25, 0.5, 0.75 (exact in float32), threshold 0.5
CHANGE = np.array([[0.25, 0.5, 0.75]], np.float32)


def test_is_change_includes_the_threshold_for_arrays_tensors_and_numbers() -> None:
    assert is_change(CHANGE, 0.5).tolist() == [[False, True, True]]
    assert is_change(torch.from_numpy(CHANGE), 0.5).tolist() == [[False, True, True]]
    assert is_change(0.5, 0.5) and not is_change(0.49, 0.5)


def test_detect_and_evaluation_decide_alike_at_the_threshold() -> None:
    probs = np.stack([1 - CHANGE, CHANGE])
    detected = result_from_probabilities(probs, np.zeros((1, 3, 3), np.uint8), 0.5, 0,
                                         list(BINARY_CLASSES))
    evaluated = prepare_image(CHANGE, np.zeros((1, 3), np.uint8), threshold=0.5)
    assert detected.mask.tolist() == [[False, True, True]]
    assert evaluated.prediction.astype(bool).tolist() == detected.mask.tolist()
    # the sweep and the calibration's F1 curve count the same pixels at that threshold
    label = np.array([[0, 1, 1]], np.uint8)
    sweep = ThresholdSweep(threshold=0.5, num_thresholds=5)
    sweep.update(CHANGE, label)
    assert sweep.compute()["f1_at_threshold"] == 1.0 == sweep.curve()["f1"][2]
    assert f1_curve(CHANGE, label, [0.5])[0] == 1.0


def test_unknown_pixels_never_change_even_at_threshold_zero() -> None:
    probs = np.stack([1 - CHANGE, CHANGE])
    unknown = np.array([[True, False, False]])
    result = result_from_probabilities(probs, np.zeros((1, 3, 3), np.uint8), 0.0, 0,
                                       list(BINARY_CLASSES), unknown=unknown)
    assert result.mask.tolist() == [[False, True, True]]


def test_class_names() -> None:
    assert class_names(typed=False) == ["unchanged", "changed"]
    assert class_names(typed=True) == list(TYPED_CLASSES) == ["unchanged", "appear", "disappear", "exchange"]
