"""Branch activation maps (the patent's Fig. 12): from the model, as images, through the pipeline."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.inference.branches import check_branch_size, render_branch_maps, write_branch_maps
from changeseg.io.images import read_image


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    from changeseg.inference.predictor import ChangeDetector

    return ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")


@pytest.fixture
def pair(rng):
    reference = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[10:30, 15:45] = 255 - comparison[10:30, 15:45]
    return reference, comparison


def test_the_model_returns_every_branch_of_every_level(detector, pair):
    levels, strides = detector.branch_maps(*pair)
    assert strides == [4, 8, 16, 32]
    assert [sorted(level) for level in levels] == [["a", "d", "e", "i"]] * 4
    for level, stride in zip(levels, strides):
        for activation in level.values():
            assert activation.dtype == np.float32 and activation.min() >= 0.0
            assert activation.shape == (-(-64 // stride), -(-96 // stride))  # the input padded to 32s


def test_swapping_the_pair_swaps_appear_and_disappear(detector, pair):
    """With the paper's shared a/d conv, a(A, B) is d(B, A) exactly; i and e do not care."""
    forward, _ = detector.branch_maps(*pair)
    backward, _ = detector.branch_maps(pair[1], pair[0])
    for there, back in zip(forward, backward):
        np.testing.assert_allclose(there["a"], back["d"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(there["d"], back["a"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(there["e"], back["e"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(there["i"], back["i"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(forward[0]["a"], forward[0]["d"])  # the two directions do differ


def test_maps_are_image_sized_and_share_one_scale_per_level():
    levels = [{"a": np.full((4, 5), 2.0, np.float32), "d": np.full((4, 5), 1.0, np.float32)},
              {"a": np.zeros((2, 3), np.float32), "d": np.zeros((2, 3), np.float32)}]
    images, described = render_branch_maps(levels, [4, 8], (13, 18))
    assert sorted(images) == ["level1_a", "level1_d", "level2_a", "level2_d"]
    assert all(image.shape == (13, 18) and image.dtype == np.uint8 for image in images.values())
    assert images["level1_a"].min() == 255 and images["level1_d"].max() == 128  # d is half of a
    assert images["level2_a"].max() == 0  # an all-zero level stays black (no division by zero)
    assert described["levels"][0]["stride"] == 4 and described["levels"][0]["maps"]["a"]["name"] == "appear"
    assert described["levels"][0]["maps"]["d"]["mean"] == 1.0


def test_written_maps_land_in_branches(tmp_path):
    levels = [{"i": np.ones((3, 3), np.float32), "e": np.zeros((3, 3), np.float32)}]
    written = write_branch_maps(tmp_path, levels, [4], (10, 12))
    assert sorted(p.name for p in written) == ["branches.json", "level1_e.png", "level1_i.png"]
    assert read_image(tmp_path / "branches" / "level1_i.png").shape == (10, 12, 1)
    assert json.loads((tmp_path / "branches" / "branches.json").read_text())["size"] == [12, 10]


def test_the_pipeline_writes_branch_maps_before_regions_json(detector, pair, tmp_path):
    from changeseg.inference.pipeline import DetectOptions, PairInput, detect_to_folder

    options = DetectOptions(save_branches=True)
    summary = detect_to_folder(detector, PairInput(*pair), tmp_path / "out", options)
    folder = tmp_path / "out" / "branches"
    assert len(list(folder.glob("level*_*.png"))) == 16 and (folder / "branches.json").is_file()
    assert read_image(folder / "level1_e.png").shape == (50, 70, 1)
    changed = read_image(folder / "level1_e.png")[10:30, 15:45].mean()
    unchanged = read_image(folder / "level1_e.png")[35:, 50:].mean()
    assert changed > unchanged  # the exchange branch lights up where the pair differs
    last = (tmp_path / "out" / "regions.json").stat().st_mtime_ns
    assert last >= (folder / "branches.json").stat().st_mtime_ns  # regions.json still marks completion
    assert summary["width"] == 70


def test_backends_without_branch_maps_and_oversized_pairs_are_refused(pair, tmp_path):
    from changeseg.inference.branches import branch_maps_of

    with pytest.raises(InputError, match="PyTorch backend"):
        branch_maps_of(SimpleNamespace(), *pair)
    with pytest.raises(InputError, match="--tile-size"):
        check_branch_size((2000, 300, 3), 1024)
    check_branch_size((2000, 300, 3), 0)  # no tiling: any size
