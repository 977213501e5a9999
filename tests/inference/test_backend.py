"""What the pipeline asks of any backend: its own threshold and minimum area, its input bands."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.inference.backend import (
    ProbaBackend,
    backend_min_area,
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
