"""Tests of test-time augmentation (changeseg.inference.tta)."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.inference.pipeline import detect_pair
from changeseg.inference.tta import TestTimeAugmented, swap_permutation

TYPED = ["unchanged", "appear", "disappear", "exchange"]


class SignedDifference:
    """A typed backend that is exactly flip-equivariant and swap-consistent:
    appear = brighter comparison, disappear = darker comparison."""

    class_names = TYPED

    def __init__(self) -> None:
        self.calls = 0

    def prepare(self, image: np.ndarray, name: str) -> np.ndarray:
        return np.asarray(image, np.float32)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        self.calls += 1
        difference = (comparison.mean(-1) - reference.mean(-1)) / 255.0
        appear = np.clip(difference, 0, 1) * 0.9
        disappear = np.clip(-difference, 0, 1) * 0.9
        exchange = np.zeros_like(appear)
        return np.stack([1 - appear - disappear, appear, disappear, exchange]).astype(np.float32)


class LeftBias(SignedDifference):
    """Change probability that grows from left to right, whatever the images."""

    class_names = ["unchanged", "changed"]

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        width = reference.shape[1]
        ramp = np.broadcast_to(np.arange(width, dtype=np.float32) / (width - 1), reference.shape[:2])
        return np.stack([1 - ramp, ramp]).astype(np.float32)


def test_swap_permutation() -> None:
    assert swap_permutation(TYPED) == [0, 2, 1, 3]
    assert swap_permutation(["unchanged", "changed"]) == [0, 1]


def test_tta_keeps_an_equivariant_model_exactly(rng: np.random.Generator) -> None:
    reference = rng.integers(0, 256, (24, 40, 3)).astype(np.float32)
    comparison = reference.copy()
    comparison[4:12, 5:15] += 120  # appeared (brighter), left half
    comparison[14:20, 25:35] -= 100  # disappeared (darker), right half
    plain = SignedDifference()
    wrapped = TestTimeAugmented(SignedDifference())
    expected = plain.predict_proba(reference, comparison)
    averaged = wrapped.predict_proba(reference, comparison)
    assert wrapped.backend.calls == 3  # identity, mirror, swap
    np.testing.assert_allclose(averaged, expected, atol=1e-6)
    assert averaged[1, 8, 10] > 0.3 and averaged[2, 8, 10] == 0  # still "appear", not swapped


def test_tta_undoes_the_mirror() -> None:
    image = np.zeros((4, 11, 3), np.float32)
    averaged = TestTimeAugmented(LeftBias(), views=("flip",)).predict_proba(image, image)
    np.testing.assert_allclose(averaged[1], 0.5, atol=1e-6)  # x/W and its mirror average out
    swapped = TestTimeAugmented(LeftBias(), views=("swap",)).predict_proba(image, image)
    np.testing.assert_allclose(swapped[1, 0], np.arange(11) / 10, atol=1e-6)


def test_tta_through_the_pipeline(rng: np.random.Generator) -> None:
    reference = rng.integers(0, 120, (32, 32, 3)).astype(np.uint8)
    comparison = reference.copy()
    comparison[8:20, 8:20] = 250
    result = detect_pair(TestTimeAugmented(SignedDifference()), reference, comparison,
                         threshold=0.3)
    assert result.mask[8:20, 8:20].all() and result.mask.sum() == 144
    assert result.regions[0].label == "appear"


def test_unknown_view_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown test-time views"):
        TestTimeAugmented(SignedDifference(), views=("rotate",))
