"""Radiometric scaling specs: parsing, the "auto" rule, the per-image stretch, sampled rows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.io.scaling import (
    Scaling,
    model_scaling,
    parse_scaling,
    resolve_scaling,
    sampled_rows,
    scale_image,
    value_range,
)


def backend_recording(spec: str | None) -> SimpleNamespace:
    metadata = {"input_scaling": spec} if spec else {}
    return SimpleNamespace(config=SimpleNamespace(metadata=metadata))


@pytest.mark.parametrize("spec, expected", [
    (None, Scaling("auto")), ("auto", Scaling("auto")), ("DTYPE", Scaling("dtype")),
    ("reflectance", Scaling("reflectance", divisor=10000.0)),
    ("reflectance:4096", Scaling("reflectance", divisor=4096.0)),
    ("percentile", Scaling("percentile", low=0.0, high=99.9)),
    (" percentile:2,98 ", Scaling("percentile", low=2.0, high=98.0)),
])
def test_specs_parse_and_print_back(spec, expected):
    parsed = parse_scaling(spec)
    assert parsed == expected
    assert parse_scaling(parsed.spec()) == parsed


@pytest.mark.parametrize("spec", ["linear", "reflectance:0", "reflectance:a", "percentile:5",
                                  "percentile:90,10", "percentile:0,101", "dtype:3"])
def test_bad_specs_are_input_errors_saying_what_is_allowed(spec):
    with pytest.raises(InputError, match="reflectance"):
        parse_scaling(spec)


def test_auto_uses_the_models_record_only_for_non_8_bit_integers():
    aerial = backend_recording("percentile:0,99.9")
    assert resolve_scaling("auto", aerial, np.dtype(np.uint16)) == Scaling("percentile", low=0.0, high=99.9)
    assert resolve_scaling(None, aerial, np.dtype(np.uint8)) == Scaling("dtype")  # training files are 8-bit
    assert resolve_scaling(None, aerial, np.dtype(np.float32)) == Scaling("dtype")  # floats: as given
    assert resolve_scaling(None, backend_recording(None), np.dtype(np.uint16)) == Scaling("dtype")
    assert resolve_scaling("reflectance", aerial, np.dtype(np.uint8)).method == "reflectance"  # explicit wins
    assert model_scaling(SimpleNamespace()) == Scaling("dtype")  # a backend with no config at all


def test_percentile_stretch_is_one_gain_per_image_and_ignores_nodata(rng):
    image = rng.integers(500, 3000, (40, 50, 3), dtype=np.uint16)
    image[:5] = 0  # Sentinel-2 nodata rows
    image[5:10, :, 0] = 60000  # flagged unknown: must not stretch the rest
    unknown = np.zeros((40, 50), bool)
    unknown[5:10] = True
    scaled = scale_image(image, Scaling("percentile", low=0.0, high=100.0), unknown)
    valid = image[10:].astype(np.float64)
    low, high = valid.min(), valid.max()
    np.testing.assert_allclose(scaled[10:], (valid - low) / (high - low), atol=1e-6)
    assert scaled.dtype == np.float32 and scaled.min() == 0.0 and scaled.max() == 1.0
    # one gain for all bands: the colour balance between bands survives
    brighter = image.copy()
    brighter[10:] = (brighter[10:] * 1.5).astype(np.uint16)
    again = scale_image(brighter, Scaling("percentile", low=0.0, high=100.0), unknown)
    np.testing.assert_allclose(again[10:], scaled[10:], atol=2e-3)  # a per-image gain cancels out


def test_reflectance_divides_and_clips_and_dtype_leaves_the_image_alone(rng):
    image = np.array([[[0, 5000, 12000]]], np.uint16)
    np.testing.assert_allclose(scale_image(image, parse_scaling("reflectance")), [[[0.0, 0.5, 1.0]]])
    assert scale_image(image, Scaling("dtype")) is image
    assert value_range(image, Scaling("dtype")) is None


def test_sampled_rows_read_evenly_spaced_single_rows(rng):
    raster = rng.integers(0, 100, (1000, 3000, 2)).astype(np.uint16)
    calls = []

    def read(y: int, x: int, height: int, width: int) -> np.ndarray:
        calls.append((y, x, height, width))
        return raster[y:y + height, x:x + width]

    sample = sampled_rows(read, 1000, 3000, max_rows=10, max_columns=1000)
    assert len(calls) == 10 and all(c[2] == 1 and c[3] == 3000 for c in calls)
    assert calls[0][0] == 0 and calls[-1][0] == 999
    assert sample.shape == (10, 1000, 2)
    np.testing.assert_array_equal(sample[-1], raster[999, ::3])
