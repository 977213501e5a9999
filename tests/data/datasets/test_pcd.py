"""PCDDataset on the real TSUNAMI pairs and on a generated 20-pair tree (5-fold split)."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.data.datasets.pcd import PCDDataset, in_test_fold
from changeseg.errors import InputError
from changeseg.io.images import write_png
from tests.conftest import require_real_data


def test_tsunami_pairs_and_mask_polarity():
    root = require_real_data("tsunami")
    data = PCDDataset(root)
    assert data.names == ["00000000", "00000001", "00000002"]
    for i in range(3):
        sample = data[i]
        assert sample["reference"].shape == (224, 1024, 3) and sample["reference"].dtype == np.uint8
        assert sample["comparison"].shape == (224, 1024, 3)
        assert set(np.unique(sample["mask"])) == {0, 1}
        # this copy stores change white: changed pixels are the minority (21-30 %)
        assert 0.2 < sample["mask"].mean() < 0.31
    inverted = PCDDataset(root, invert_mask=True)[0]["mask"]
    np.testing.assert_array_equal(inverted, 1 - data[0]["mask"])


def test_tsunami_folds():
    root = require_real_data("tsunami")
    assert PCDDataset(root, split="test", fold=0).names == ["00000000", "00000001"]
    assert PCDDataset(root, split="train", fold=0).names == ["00000002"]
    assert PCDDataset(root, split="test", fold=1).names == ["00000002"]
    assert len(PCDDataset(root, split="train", fold=1)) == 2
    with pytest.raises(InputError, match="test part of fold 2"):
        PCDDataset(root, split="test", fold=2)


def test_generated_folds_partition_the_pairs(tmp_path, rng):
    for sub in ("t0", "t1", "mask"):
        (tmp_path / sub).mkdir()
    for i in range(20):
        name = f"{i:08d}"
        for sub in ("t0", "t1"):
            write_png(
                tmp_path / sub / f"{name}.png", rng.integers(0, 256, (4, 16, 3), dtype=np.uint8)
            )
        write_png(tmp_path / "mask" / f"{name}.png", np.full((4, 16), 255 * (i % 2), np.uint8))
    tests = [set(PCDDataset(tmp_path, split="test", fold=k).names) for k in range(5)]
    assert all(len(t) == 4 for t in tests)
    assert set().union(*tests) == set(PCDDataset(tmp_path).names)
    for k in range(5):
        train = set(PCDDataset(tmp_path, split="train", fold=k).names)
        assert len(train) == 16 and train.isdisjoint(tests[k])
        assert all(in_test_fold(int(n), k) for n in tests[k])
    assert PCDDataset(tmp_path, split="test", fold=3).names == [
        "00000006",
        "00000007",
        "00000016",
        "00000017",
    ]
    # raw PCD convention: change is black
    raw = PCDDataset(tmp_path, invert_mask=True)
    assert raw[0]["mask"].min() == 1 and raw[1]["mask"].max() == 0


def test_missing_layout(tmp_path):
    with pytest.raises(InputError, match="t0/, t1/ and mask/"):
        PCDDataset(tmp_path)
    with pytest.raises(InputError, match="fold"):
        PCDDataset(tmp_path, fold=5)
