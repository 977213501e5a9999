"""AirChangeDataset on the real SZTAKI AirChange pairs."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.data.datasets.airchange import AirChangeDataset
from changeseg.errors import InputError
from tests.conftest import require_real_data


def test_airchange_pairs():
    root = require_real_data("airchange")
    data = AirChangeDataset(root)
    assert data.names == [
        "Szada/2",
        "Szada/3",
        "Szada/4",
        "Szada/5",
        "Szada/6",
        "Szada/7",
        "Tiszadob/1",
        "Tiszadob/2",
        "Tiszadob/4",
        "Tiszadob/5",
    ]
    for index in (0, 9):
        sample = data[index]
        assert sample["reference"].shape == (640, 952, 3) and sample["reference"].dtype == np.uint8
        assert sample["comparison"].shape == (640, 952, 3)
        assert set(np.unique(sample["mask"])) == {0, 1}
    assert AirChangeDataset(root, regions=["Tiszadob"]).names[0] == "Tiszadob/1"
    with pytest.raises(InputError, match="Archieve"):
        AirChangeDataset(root, regions=["Archieve"])


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="im1, im2 and gt"):
        AirChangeDataset(tmp_path)
