"""FolderDataset on the real LEVIR-CD, DSIFN-CD and EGY crops, and on generated trees."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.data.datasets.folder import FolderDataset
from changeseg.errors import InputError
from changeseg.io.images import write_png
from tests.conftest import require_real_data


def _check_sample(sample, size=(256, 256)):
    assert sample["reference"].shape == (*size, 3) and sample["reference"].dtype == np.uint8
    assert sample["comparison"].shape == (*size, 3) and sample["comparison"].dtype == np.uint8
    assert sample["mask"].shape == size and sample["mask"].dtype == np.uint8
    assert set(np.unique(sample["mask"])) <= {0, 1}


def test_levir_samples_all_and_prefix_splits():
    root = require_real_data("levir_samples")
    data = FolderDataset(root)
    assert len(data) == 11 and data.class_names == ["unchanged", "changed"]
    assert data.names[0] == "test_2_0000_0000"
    for i in (0, len(data) - 1):
        _check_sample(data[i])
    sizes = {s: len(FolderDataset(root, split=s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 1, "test": 7}
    assert all(n.startswith("train_") for n in FolderDataset(root, split="train").names)
    # one LEVIR crop has no change at all; the others have some
    empty = FolderDataset(root)[FolderDataset(root).index_of("train_386_0512_0768")]
    assert empty["mask"].sum() == 0
    assert FolderDataset(root)[0]["mask"].mean() > 0.1


def test_dsifn_samples():
    root = require_real_data("dsifn_samples")
    data = FolderDataset(root)
    assert len(data) == 10 and data.names[:3] == ["0_2", "1_1", "2_4"]
    sample = data[data.index_of("4_4")]
    _check_sample(sample)
    assert 0.6 < sample["mask"].mean() < 0.7  # 4_4 is mostly changed
    with pytest.raises(InputError, match="train"):
        FolderDataset(root, split="train")


def test_egy_ncc_split_subfolders():
    root = require_real_data("egy_ncc")
    sizes = {s: len(FolderDataset(root, split=s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 4, "val": 3, "test": 2}
    val = FolderDataset(root, split="val")
    assert val.names == ["val_1", "val_2", "val_3"]
    _check_sample(val[2])
    everything = FolderDataset(root)
    assert len(everything) == 9 and everything.names[0] == "train/train_1"


def _tree(root, names, rng, size=(8, 8)):
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        write_png(root / "A" / f"{name}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        write_png(root / "B" / f"{name}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        write_png(root / "label" / f"{name}.png", (rng.random(size) > 0.5).astype(np.uint8) * 255)


def test_list_file_split(tmp_path, rng):
    _tree(tmp_path, ["a", "b", "c"], rng)
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "train.txt").write_text("a.png\nc\n\n")
    data = FolderDataset(tmp_path, split="train")
    assert data.names == ["a", "c"]
    _check_sample(data[1], (8, 8))


def test_bad_layouts_are_clear_errors(tmp_path, rng):
    with pytest.raises(InputError, match="expected A/, B/ and label/"):
        FolderDataset(tmp_path)
    _tree(tmp_path, ["a"], rng)
    (tmp_path / "B" / "a.png").unlink()
    with pytest.raises(InputError, match="B/a"):
        FolderDataset(tmp_path)
    write_png(tmp_path / "B" / "a.png", np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(InputError, match="a: reference is 8×8 but comparison is 8×9"):
        FolderDataset(tmp_path)[0]


def test_typed_labels_read_as_class_indices(tmp_path, rng):
    _tree(tmp_path, ["a"], rng)
    typed = np.array([[0, 1, 2, 3, 255, 0, 0, 0]] * 8, np.uint8)
    (tmp_path / "label_typed").mkdir()
    write_png(tmp_path / "label_typed" / "a.png", typed)
    classes = ["unchanged", "appear", "disappear", "exchange"]
    data = FolderDataset(tmp_path, label_dir="label_typed", class_names=classes)
    assert data.class_names == classes
    assert np.array_equal(data[0]["mask"], typed)
    # the same file read as a binary label is thresholded, as before
    assert set(np.unique(FolderDataset(tmp_path, label_dir="label_typed")[0]["mask"])) == {0, 1}
    write_png(tmp_path / "label_typed" / "a.png", typed + 4)
    with pytest.raises(InputError, match="not class indices"):
        FolderDataset(tmp_path, label_dir="label_typed", class_names=classes)[0]
    with pytest.raises(InputError, match="two or more"):
        FolderDataset(tmp_path, class_names="appear")
