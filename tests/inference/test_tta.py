"""Tests of test-time augmentation (changeseg.inference.tta)."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.inference.pipeline import detect_pair
from changeseg.inference.tta import TTA_SETS, TestTimeAugmented, swap_permutation, tta_set_name, tta_views

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


class BrightRed(SignedDifference):
    """A pointwise backend: change = the comparison's red value, so it commutes exactly with every
    rotation and mirror image of the pair (and with the swap only through `appear`/`disappear`)."""

    class_names = ["unchanged", "changed"]

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        self.calls += 1
        changed = comparison[..., 0] / 255.0
        return np.stack([1 - changed, changed]).astype(np.float32)


def test_dihedral_maps_every_view_back_exactly(rng: np.random.Generator) -> None:
    reference = rng.integers(0, 256, (9, 14, 3)).astype(np.float32)  # not square: turns transpose
    comparison = rng.integers(0, 256, (9, 14, 3)).astype(np.float32)
    wrapped = TestTimeAugmented(BrightRed(), views="dihedral")
    averaged = wrapped.predict_proba(reference, comparison)
    assert wrapped.backend.calls == 8
    assert averaged.shape == (2, 9, 14)
    # a wrongly undone view would smear the random map; every view undone gives it back exactly
    np.testing.assert_allclose(averaged, BrightRed().predict_proba(reference, comparison), atol=1e-6)


def test_dihedral_averages_out_a_direction() -> None:
    image = np.zeros((6, 11, 3), np.float32)
    averaged = TestTimeAugmented(LeftBias(), views="dihedral").predict_proba(image, image)
    np.testing.assert_allclose(averaged[1], 0.5, atol=1e-6)  # left-right and up-down ramps cancel
    turned = TestTimeAugmented(LeftBias(), views=("rot90",)).predict_proba(image, image)
    # the quarter-turned pair is 6 wide: its left-to-right ramp, turned back, runs down the rows
    rows, columns = np.mgrid[0:6, 0:11].astype(np.float32)
    np.testing.assert_allclose(turned[1], (columns / 10 + rows / 5) / 2, atol=1e-6)


def test_view_sets_and_their_names() -> None:
    assert tta_views(True) == TTA_SETS["flip-swap"] == ("flip", "swap")
    assert tta_views(False) == tta_views(None) == tta_views("none") == ()
    assert len(set(tta_views("dihedral"))) == 7  # with the pair as it is: the 8 symmetries of a square
    assert tta_set_name(("swap", "flip")) == "flip-swap"
    assert tta_set_name(tta_views("dihedral")) == "dihedral"
    assert tta_set_name(("flip", "rot90")) == "flip,rot90" and tta_views("flip,rot90") == ("flip", "rot90")
    assert tta_set_name(()) is None
    with pytest.raises(InputError, match="unknown set 'spin'"):
        tta_views("spin")
    with pytest.raises(InputError, match="unknown test-time views"):
        tta_views(("flip", "rot45"))


class AbsoluteDifference(SignedDifference):
    """A swap-symmetric binary backend, with the config section that says so."""

    class_names = ["unchanged", "changed"]

    def __init__(self, model: dict) -> None:
        super().__init__()
        self.config = type("Config", (), {"model": model})()

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        self.calls += 1
        changed = np.abs(comparison.mean(-1) - reference.mean(-1)) / 255.0
        return np.stack([1 - changed, changed]).astype(np.float32)


@pytest.mark.parametrize(("views", "passes"), [("flip-swap", 2), ("dihedral", 8),
                                                (("swap", "swap-rot90", "rot90"), 2)])
def test_a_swap_symmetric_network_reuses_the_unswapped_passes(rng: np.random.Generator, views,
                                                              passes) -> None:
    reference = rng.integers(0, 256, (12, 20, 3)).astype(np.float32)
    comparison = rng.integers(0, 256, (12, 20, 3)).astype(np.float32)
    symmetric = TestTimeAugmented(AbsoluteDifference({"share_ad": True}), views=views)
    every_pass = TestTimeAugmented(AbsoluteDifference({"share_ad": False}), views=views)
    assert symmetric.swap_symmetric and not every_pass.swap_symmetric
    np.testing.assert_allclose(symmetric.predict_proba(reference, comparison),
                               every_pass.predict_proba(reference, comparison), atol=1e-6)
    assert symmetric.backend.calls == passes  # dihedral has no swapped view: all 8 still run
    assert every_pass.backend.calls == len(tta_views(views)) + 1


def test_the_packaged_models_passes() -> None:
    from changeseg.inference.predictor import ChangeDetector

    passes = {name: len(TestTimeAugmented(ChangeDetector.from_pretrained(name, precision="fp32")).passes)
              for name in ("default", "pcb")}
    assert passes == {"default": 3, "pcb": 2}  # pcb's swapped pair is the pair itself
