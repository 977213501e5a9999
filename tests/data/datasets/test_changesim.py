"""ChangeSimDataset on a small generated tree of the released layout (no real copy here)."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.data.datasets.changesim import CLASS_COLOURS, ChangeSimDataset, colours_to_classes
from changeseg.errors import InputError
from changeseg.io.images import write_png

H, W = 12, 16


def _label() -> np.ndarray:
    """A colour label with one block per class 0-4 and one unknown colour."""
    label = np.zeros((H, W, 3), np.uint8)
    for cls in range(1, 5):
        label[2 * cls : 2 * cls + 2, 0:4] = CLASS_COLOURS[cls]
    label[0:2, 10:12] = (7, 7, 7)  # not a ChangeSim class colour
    return label


def _tree(root, rng):
    layout = {"Query_Seq_Train": ["Warehouse_0", "Warehouse_1"], "Query_Seq_Test": ["Warehouse_6"]}
    for split, warehouses in layout.items():
        for warehouse in warehouses:
            for seq in ("Seq_0", "Seq_1", "Seq_0_dust"):
                base = root / "Query" / split / warehouse / seq
                for frame in ("0", "10", "2"):
                    write_png(
                        base / "rgb" / f"{frame}.png",
                        rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                    )
                    write_png(
                        base / "t0" / "rgb" / f"{frame}.png",
                        rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                    )
                    write_png(base / "change_segmentation" / f"{frame}.png", _label())


def test_colour_mapping():
    classes = colours_to_classes(_label())
    for cls in range(1, 5):
        assert (classes[2 * cls : 2 * cls + 2, 0:4] == cls).all()
    assert (classes[0:2, 10:12] == 255).all() and classes[11, 15] == 0


def test_multi_and_binary(tmp_path, rng):
    _tree(tmp_path, rng)
    train = ChangeSimDataset(tmp_path, split="train", classes="multi")
    assert len(train) == 2 * 2 * 3  # warehouses × Seq_0/Seq_1 × frames
    assert train.names[:3] == ["Warehouse_0/Seq_0/0", "Warehouse_0/Seq_0/2", "Warehouse_0/Seq_0/10"]
    assert train.class_names == ["static", "new", "missing", "rotated", "replaced"]
    sample = train[0]
    assert sample["reference"].shape == (H, W, 3) and sample["comparison"].dtype == np.uint8
    assert set(np.unique(sample["mask"])) == {0, 1, 2, 3, 4, 255}
    binary = ChangeSimDataset(tmp_path, split="train")
    assert binary.class_names == ["unchanged", "changed"]
    mask = binary[0]["mask"]
    assert set(np.unique(mask)) == {0, 1} and mask.sum() == 4 * 2 * 4 + 4
    assert len(ChangeSimDataset(tmp_path, split="test")) == 6
    assert len(ChangeSimDataset(tmp_path)) == 18
    assert len(ChangeSimDataset(tmp_path, split="test", sequences=None)) == 9  # with the dust run
    split_root = ChangeSimDataset(tmp_path / "Query" / "Query_Seq_Test")
    assert split_root.names[0] == "Warehouse_6/Seq_0/0"


def test_errors(tmp_path, rng):
    with pytest.raises(InputError, match="Query"):
        ChangeSimDataset(tmp_path)
    with pytest.raises(InputError, match="classes"):
        ChangeSimDataset(tmp_path, classes="typed")
    _tree(tmp_path, rng)
    (
        tmp_path / "Query" / "Query_Seq_Train" / "Warehouse_0" / "Seq_0" / "t0" / "rgb" / "2.png"
    ).unlink()
    with pytest.raises(InputError, match="t0/rgb/2"):
        ChangeSimDataset(tmp_path, split="train")
