"""The tiny checkpoint exported to ONNX once per test session, shared by the ONNX test modules."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np


@cache
def export_tiny(checkpoint: Path, folder: Path):
    """Export `checkpoint` to `folder` (once per session for the same arguments); the ExportReport."""
    from changeseg.inference.export import export_onnx

    return export_onnx(checkpoint, folder)


def changed_pair(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded uint8 H×W×3 pair whose comparison has one inverted rectangle."""
    reference = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    comparison = reference.copy()
    y0, x0 = height // 5, width // 4
    comparison[y0:y0 + height // 2, x0:x0 + width // 2] = 255 - comparison[y0:y0 + height // 2,
                                                                           x0:x0 + width // 2]
    return reference, comparison
