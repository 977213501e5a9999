"""The `photos` fixture of the synthetic-pair tests."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.synthetic.helpers import make_photo


@pytest.fixture
def photos(rng: np.random.Generator) -> list[np.ndarray]:
    return [make_photo(rng, 150, 200), make_photo(rng, 180, 140), make_photo(rng, 160, 160)]
