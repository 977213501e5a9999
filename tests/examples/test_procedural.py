"""The procedurally drawn example pairs (examples/pcb, examples/aerial): real properties and drift.

Each pair is regenerated into a temporary folder through `examples/make_examples.py`, read back
with changeseg's own readers and checked; the committed files must equal a fresh generation.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from changeseg.data.datasets.deeppcb import DEFECT_TYPES, rasterise_boxes, read_boxes
from changeseg.io.images import read_image, read_mask

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OPEN, SHORT, MOUSEBITE, SPUR, COPPER, PINHOLE = range(1, 7)


@pytest.fixture(scope="module")
def scripts() -> tuple[ModuleType, ModuleType]:
    """`examples/procedural.py` and `examples/make_examples.py`, imported as scripts see them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXAMPLES))
        return importlib.import_module("procedural"), importlib.import_module("make_examples")


@pytest.fixture(scope="module")
def pcb(scripts, tmp_path_factory) -> dict:
    """The board written by `write_pcb` into a temporary folder and read back."""
    _, make_examples = scripts
    folder = tmp_path_factory.mktemp("pcb")
    make_examples.write_pcb(folder, make_examples.PCB_SEED)
    return {
        "folder": folder,
        "reference": read_mask(folder / "reference.png"),
        "comparison": read_mask(folder / "comparison.png"),
        "truth": read_mask(folder / "truth.png"),
        "boxes": read_boxes(folder / "boxes.txt"),
        "raw": {name: read_image(folder / f"{name}.png") for name in ("reference", "comparison", "truth")},
    }


@pytest.fixture(scope="module")
def aerial(scripts, tmp_path_factory) -> dict:
    """The aerial pair written by `write_aerial` into a temporary folder and read back."""
    _, make_examples = scripts
    folder = tmp_path_factory.mktemp("aerial")
    make_examples.write_aerial(folder, make_examples.AERIAL_SEED)
    return {
        "folder": folder,
        "reference": read_image(folder / "reference.png"),
        "comparison": read_image(folder / "comparison.png"),
        "truth": read_mask(folder / "truth.png"),
    }


# --- pcb ------------------------------------------------------------------------------------


def test_pcb_images_are_binary_single_channel_640(pcb):
    for name, image in pcb["raw"].items():
        assert image.shape == (640, 640, 1), name
        assert image.dtype == np.uint8, name
        assert set(np.unique(image)) <= {0, 255}, name
    copper = (pcb["reference"] > 0).mean()
    assert 0.05 < copper < 0.4  # a routed board, neither empty nor flooded


def test_pcb_has_one_box_of_each_deeppcb_type(pcb):
    boxes = pcb["boxes"]
    assert boxes.shape == (6, 5)
    assert sorted(boxes[:, 4].tolist()) == list(range(1, len(DEFECT_TYPES) + 1))
    width, height = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    assert (boxes[:, :4] >= 0).all() and (boxes[:, :4] < 640).all()
    assert (width >= 8).all() and (height >= 8).all()
    assert (width <= 60).all() and (height <= 60).all()


def test_pcb_truth_is_the_rasterised_boxes(pcb):
    expected = rasterise_boxes(pcb["boxes"], 640, 640) * 255
    np.testing.assert_array_equal(pcb["truth"], expected)


def test_pcb_pair_differs_only_inside_the_boxes(pcb):
    differs = pcb["reference"] != pcb["comparison"]
    assert not (differs & (pcb["truth"] == 0)).any(), "a changed pixel lies outside every box"
    for x1, y1, x2, y2, kind in pcb["boxes"]:
        inside = differs[y1 : y2 + 1, x1 : x2 + 1]
        assert inside.any(), f"box of type {kind} holds no change"
        ys, xs = np.nonzero(inside)
        margin = min(xs.min(), ys.min(), x2 - x1 - xs.max(), y2 - y1 - ys.max())
        assert margin >= 3 or 0 in (x1, y1) or 639 in (x2, y2), f"type {kind}: defect touches its box"


def _box(image: np.ndarray, box: np.ndarray, pad: int = 0) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    return image[max(y1 - pad, 0) : y2 + pad + 1, max(x1 - pad, 0) : x2 + pad + 1]


def _components(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def test_pcb_defects_look_like_their_type(pcb):
    reference, comparison = pcb["reference"] > 0, pcb["comparison"] > 0
    _, ref_labels = cv2.connectedComponents(reference.astype(np.uint8), connectivity=8)
    _, holes = cv2.connectedComponents((~comparison).astype(np.uint8), connectivity=4)
    for box in pcb["boxes"]:
        kind = int(box[4])
        added = _box(comparison & ~reference, box)
        removed = _box(reference & ~comparison, box)
        assert added.any() != removed.any(), f"type {kind} both adds and removes copper"
        ring = cv2.dilate(_box(comparison & ~reference, box, 2).astype(np.uint8), np.ones((3, 3), np.uint8))
        touched = set(np.unique(_box(ref_labels, box, 2)[ring > 0])) - {0}
        if kind in (OPEN, MOUSEBITE, PINHOLE):
            assert removed.any(), f"type {kind} should remove copper"
            (label,) = set(np.unique(_box(ref_labels, box)[removed]))
            pieces = _components(comparison & (ref_labels == label))
            assert pieces == (2 if kind == OPEN else 1), f"type {kind} leaves {pieces} piece(s)"
        else:
            assert added.any(), f"type {kind} should add copper"
            expected = {SHORT: 2, SPUR: 1, COPPER: 0}[kind]
            assert len(touched) == expected, f"type {kind} touches {len(touched)} conductor(s)"
        if kind == PINHOLE:  # the hole is enclosed by copper: its background piece stays in the box
            (hole,) = set(np.unique(_box(holes, box)[removed]))
            assert (holes == hole).sum() == (_box(holes, box) == hole).sum()


def test_pcb_generation_is_deterministic(scripts, pcb):
    procedural, make_examples = scripts
    again = procedural.make_pcb_pair(make_examples.PCB_SEED)
    np.testing.assert_array_equal(again.reference, pcb["reference"])
    np.testing.assert_array_equal(again.comparison, pcb["comparison"])
    np.testing.assert_array_equal(again.truth, pcb["truth"])
    np.testing.assert_array_equal(again.boxes, pcb["boxes"])


def test_committed_pcb_example_matches_the_code(pcb):
    committed = EXAMPLES / "pcb"
    for name in ("reference", "comparison", "truth"):
        np.testing.assert_array_equal(
            read_mask(committed / f"{name}.png"), pcb[name],
            err_msg=f"examples/pcb/{name}.png is stale: rerun examples/make_examples.py",
        )
    assert (committed / "boxes.txt").read_text() == (pcb["folder"] / "boxes.txt").read_text()


# --- aerial ---------------------------------------------------------------------------------


def test_aerial_images_are_rgb_512(aerial):
    for name in ("reference", "comparison"):
        assert aerial[name].shape == (512, 512, 3), name
        assert aerial[name].dtype == np.uint8, name
    assert aerial["truth"].shape == (512, 512)
    assert set(np.unique(aerial["truth"])) == {0, 255}
    assert 0 < (aerial["truth"] > 0).mean() < 0.2


def test_aerial_change_is_strong_inside_truth_and_mild_outside(aerial):
    truth = aerial["truth"] > 0
    diff = np.abs(aerial["reference"].astype(np.float64) - aerial["comparison"]).mean(axis=2)
    inside, outside = diff[truth].mean(), diff[~truth].mean()
    assert inside > 3 * outside
    assert 1.0 < outside < 12.0  # the seasonal/illumination shift is there, and mild
    count, labels = cv2.connectedComponents(truth.astype(np.uint8))
    assert count - 1 >= 3  # several separate building changes
    for label in range(1, count):
        assert diff[labels == label].mean() > 15, f"change region {label} hardly differs"
    brighter = aerial["comparison"][~truth].astype(np.float64).mean() - aerial["reference"][~truth].mean()
    assert 0 < brighter < 15  # later date: a little brighter everywhere


def test_aerial_generation_is_deterministic(scripts, aerial):
    procedural, make_examples = scripts
    again = procedural.make_aerial_pair(make_examples.AERIAL_SEED)
    np.testing.assert_array_equal(again.reference, aerial["reference"])
    np.testing.assert_array_equal(again.comparison, aerial["comparison"])
    np.testing.assert_array_equal(again.truth, aerial["truth"])


def test_committed_aerial_example_matches_the_code(aerial):
    committed = EXAMPLES / "aerial"
    np.testing.assert_array_equal(read_mask(committed / "truth.png"), aerial["truth"])
    for name in ("reference", "comparison"):
        # float blur/colour conversion may round differently on other CPUs: allow a hair
        stale = np.abs(read_image(committed / f"{name}.png").astype(np.int16) - aerial[name]).mean()
        assert stale < 0.5, f"examples/aerial/{name}.png is stale: rerun examples/make_examples.py"
