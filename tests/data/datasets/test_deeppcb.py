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


def _components(mask: np.ndarray) -> int:
    import cv2

    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def test_separate_cuts_a_gap_between_touching_boxes_only():
    touching = np.array([[10, 10, 29, 29, 1], [30, 12, 49, 27, 2]])  # share the edge x = 29 | 30
    plain = rasterise_boxes(touching, 64, 64)
    assert _components(plain) == 1
    cut = rasterise_boxes(touching, 64, 64, separate=3)
    assert _components(cut) == 2
    # the gap is where the boxes grown by 3 px meet: x 27..32, y 9..30; nothing else changes
    band = np.zeros_like(plain, dtype=bool)
    band[9:31, 27:33] = True
    assert not cut[band].any() and (cut[~band] == plain[~band]).all()
    assert cut[10:30, 26].all() and cut[12:28, 33].all()
    # boxes that overlap by more than half of the smaller one stay one blob
    nested = np.array([[10, 10, 40, 40, 1], [15, 15, 30, 30, 5]])
    assert (rasterise_boxes(nested, 64, 64, separate=3) == rasterise_boxes(nested, 64, 64)).all()
    # boxes 2 px apart: a gap narrower than the growth is widened to 2 × growth - 2 px
    apart = np.array([[0, 0, 9, 9, 1], [12, 0, 21, 9, 1]])
    assert (rasterise_boxes(apart, 32, 32, separate=2) == rasterise_boxes(apart, 32, 32)).all()
    widened = rasterise_boxes(apart, 32, 32, separate=3)
    assert not widened[:10, 9:13].any() and widened[:10, 8].all() and widened[:10, 13].all()


def test_separate_gives_one_region_per_defect_on_real_boards():
    from changeseg.evaluation.metrics import BoxMetric

    root = require_real_data("deeppcb")
    scores = {}
    for gap in (0, 3):
        data = DeepPCBDataset(root, split="trainval", separate=gap)
        metric = BoxMetric(threshold=0.5, min_area=0)
        for index in range(0, 1000, 10):
            sample = data[index]
            metric.update(sample["mask"].astype(np.float32), sample["mask"], sample["name"],
                          boxes=sample["boxes"])
        scores[gap] = metric.compute()
    # the true mask merges some adjacent defects; with gaps nearly every defect is its own box
    assert scores[0]["counts"]["matched"] < scores[3]["counts"]["matched"]
    assert scores[3]["f1"] > 0.995 > scores[0]["f1"]


def test_separate_must_not_be_negative():
    with pytest.raises(InputError, match="separate must be >= 0"):
        DeepPCBDataset(require_real_data("deeppcb"), separate=-1)


def test_shrink_paints_each_box_core():
    boxes = np.array([[10, 10, 29, 19, 1], [30, 10, 49, 19, 2]])  # 20×10 boxes sharing an edge
    core = rasterise_boxes(boxes, 40, 64, shrink=0.2)
    expected = np.zeros((40, 64), np.uint8)
    expected[12:18, 14:26] = 1  # 4 px in from each side along x (20 × 0.2), 2 px along y
    expected[12:18, 34:46] = 1
    assert (core == expected).all()
    assert _components(rasterise_boxes(boxes, 40, 64)) == 1 and _components(core) == 2
    assert (rasterise_boxes(boxes, 40, 64, typed=True, shrink=0.2)[12:18, 34:46] == 2).all()


def test_shrunk_cores_grown_back_find_every_defect_on_real_boards():
    from changeseg.evaluation.metrics import BoxMetric

    root = require_real_data("deeppcb")
    plain = BoxMetric(threshold=0.5)
    shrunk = BoxMetric(threshold=0.5, grow=1 / (1 - 2 * 0.25))
    unscaled = BoxMetric(threshold=0.5)
    data = DeepPCBDataset(root, split="trainval", shrink=0.25)
    for index in range(0, 1000, 10):
        sample = data[index]
        assert sample["boxes"].shape[0] >= 1  # the annotated boxes stay as they are
        full = rasterise_boxes(sample["boxes"], 640, 640)
        plain.update(full.astype(np.float32), full, sample["name"], boxes=sample["boxes"])
        core = sample["mask"]
        assert core.sum() < 0.5 * full.sum()
        shrunk.update(core.astype(np.float32), full, sample["name"], boxes=sample["boxes"])
        unscaled.update(core.astype(np.float32), full, sample["name"], boxes=sample["boxes"])
    assert shrunk.compute()["f1"] > 0.995 > plain.compute()["f1"]
    assert unscaled.compute()["f1"] < 0.5  # a core's box is ~1/4 of the defect's: IoU < 0.33


@pytest.mark.parametrize("shrink", [-0.1, 0.5, 0.7])
def test_shrink_must_leave_a_core(shrink):
    with pytest.raises(InputError, match=r"shrink must be in \[0, 0.5\)"):
        rasterise_boxes(np.array([[0, 0, 9, 9, 1]]), 16, 16, shrink=shrink)
    with pytest.raises(InputError, match="shrink must be"):
        DeepPCBDataset(require_real_data("deeppcb"), shrink=shrink)


def test_cores_paint_whole_boxes_and_their_cores_on_real_boards():
    root = require_real_data("deeppcb")
    plain = DeepPCBDataset(root, split="trainval")
    both = DeepPCBDataset(root, split="trainval", cores=0.2)
    assert both.class_names == ["unchanged", "changed", "core"]
    for index in (0, 500, 999):
        sample = both[index]
        whole = plain[index]["mask"]
        core = rasterise_boxes(sample["boxes"], 640, 640, shrink=0.2)
        assert ((sample["mask"] > 0) == (whole > 0)).all()  # the change is the whole boxes
        assert ((sample["mask"] == 2) == (core > 0)).all()  # class 2 is exactly the cores
        assert 0 < (sample["mask"] == 2).sum() < (sample["mask"] == 1).sum() + (sample["mask"] == 2).sum()


@pytest.mark.parametrize("options", [{"cores": 0.5}, {"cores": -0.1}, {"cores": 0.2, "shrink": 0.2},
                                     {"cores": 0.2, "typed_mask": True}])
def test_cores_reject_bad_values_and_other_label_options(options):
    with pytest.raises(InputError, match="cores"):
        DeepPCBDataset(require_real_data("deeppcb"), **options)
