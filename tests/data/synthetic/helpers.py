"""Shared inputs of the synthetic-pair tests: stand-in photos and small generators."""

from __future__ import annotations

import cv2
import numpy as np

from changeseg.data.synthetic.generator import SyntheticPairGenerator
from changeseg.labels import APPEAR, DISAPPEAR, EXCHANGE

SIZE = 96
NO_PHOTOMETRY = {
    "p_shadow": 0.0,
    "p_illumination": 0.0,
    "p_blur": 0.0,
    "p_noise": 0.0,
    "p_jpeg": 0.0,
    "p_season": 0.0,
}
ONLY = {APPEAR: (1.0, 0.0, 0.0), DISAPPEAR: (0.0, 1.0, 0.0), EXCHANGE: (0.0, 0.0, 1.0)}


def make_photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random colour image with a little texture: a stand-in for a photo."""
    low = rng.uniform(0, 255, (5, 7, 3)).astype(np.float32)
    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0.0, 12.0, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def generator(
    photos: list[np.ndarray], seed: int = 0, **overrides: object
) -> SyntheticPairGenerator:
    return SyntheticPairGenerator(photos, size=SIZE, seed=seed, **overrides)


def assert_same_sample(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key]


def mean_abs_diff(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16))[where].mean())
