"""Radiometric scaling: how raw pixel values become the 0–1 inputs a model was trained on.

Every changeseg model sees images scaled to 0–1 before its mean/std normalisation. How raw
values map to 0–1 is the *scaling*, named by a short spec:

- ``dtype`` — divide by the type's range (uint8 / 255, uint16 / 65535; floats as they are).
  Right for ordinary 8- and 16-bit photographs.
- ``reflectance[:N]`` — divide by N (default 10000, clipped to 0–1): Sentinel-2 L1C/L2A
  digital numbers to reflectance.
- ``percentile[:LO,HI]`` — one linear stretch per image, shared by all its bands, from the
  LO-th to the HI-th percentile of its values (default 0 and 99.9) to 0–1, clipped. This is
  how the OSCD RGB PNGs were rendered from the Sentinel-2 bands (one gain for the three
  bands, chosen per image), so a model trained on such renderings sees raw band folders the
  way it saw its training images. All-zero pixels (Sentinel-2 nodata) and pixels flagged
  as unknown do not count towards the percentiles.
- ``auto`` (the default) — 8-bit images ``dtype`` (every model is trained from 8-bit
  files); other integer images the scaling the model records in its config.json
  (``metadata.input_scaling``), ``dtype`` when it records none; float images as they are.

Torch-free: the PyTorch and ONNX backends both get already-scaled float32 images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from changeseg.errors import InputError

METHODS = ("auto", "dtype", "reflectance", "percentile")
DEFAULT_DIVISOR = 10000.0
DEFAULT_PERCENTILES = (0.0, 99.9)
MAX_SAMPLE_ROWS = 512  # rows read to estimate percentiles of a raster too large to hold
MAX_SAMPLE_COLUMNS = 1024

RowReader = Callable[[int, int, int, int], np.ndarray]  # read(y, x, height, width) -> H×W×C


@dataclass(frozen=True)
class Scaling:
    """A parsed scaling spec (see the module docstring)."""

    method: str = "auto"
    divisor: float = DEFAULT_DIVISOR
    low: float = DEFAULT_PERCENTILES[0]
    high: float = DEFAULT_PERCENTILES[1]

    def spec(self) -> str:
        """The spec string that parses back to this scaling."""
        if self.method == "reflectance":
            return f"reflectance:{self.divisor:g}"
        if self.method == "percentile":
            return f"percentile:{self.low:g},{self.high:g}"
        return self.method


def parse_scaling(spec: str | Scaling | None) -> Scaling:
    """Parse "auto", "dtype", "reflectance[:N]" or "percentile[:LO,HI]" (None = "auto")."""
    if isinstance(spec, Scaling):
        return spec
    text = "auto" if spec is None else str(spec).strip().lower()
    method, _, argument = text.partition(":")
    usage = ("use auto, dtype, reflectance[:N] (e.g. reflectance:10000) or percentile[:LO,HI] "
             "(e.g. percentile:0,99.9)")
    if method not in METHODS:
        raise InputError(f"unknown scaling {spec!r}; {usage}")
    if not argument:
        return Scaling(method)
    try:
        numbers = [float(v) for v in argument.split(",")]
    except ValueError:
        raise InputError(f"bad scaling {spec!r}: {argument!r} is not a number list; {usage}") from None
    if method == "reflectance" and len(numbers) == 1 and numbers[0] > 0:
        return Scaling(method, divisor=numbers[0])
    if method == "percentile" and len(numbers) == 2 and 0.0 <= numbers[0] < numbers[1] <= 100.0:
        return Scaling(method, low=numbers[0], high=numbers[1])
    raise InputError(f"bad scaling {spec!r}: reflectance takes one divisor > 0, percentile two "
                     f"percentiles 0 ≤ LO < HI ≤ 100, the others nothing; {usage}")


def model_scaling(backend: Any) -> Scaling:
    """The scaling a model records for non-8-bit integer input (config.json metadata.input_scaling)."""
    metadata = getattr(getattr(backend, "config", None), "metadata", None) or {}
    recorded = metadata.get("input_scaling")
    scaling = parse_scaling(recorded) if recorded else Scaling("dtype")
    return Scaling("dtype") if scaling.method == "auto" else scaling


def resolve_scaling(spec: str | Scaling | None, backend: Any, dtype: np.dtype) -> Scaling:
    """The concrete scaling (never "auto") for an image of `dtype` fed to `backend`."""
    scaling = parse_scaling(spec)
    if scaling.method != "auto":
        return scaling
    kind = np.dtype(dtype)
    if kind == np.uint8 or kind.kind not in "ui":
        return Scaling("dtype")
    return model_scaling(backend)


def _valid_values(image: np.ndarray, ignore: np.ndarray | None) -> np.ndarray:
    """The values of pixels that count towards percentiles (not all-zero, not ignored, finite)."""
    keep = np.any(image != 0, axis=2)
    if ignore is not None and ignore.shape == keep.shape:
        keep &= ~ignore
    values = image[keep]
    if values.dtype.kind == "f":
        values = values[np.all(np.isfinite(values), axis=1)]
    return values.astype(np.float32, copy=False)


def value_range(image: np.ndarray, scaling: Scaling, ignore: np.ndarray | None = None
                ) -> tuple[float, float] | None:
    """The raw values mapped to 0 and 1 by `scaling` for this H×W×C image; None = leave as is.

    `ignore` (H×W bool) marks pixels that do not count towards percentiles (nodata).
    """
    if scaling.method in ("auto", "dtype"):
        return None
    if scaling.method == "reflectance":
        return 0.0, scaling.divisor
    values = _valid_values(image, ignore)
    if values.size == 0:
        return 0.0, 1.0
    step = max(1, values.shape[0] // 1_000_000)  # percentiles of a million pixels are plenty
    low, high = np.percentile(values[::step], [scaling.low, scaling.high])
    return float(low), float(max(high, low + 1e-6))


def apply_range(image: np.ndarray, bounds: tuple[float, float] | None) -> np.ndarray:
    """Map raw values linearly so `bounds` become 0 and 1, clipped (None: the image unchanged)."""
    if bounds is None:
        return image
    low, high = bounds
    scaled = (image.astype(np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def scale_image(image: np.ndarray, scaling: Scaling, ignore: np.ndarray | None = None) -> np.ndarray:
    """The H×W×C image scaled to 0–1 float32 (or unchanged for "dtype": the backend divides)."""
    return apply_range(image, value_range(image, scaling, ignore))


def sampled_rows(read: RowReader, height: int, width: int, max_rows: int = MAX_SAMPLE_ROWS,
                 max_columns: int = MAX_SAMPLE_COLUMNS) -> np.ndarray:
    """Evenly spaced single rows of a raster (columns thinned), as an r×c×C array.

    Enough to estimate percentiles of an image too large to hold (the windowed GeoTIFF path).
    """
    rows = np.unique(np.linspace(0, height - 1, min(height, max_rows)).round().astype(int))
    step = max(1, width // max_columns)
    return np.concatenate([read(int(y), 0, 1, width)[:, ::step] for y in rows], axis=0)
