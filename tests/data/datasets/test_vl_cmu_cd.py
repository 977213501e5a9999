"""VLCMUCDDataset on small generated trees in both published layouts (no real copy here)."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.data.datasets.vl_cmu_cd import VLCMUCDDataset
from changeseg.errors import InputError
from changeseg.io.images import write_png


def _binary_tree(root, rng):
    """train: 2 views × 2 rotations; test: 1 view. Masks have a known changed square."""
    layout = {
        "train": ["000_1_00_0", "000_1_00_1", "003_1_02_0", "003_1_02_1"],
        "test": ["007_1_00_0"],
    }
    for split, names in layout.items():
        for sub in ("t0", "t1", "mask"):
            (root / split / sub).mkdir(parents=True)
        for name in names:
            write_png(
                root / split / "t0" / f"{name}.png",
                rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
            )
            write_png(
                root / split / "t1" / f"{name}.png",
                rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
            )
            mask = np.zeros((16, 16), np.uint8)
            mask[4:8, 2:10] = 255
            write_png(root / split / "mask" / f"{name}.png", mask)


def test_binary_release(tmp_path, rng):
    _binary_tree(tmp_path, rng)
    train = VLCMUCDDataset(tmp_path, split="train")
    assert train.names == ["000_1_00_0", "000_1_00_1", "003_1_02_0", "003_1_02_1"]
    assert VLCMUCDDataset(tmp_path, split="train", include_rotated=False).names == [
        "000_1_00_0",
        "003_1_02_0",
    ]
    sample = train[0]
    assert sample["reference"].shape == (16, 16, 3) and sample["mask"].dtype == np.uint8
    assert sample["mask"].sum() == 32 and sample["mask"][4:8, 2:10].all()
    both = VLCMUCDDataset(tmp_path)
    assert len(both) == 5 and both.names[-1] == "test/007_1_00_0"
    assert VLCMUCDDataset(tmp_path / "test").names == ["007_1_00_0"]  # a split folder as root


def test_raw_release(tmp_path, rng):
    seq = tmp_path / "test" / "Construction_site"
    (seq / "RGB").mkdir(parents=True)
    (seq / "GT").mkdir()
    for index in ("00", "01"):
        write_png(seq / "RGB" / f"1_{index}.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        write_png(seq / "RGB" / f"2_{index}.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    gt = np.zeros((12, 16, 3), np.uint8)
    gt[:3] = 255  # sky: not a change
    gt[5:7, 5:9] = (200, 30, 30)  # a coloured change class
    write_png(seq / "GT" / "gt00.png", gt)
    write_png(seq / "GT" / "gt01.png", np.zeros((12, 16, 3), np.uint8))
    data = VLCMUCDDataset(tmp_path, split="test")
    assert data.names == ["Construction_site/00", "Construction_site/01"]
    mask = data[0]["mask"]
    assert mask.sum() == 8 and mask[5:7, 5:9].all() and mask[:3].sum() == 0
    assert data[1]["mask"].sum() == 0


def test_errors(tmp_path, rng):
    with pytest.raises(InputError, match="expected .*t0,t1,mask"):
        VLCMUCDDataset(tmp_path)
    _binary_tree(tmp_path, rng)
    (tmp_path / "train" / "t1" / "000_1_00_0.png").unlink()
    with pytest.raises(InputError, match="000_1_00_0"):
        VLCMUCDDataset(tmp_path, split="train")
    with pytest.raises(InputError, match="split"):
        VLCMUCDDataset(tmp_path, split="val")
