"""Losses: hand-computed weighted cross-entropy, class weights, Dice and focal values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from changeseg.errors import ConfigError
from changeseg.labels import UNTYPED_CHANGE
from changeseg.training.losses import (
    ChangeLoss,
    LossConfig,
    class_pixel_counts,
    class_weights_from_counts,
    dice_loss,
    focal_loss,
    resolve_class_weights,
    weighted_cross_entropy,
)


def _three_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """1×2×1×4 logits: p(changed) = 0.5, 0.25, 0.8, 0.5; targets 0, 1, 1, ignore."""
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [0.0, math.log(4.0)], [0.0, 0.0]])
    logits = logits.T.reshape(1, 2, 1, 4)
    target = torch.tensor([[[0, 1, 1, 255]]])
    return logits, target


def test_class_weights_binary_follow_the_official_code() -> None:
    # 3 unchanged pixels for 1 changed: unchanged weighted by the changed share and vice versa
    assert class_weights_from_counts([3, 1]) == pytest.approx([0.25, 0.75])
    assert class_weights_from_counts([90, 10]) == pytest.approx([0.1, 0.9])


def test_class_weights_multiclass_inverse_frequency() -> None:
    # inverse frequencies 10/6, 10/3, 10/1; the absent class gets the largest (10); sum 25
    weights = class_weights_from_counts([6, 3, 1, 0])
    assert weights == pytest.approx([10 / 6 / 25, 10 / 3 / 25, 10 / 25, 10 / 25])
    assert sum(weights) == pytest.approx(1.0)
    assert class_weights_from_counts([0, 0]) == [0.5, 0.5]


def test_class_pixel_counts_skip_ignore_and_reject_stray_labels() -> None:
    masks = [np.array([[0, 1], [255, 1]], np.uint8), torch.tensor([[0, 0], [0, 255]])]
    assert class_pixel_counts(masks, 2).tolist() == [4, 2]
    with pytest.raises(ConfigError, match="label"):
        class_pixel_counts([np.array([[0, 2]], np.uint8)], 2)


def test_weighted_cross_entropy_by_hand() -> None:
    logits, target = _three_pixels()
    weight = torch.tensor([0.25, 0.75])
    terms = [0.25 * -math.log(0.5), 0.75 * -math.log(0.25), 0.75 * -math.log(0.8)]
    # the official code / PyTorch: divide by the summed weights of the valid pixels
    expected = sum(terms) / (0.25 + 0.75 + 0.75)
    assert expected == pytest.approx(0.788781, abs=1e-6)
    assert float(weighted_cross_entropy(logits, target, weight)) == pytest.approx(expected, abs=1e-6)
    # DESIGN.md §1 taken literally: the per-pixel weighted loss averaged over valid pixels
    literal = float(weighted_cross_entropy(logits, target, weight, reduction="mean"))
    assert literal == pytest.approx(sum(terms) / 3, abs=1e-6)
    assert literal == pytest.approx(0.460122, abs=1e-6)
    # agrees with torch's own weighted cross-entropy
    reference = F.cross_entropy(logits, target, weight=weight, ignore_index=255)
    assert float(weighted_cross_entropy(logits, target, weight)) == pytest.approx(float(reference))


def test_unweighted_cross_entropy_and_all_ignored() -> None:
    logits, target = _three_pixels()
    plain = (-math.log(0.5) - math.log(0.25) - math.log(0.8)) / 3
    assert float(weighted_cross_entropy(logits, target)) == pytest.approx(plain, abs=1e-6)
    empty = torch.full_like(target, 255)
    loss = weighted_cross_entropy(logits.requires_grad_(), empty, torch.tensor([0.3, 0.7]))
    assert float(loss.detach()) == 0.0
    loss.backward()  # still differentiable


def test_dice_by_hand() -> None:
    logits, target = _three_pixels()
    # changed probabilities 0.5, 0.25, 0.8 (the ignored pixel drops out); truth 0, 1, 1
    intersection = 0.25 + 0.8
    cardinality = (0.5 + 0.25 + 0.8) + 2
    assert float(dice_loss(logits, target, smooth=0.0)) == pytest.approx(
        1 - 2 * intersection / cardinality, abs=1e-6)
    assert float(dice_loss(logits, target, smooth=1.0)) == pytest.approx(
        1 - (2 * intersection + 1) / (cardinality + 1), abs=1e-6)


def test_focal_by_hand() -> None:
    logits, target = _three_pixels()
    # p of the true class: 0.5, 0.25, 0.8
    terms = [(0.5**2) * -math.log(0.5), (0.75**2) * -math.log(0.25), (0.2**2) * -math.log(0.8)]
    assert float(focal_loss(logits, target, gamma=2.0)) == pytest.approx(sum(terms) / 3, abs=1e-6)
    # gamma 0 without weights is the plain cross-entropy
    assert float(focal_loss(logits, target, gamma=0.0)) == pytest.approx(
        float(weighted_cross_entropy(logits, target)), abs=1e-6)


def test_change_loss_combines_terms() -> None:
    logits, target = _three_pixels()
    weights = [0.25, 0.75]
    combined = ChangeLoss(LossConfig(name="ce+dice", dice_weight=0.5), 2, weights)
    expected = (float(weighted_cross_entropy(logits, target, torch.tensor(weights)))
                + 0.5 * float(dice_loss(logits, target)))
    assert float(combined(logits, target)) == pytest.approx(expected, abs=1e-6)
    assert combined.state_dict()["class_weights"].tolist() == pytest.approx(weights)
    assert ChangeLoss(LossConfig(name="ce"), 2).weight is None


def test_loss_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown loss"):
        ChangeLoss(LossConfig(name="ce+lovasz"), 2)
    with pytest.raises(ConfigError, match="class weights"):
        ChangeLoss(LossConfig(), 2, [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="auto"):
        resolve_class_weights(LossConfig(class_weights="auto"), 2, None)
    assert resolve_class_weights(LossConfig(class_weights="none"), 2, None) is None
    assert resolve_class_weights(LossConfig(class_weights=[1, 3]), 2, None) == [1.0, 3.0]
    assert resolve_class_weights(LossConfig(), 2, [3, 1]) == pytest.approx([0.25, 0.75])


def _typed_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """1×4×1×3 logits of a typed model; targets: appear, untyped change, unchanged."""
    logits = torch.tensor([[0.5, 1.0, -1.0, 0.0], [2.0, 0.1, 0.3, -0.4], [1.0, 0.0, 0.5, 0.2]])
    return logits.T.reshape(1, 4, 1, 3), torch.tensor([[[1, UNTYPED_CHANGE, 0]]])


def test_untyped_change_is_the_likelihood_of_any_change() -> None:
    logits, target = _typed_pixels()
    p = logits.softmax(dim=1)[0, :, 0]  # 4×3
    expected = [-math.log(p[1, 0]), -math.log(1 - p[0, 1]), -math.log(p[0, 2])]
    unweighted = weighted_cross_entropy(logits, target)
    assert unweighted.item() == pytest.approx(sum(expected) / 3, rel=1e-5)
    weight = torch.tensor([0.1, 0.2, 0.3, 0.4])
    untyped_weight = (0.2 + 0.3 + 0.4) / 3  # the change classes' mean
    weighted = weighted_cross_entropy(logits, target, weight)
    by_hand = (0.2 * expected[0] + untyped_weight * expected[1] + 0.1 * expected[2]) / (
        0.2 + untyped_weight + 0.1)
    assert weighted.item() == pytest.approx(by_hand, rel=1e-5)
    # gamma = 0 focal is the (α-weighted, pixel-mean) cross-entropy, untyped pixels included
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(sum(expected) / 3, rel=1e-5)
    # it only pushes probability from "unchanged" to the change classes, not between them
    logits.requires_grad_(True)
    weighted_cross_entropy(logits[..., 1:2], target[..., 1:2]).backward()
    grad = logits.grad[0, :, 0, 1]
    assert grad[0] > 0 and (grad[1:] < 0).all()
    with pytest.raises(ConfigError, match="typed labels"):
        dice_loss(logits.detach(), target, changed_only=False)
    assert dice_loss(logits.detach(), target).item() > 0


def test_untyped_pixels_are_shared_among_change_classes_when_counting() -> None:
    masks = [np.array([[0, 0, 1, 1, 1], [2, UNTYPED_CHANGE, UNTYPED_CHANGE, UNTYPED_CHANGE, 255]])]
    counts = class_pixel_counts(masks, num_classes=4)
    assert counts.tolist() == [2, 5, 2, 0]  # 3 untyped pixels: 3/4 to appear, 1/4 to disappear
    only_untyped = class_pixel_counts([np.array([[0, UNTYPED_CHANGE] * 3])], num_classes=4)
    assert only_untyped.tolist() == [3, 1, 1, 1]
    with pytest.raises(ConfigError, match="254"):  # a binary model has no untyped change
        class_pixel_counts(masks, num_classes=2)


def test_binary_class_weights_balance_change_against_no_change() -> None:
    from changeseg.training.losses import LossConfig, resolve_class_weights

    counts = [900, 60, 30, 10]  # 10 % changed, unevenly split among the types
    weights = resolve_class_weights(LossConfig(class_weights="binary"), 4, counts)
    assert weights is not None and len(weights) == 4
    assert weights[1] == weights[2] == weights[3]
    assert weights[1] / weights[0] == pytest.approx(9.0)  # the two-class C-3PO ratio
    assert sum(weights) == pytest.approx(1.0)
    four_way = resolve_class_weights(LossConfig(class_weights="auto"), 4, counts)
    assert four_way is not None and four_way[3] > four_way[1]  # inverse frequency per type
