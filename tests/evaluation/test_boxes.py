"""Boxes from masks, box IoU, matching and average precision against hand values."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.box_grow import grow_boxes
from changeseg.errors import InputError
from changeseg.evaluation.boxes import average_precision, box_iou, mask_to_boxes, match_boxes

approx = pytest.approx


def test_box_iou_hand_values() -> None:
    # inclusive corners: [0,0,3,3] covers 4×4 = 16 pixels
    a = np.array([[0, 0, 3, 3]])
    b = np.array([[2, 0, 5, 3], [10, 10, 12, 12], [0, 0, 3, 3], [3, 3, 3, 3]])
    # columns 2–3 × rows 0–3 = 8 shared, union 16+16−8 = 24 → 1/3; disjoint → 0; same → 1;
    # the single corner pixel (3,3) → 1/16
    assert box_iou(a, b)[0].tolist() == approx([1 / 3, 0.0, 1.0, 1 / 16])


def test_match_boxes_is_greedy_by_score_and_strict() -> None:
    truth = np.array([[0, 0, 9, 9]])  # 100 pixels
    loose = [0, 0, 9, 4]  # 50 pixels inside it: IoU 0.5
    tight = [0, 0, 9, 8]  # 90 pixels: IoU 0.9
    preds = np.array([loose, tight], float)
    # the higher score goes first and takes the only ground-truth box, even with lower IoU
    assert match_boxes(preds, np.array([0.9, 0.6]), truth).tolist() == [True, False]
    assert match_boxes(preds, np.array([0.6, 0.9]), truth).tolist() == [False, True]
    # IoU exactly 1/3 passes "> 0.33" but not "> 1/3"
    third = np.array([[0, 0, 1, 0]], float), np.array([[1, 0, 2, 0]], float)  # 1/(2+2−1)
    assert match_boxes(third[0], np.ones(1), third[1]).tolist() == [True]
    assert match_boxes(third[0], np.ones(1), third[1], iou_threshold=1 / 3).tolist() == [False]


def test_mask_to_boxes_scores_area_and_merging() -> None:
    mask = np.zeros((6, 14), bool)
    mask[1:3, 0:2] = True  # 4 px
    mask[1:3, 4:6] = True  # 4 px, a 2-column gap from the first
    mask[5, 13] = True  # 1 px
    prob = np.where(mask, 0.6, 0.0)
    prob[1, 4], prob[2, 5] = 1.0, 0.8  # second blob: 1.0, 0.6, 0.6, 0.8 → mean 0.75, max 1.0
    boxes, scores = mask_to_boxes(mask, prob)
    assert boxes.tolist() == [[0, 1, 1, 2], [4, 1, 5, 2], [13, 5, 13, 5]]  # inclusive corners
    assert scores.tolist() == approx([0.6, 0.75, 0.6])
    assert mask_to_boxes(mask, prob, score="max")[1].tolist() == approx([0.6, 1.0, 0.6])
    assert len(mask_to_boxes(mask, prob, min_area=2)[0]) == 2
    # a gap of 2 background columns merges at merge_distance=2, not at 1
    assert len(mask_to_boxes(mask, prob, merge_distance=1, min_area=2)[0]) == 2
    merged, merged_scores = mask_to_boxes(mask, prob, merge_distance=2, min_area=2)
    assert merged.tolist() == [[0, 1, 5, 2]]
    assert merged_scores.tolist() == approx([(0.6 * 4 + 3.0) / 8])  # original pixels only


def test_average_precision_hand_value() -> None:
    # ranked: hit, miss, hit with 3 positives → recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3;
    # envelope 1, 2/3, 2/3: AP = 1/3·1 + 0 + 1/3·2/3 = 5/9
    ap = average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 3)
    assert ap == approx(5 / 9)
    assert average_precision(np.zeros(0), np.zeros(0, bool), 0) is None


def test_mask_to_boxes_splits_overlapping_squares_only_when_asked() -> None:
    mask = np.zeros((40, 40), bool)
    mask[2:22, 2:22] = True  # two 20×20 squares overlapping by 8×8, offset diagonally
    mask[14:34, 14:34] = True
    assert mask_to_boxes(mask)[0].tolist() == [[2, 2, 33, 33]]  # default: one box
    assert mask_to_boxes(mask, split_depth=2)[0].tolist() == [[2, 2, 21, 21], [14, 14, 33, 33]]
    # too deep a split: the neck (inscribed radius ≈ 6.6) is only ≈ 3.4 px narrower than the
    # squares' centres (10)
    assert mask_to_boxes(mask, split_depth=4)[0].tolist() == [[2, 2, 33, 33]]


def test_grow_boxes_scales_about_the_centre_and_clips() -> None:
    boxes = np.array([[10, 20, 15, 23], [0, 0, 2, 2]], dtype=float)  # 6×4 and 3×3 px
    grown = grow_boxes(boxes, 2.0, (30, 40))
    # 12×8 px about the same centre (12.5, 21.5); the corner box is clipped at 0
    assert grown[0].tolist() == approx([7.0, 18.0, 18.0, 25.0])
    assert grown[1].tolist() == approx([0.0, 0.0, 3.5, 3.5])
    assert box_iou(grown[:1], boxes[:1])[0, 0] == approx(0.25)
    assert grow_boxes(boxes, 1.0, (30, 40)).tolist() == boxes.tolist()
    assert grow_boxes(np.array([[35, 25, 39, 29]], float), 3.0, (30, 40))[0].tolist() == approx(
        [30.0, 20.0, 39.0, 29.0])


def test_mask_to_boxes_grow_applies_after_min_area() -> None:
    mask = np.zeros((20, 20), bool)
    mask[8:12, 8:12] = True  # 16 px core
    mask[0, 0] = True  # 1 px
    boxes, _ = mask_to_boxes(mask, min_area=2, grow=2.0)
    assert len(boxes) == 1 and boxes[0].tolist() == approx([6.0, 6.0, 13.0, 13.0])
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(InputError, match="grow must be a number >= 1"):
            mask_to_boxes(mask, grow=bad)
