"""Fixtures shared by the command-line tests."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.io.images import write_png


@pytest.fixture
def images(tmp_path, rng):
    """A seeded 56×40 pair (PNG paths) whose comparison has one inverted rectangle."""
    reference = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[5:25, 10:40] = 255 - comparison[5:25, 10:40]
    return write_png(tmp_path / "ref.png", reference), write_png(tmp_path / "cmp.png", comparison)
