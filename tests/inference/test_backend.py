"""What the pipeline asks of any backend: its own threshold, minimum area and region splitting,
its input bands."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.inference.backend import (
    ProbaBackend,
    backend_box_grow,
    backend_min_area,
    backend_split,
    backend_threshold,
    check_channels,
)


class ThreeBands:
    """A backend stand-in that takes three-band images only."""

    config = SimpleNamespace(threshold=0.39, metadata={"min_area": 200})

    def prepare(self, image: np.ndarray, name: str) -> np.ndarray:
        if image.shape[2] != 3:
            raise InputError(f"the model takes 3 channels, got {image.shape[2]}")
        return image

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        return np.zeros((2, *reference.shape[:2]), np.float32)


def test_a_backend_brings_its_own_defaults_or_gets_the_neutral_ones() -> None:
    backend = ThreeBands()
    assert isinstance(backend, ProbaBackend)
    assert (backend_threshold(backend), backend_min_area(backend)) == (0.39, 200)
    bare = object()
    assert (backend_threshold(bare), backend_min_area(bare)) == (0.5, 0)


def test_wrong_band_counts_fail_early_with_a_band_hint() -> None:
    check_channels(ThreeBands(), np.zeros((4, 4, 3), np.uint8), "reference")
    with pytest.raises(InputError, match=r"reference a\.tif has 13 band\(s\).*--bands 4,3,2"):
        check_channels(ThreeBands(), np.zeros((4, 4, 13), np.uint16), "reference", "a.tif")


def test_split_settings_come_from_the_model_unless_given() -> None:
    splitting = SimpleNamespace(config=SimpleNamespace(metadata={"split_depth": 1, "split_cover": 0.95}))
    assert backend_split(splitting) == (1.0, 0.95)
    assert backend_split(splitting, depth=0) == (0.0, 0.95)  # 0 turns the model's splitting off
    assert backend_split(splitting, cover=2.0) == (1.0, 2.0)
    assert backend_split(ThreeBands()) == (0.0, 1.0)  # a model without the keys: no splitting
    assert backend_split(object(), depth=2) == (2.0, 1.0)


@pytest.mark.parametrize(("depth", "cover", "message"), [
    (-1, None, "split depth must be"), (float("nan"), None, "split depth must be"),
    (None, 0, "split max_cover must be > 0"), (1, -0.5, "split max_cover must be > 0"),
    ("deep", None, "must be numbers"),
])
def test_bad_split_settings_are_input_errors(depth, cover, message) -> None:
    with pytest.raises(InputError, match=message):
        backend_split(object(), depth, cover)
    bad_model = SimpleNamespace(config=SimpleNamespace(metadata={"split_depth": depth, "split_cover": cover}))
    if depth is not None and cover is not None:
        with pytest.raises(InputError, match=message):
            backend_split(bad_model)


def test_box_grow_comes_from_the_model_and_must_be_at_least_one() -> None:
    assert backend_box_grow(ThreeBands()) == 1.0 and backend_box_grow(object()) == 1.0
    grown = SimpleNamespace(config=SimpleNamespace(metadata={"box_grow": 5 / 3}))
    assert backend_box_grow(grown) == pytest.approx(5 / 3)
    for bad in (0.5, "wide"):
        with pytest.raises(InputError, match="box_grow|box grow"):
            backend_box_grow(SimpleNamespace(config=SimpleNamespace(metadata={"box_grow": bad})))
