"""Tests of multi-scale inference (changeseg.inference.multiscale) and of `Tiled`."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.inference.multiscale import (
    MultiScale,
    TestViews,
    model_scales,
    parse_scales,
    resize_image,
    resize_probabilities,
    views_of,
    with_views,
)
from changeseg.inference.tiling import Tiled, TilingOptions, predict_proba_auto
from changeseg.inference.tta import TestTimeAugmented


class CoarseDifference:
    """A binary backend with a network's weakness: it sees change only on a grid 4× coarser than
    its input (block-averaged |difference|, blown back up), so small objects lose their outline."""

    class_names = ["unchanged", "changed"]

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def prepare(self, image: np.ndarray, name: str) -> np.ndarray:
        return np.asarray(image)

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        self.shapes.append(reference.shape)
        height, width = reference.shape[:2]
        changed = (np.abs(comparison.astype(np.float32) - reference.astype(np.float32)).mean(-1) > 40)
        coarse = cv2.resize(changed.astype(np.float32), (width // 4, height // 4),
                            interpolation=cv2.INTER_AREA)
        change = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_NEAREST)
        return np.stack([1 - change, change]).astype(np.float32)


def small_objects(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 64×96 pair with three 5×3-pixel objects placed off the 4-pixel grid, and their mask."""
    reference = rng.integers(60, 100, (64, 96, 3)).astype(np.uint8)
    comparison = reference.copy()
    truth = np.zeros((64, 96), bool)
    for top, left in ((9, 13), (30, 50), (45, 79)):
        comparison[top:top + 5, left:left + 3] = 250
        truth[top:top + 5, left:left + 3] = True
    return reference, comparison, truth


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    return float((mask & truth).sum() / (mask | truth).sum())


def test_parse_scales() -> None:
    assert parse_scales("1,2") == (1.0, 2.0)
    assert parse_scales(" 0.5 , 1.5") == (0.5, 1.5)
    assert parse_scales([2]) == (2.0,)
    for text, message in (("1,x", "'x' is not a number"), ("0", "outside"), ("5", "outside"),
                          ("1,1", "given twice"), ("", "not a number"), ([], "at least one")):
        with pytest.raises(InputError, match=message):
            parse_scales(text)


def test_enlarging_recovers_the_outline_of_small_objects(rng: np.random.Generator) -> None:
    reference, comparison, truth = small_objects(rng)
    plain = CoarseDifference()
    single = plain.predict_proba(reference, comparison)[1] >= 0.5
    backend = CoarseDifference()
    averaged = MultiScale(backend, (1, 2)).predict_proba(reference, comparison)
    assert averaged.shape == (2, 64, 96)
    np.testing.assert_allclose(averaged.sum(0), 1, atol=1e-5)
    assert backend.shapes == [(64, 96, 3), (128, 192, 3)]  # the pair as it is, then twice the size
    enlarged = MultiScale(CoarseDifference(), (3,)).predict_proba(reference, comparison)[1] >= 0.5
    assert iou(single, truth) < 0.25  # 0.17: blocks that miss the objects' outline
    assert iou(enlarged, truth) > iou(single, truth) + 0.4  # 0.75
    assert iou(averaged[1] >= 0.5, truth) > iou(single, truth) + 0.3  # 0.62


def test_one_scale_of_one_changes_nothing(rng: np.random.Generator) -> None:
    reference, comparison, _ = small_objects(rng)
    backend = CoarseDifference()
    assert with_views(backend) is backend and with_views(backend, scales=(1,)) is backend
    np.testing.assert_array_equal(MultiScale(backend, (1,)).predict_proba(reference, comparison),
                                  backend.predict_proba(reference, comparison))


def test_views_compose_and_describe_themselves() -> None:
    backend = CoarseDifference()
    wrapped = with_views(backend, tta=True, scales=(1, 2))
    assert isinstance(wrapped, MultiScale) and isinstance(wrapped.backend, TestTimeAugmented)
    assert wrapped.class_names == backend.class_names  # attributes reach the backend
    image = np.zeros((16, 24, 3), np.uint8)
    wrapped.predict_proba(image, image)
    assert sorted(backend.shapes) == [(16, 24, 3)] * 3 + [(32, 48, 3)] * 3  # 3 views × 2 scales
    assert TestViews().describe() == ""
    assert TestViews(True, (1, 2)).describe() == ", tta, scales 1,2"
    assert TestViews(False, (0.5,)).describe() == ", scales 0.5"
    with pytest.raises(InputError):
        TestViews(False, (9,))


def test_a_model_records_the_scales_it_runs_at() -> None:
    from types import SimpleNamespace

    backend = CoarseDifference()
    assert model_scales(backend) == (1.0,)  # no config: the pair as it is
    backend.config = SimpleNamespace(metadata={"scales": [2]})  # type: ignore[attr-defined]
    assert model_scales(backend) == (2.0,)
    wrapped = with_views(backend)  # scales None: the model's own
    assert isinstance(wrapped, MultiScale) and wrapped.scales == (2.0,)
    assert views_of(wrapped) == TestViews(False, (2.0,))
    assert with_views(backend, scales=(1,)) is backend  # told otherwise
    assert with_views(backend, scales="1,2").scales == (1.0, 2.0)  # as the tools' --scales text
    assert views_of(with_views(backend, tta=True)) == TestViews(True, (2.0,))
    backend.config = SimpleNamespace(metadata={"scales": [9]})  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="outside"):
        with_views(backend)


def test_resizing_keeps_dtype_channels_and_probability_mass(rng: np.random.Generator) -> None:
    stack = rng.integers(0, 65536, (20, 30, 6)).astype(np.uint16)
    enlarged = resize_image(stack, 40, 60)
    assert enlarged.shape == (40, 60, 6) and enlarged.dtype == np.uint16
    grey = rng.integers(0, 256, (20, 30, 1)).astype(np.uint8)
    assert resize_image(grey, 10, 15).shape == (10, 15, 1)
    probs = rng.dirichlet(np.ones(4), size=(40, 60)).transpose(2, 0, 1).astype(np.float32)
    shrunk = resize_probabilities(probs, 20, 30)
    assert shrunk.shape == (4, 20, 30)
    np.testing.assert_allclose(shrunk.sum(0), 1, atol=1e-5)
    np.testing.assert_allclose(shrunk[:, 0, 0], probs[:, :2, :2].mean((1, 2)), atol=1e-5)


def test_batches_match_one_pair_at_a_time(rng: np.random.Generator) -> None:
    pairs = [small_objects(rng)[:2] for _ in range(3)]
    wrapped = MultiScale(CoarseDifference(), (1, 1.5))
    batch = wrapped.predict_proba_batch(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
    for probs, (reference, comparison) in zip(batch, pairs, strict=True):
        np.testing.assert_allclose(probs, wrapped.predict_proba(reference, comparison), atol=1e-6)


def test_tiled_predicts_large_pairs_tile_by_tile(rng: np.random.Generator) -> None:
    reference, comparison, _ = small_objects(rng)
    backend = CoarseDifference()
    tiling = TilingOptions(32, 8)
    probs = Tiled(backend, tiling).predict_proba(reference, comparison)
    assert probs.shape == (2, 64, 96)
    assert set(backend.shapes) == {(32, 32, 3)}
    np.testing.assert_allclose(probs, predict_proba_auto(CoarseDifference(), reference, comparison, tiling))
    small = CoarseDifference()
    Tiled(small, TilingOptions(128)).predict_proba(reference, comparison)
    assert small.shapes == [(64, 96, 3)]  # not larger than a tile: predicted whole
