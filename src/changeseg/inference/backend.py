"""The backend protocol, and what the pipeline asks of any backend.

Torch-free. A *backend* turns a prepared image pair into class probabilities
(:class:`ProbaBackend`); the pipeline (`changeseg.inference.pipeline`), the windowed GeoTIFF
path (`changeseg.inference.geo`), batch runs and the service also use, where present,

- ``prepare(image, name) -> H×W×C array`` (read an image and adapt its channels),
- ``class_names``, and optionally ``name``, ``trained`` and ``config`` (``threshold``,
  ``metadata``),

which both the PyTorch `ChangeDetector` and the ONNX runtime provide. The helpers here read
a backend's own defaults and check its input bands.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from changeseg.box_grow import check_grow
from changeseg.errors import InputError
from changeseg.region_split import DEFAULT_MAX_COVER, check_split


@runtime_checkable
class ProbaBackend(Protocol):
    """Anything that turns a prepared image pair into class probabilities."""

    def predict_proba(self, reference: np.ndarray, comparison: np.ndarray) -> np.ndarray:
        """Class probabilities (num_classes×H×W float32) for two same-size H×W×C images."""
        ...


def predict_proba_stacked(backend: Any, references: np.ndarray, comparisons: np.ndarray) -> np.ndarray:
    """N×K×H×W float32 probabilities of N prepared same-size pairs: one call to the backend's
    `predict_proba_batch` where it has one, else one `predict_proba` call per pair (for the
    wrappers that turn one pair into several views)."""
    batched = getattr(backend, "predict_proba_batch", None)
    if batched is not None:
        return np.asarray(batched(references, comparisons), np.float32)
    return np.stack([np.asarray(backend.predict_proba(r, c), np.float32)
                     for r, c in zip(references, comparisons, strict=True)])


def backend_threshold(backend: Any) -> float:
    """The backend's own decision threshold (config.threshold), 0.5 when it has none."""
    return float(getattr(getattr(backend, "config", None), "threshold", 0.5))


def backend_min_area(backend: Any) -> int:
    """The backend's own minimum region area (config.metadata["min_area"]), 0 when it has none.

    A model whose regions are scored as detections (e.g. `pcb`) records the minimum area
    chosen with its threshold on its validation split.
    """
    metadata = getattr(getattr(backend, "config", None), "metadata", None) or {}
    return int(metadata.get("min_area", 0))


def backend_box_grow(backend: Any) -> float:
    """The backend's own region-box scale factor (config.metadata["box_grow"]), 1 when it has none.

    A model trained on shrunk boxes (e.g. a `pcb` trained on the `deeppcb` reader's `shrink`)
    marks each defect's core; its regions' boxes are grown by this about their centres
    (`changeseg.box_grow`) so that they cover the defect. Raises InputError for a value < 1.
    """
    metadata = getattr(getattr(backend, "config", None), "metadata", None) or {}
    try:
        grow = float(metadata.get("box_grow", 1.0))
    except (TypeError, ValueError) as error:
        raise InputError(f"box_grow must be a number: {error}") from None
    check_grow(grow)
    return grow


def backend_split(backend: Any, depth: float | None = None, cover: float | None = None
                  ) -> tuple[float, float]:
    """The region-splitting settings ``(depth, cover)`` to use, checked.

    Each of `depth` and `cover` that is None takes the backend's own
    (``config.metadata["split_depth"]`` / ``["split_cover"]``), else the neutral one: depth 0
    (no splitting) and cover ``DEFAULT_MAX_COVER``. A model whose regions are scored as
    detections (e.g. `pcb`) records the settings chosen on its validation split (see
    `changeseg.region_split`). Raises InputError for a negative depth or a cover <= 0.
    """
    metadata = getattr(getattr(backend, "config", None), "metadata", None) or {}
    try:
        depth = float(metadata.get("split_depth", 0.0) if depth is None else depth)
        cover = float(metadata.get("split_cover", DEFAULT_MAX_COVER) if cover is None else cover)
    except (TypeError, ValueError) as error:
        raise InputError(f"split depth and cover must be numbers: {error}") from None
    check_split(depth, cover)
    return depth, cover


def check_channels(backend: Any, image: np.ndarray, name: str, source: Any = None) -> None:
    """Fail early, with a hint about band selection, when the model cannot take the image's bands."""
    try:
        backend.prepare(np.zeros((1, 1, image.shape[2]), image.dtype), name)
    except InputError as exc:
        where = f" {source}" if source is not None else ""
        raise InputError(f"{name}{where} has {image.shape[2]} band(s): {exc}; select bands with --bands "
                         "(bands=...), e.g. --bands 4,3,2 for Sentinel-2 RGB") from None
