"""DeepPCBDataset on the real trainval split, and box parsing on generated files."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from changeseg.data.datasets.deeppcb import DeepPCBDataset, rasterise_boxes, read_boxes
from changeseg.errors import InputError
from tests.conftest import require_real_data


def test_trainval_listing():
    root = require_real_data("deeppcb")
    data = DeepPCBDataset(root, split="trainval")
    assert len(data) == 1000 and len(set(data.names)) == 1000
    everything = DeepPCBDataset(root)
    assert sorted(everything.names) == sorted(data.names)
    groups = Counter(name[:5] for name in data.names)
    assert groups == {
        "00041": 200,
        "13000": 198,
        "20085": 291,
        "44000": 50,
        "50600": 50,
        "77000": 100,
        "92000": 111,
    }
    assert DeepPCBDataset(root / "PCBData", split="trainval").names == data.names


def test_samples_boxes_and_masks():
    data = DeepPCBDataset(require_real_data("deeppcb"), split="trainval")
    for index in (0, 3, 999):
        sample = data[index]
        assert sample["reference"].shape == (640, 640, 1) and sample["reference"].dtype == np.uint8
        assert sample["comparison"].shape == (640, 640, 1)
        boxes = sample["boxes"]
        assert boxes.ndim == 2 and boxes.shape[1] == 5 and 1 <= len(boxes) <= 20
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:4] < 640).all()
        assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
        assert set(boxes[:, 4]) <= set(range(1, 7))
        mask = sample["mask"]
        assert set(np.unique(mask)) == {0, 1}
        for x1, y1, x2, y2, _ in boxes:
            assert mask[y1 : y2 + 1, x1 : x2 + 1].all()
        assert mask.sum() == rasterise_boxes(boxes, 640, 640).sum()
    # the first listed pair: 20085000
    assert data.names[0] == "20085000"


def test_typed_masks_and_every_annotation_inside_the_image():
    root = require_real_data("deeppcb")
    typed = DeepPCBDataset(root, split="trainval", typed_mask=True)
    assert typed.class_names == [
        "unchanged",
        "open",
        "short",
        "mousebite",
        "spur",
        "copper",
        "pin-hole",
    ]
    sample = typed[0]
    assert set(np.unique(sample["mask"])) - {0} <= set(sample["boxes"][:, 4].tolist())
    kinds: Counter[int] = Counter()
    for _, _, box_file in typed._paths:
        boxes = read_boxes(box_file)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:4] <= 640).all()
        kinds.update(boxes[:, 4].tolist())
    assert set(kinds) == set(range(1, 7)) and sum(kinds.values()) > 6000


def test_box_parsing(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("1,2,5,6,3\n10 10 12 11 6\n\n")
    boxes = read_boxes(path)
    assert boxes.tolist() == [[1, 2, 5, 6, 3], [10, 10, 12, 11, 6]]
    mask = rasterise_boxes(boxes, 16, 16, typed=True)
    assert (mask[2:7, 1:6] == 3).all() and (mask[10:12, 10:13] == 6).all()
    assert (mask > 0).sum() == 25 + 6
    path.write_text("1 2 3\n")
    with pytest.raises(InputError, match="x.txt:1"):
        read_boxes(path)
    with pytest.raises(InputError, match="PCBData"):
        DeepPCBDataset(tmp_path)
