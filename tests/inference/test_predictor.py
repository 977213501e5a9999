"""ChangeDetector: loading, every input type, bf16 vs fp32, sizes, regions and overlays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from changeseg.errors import CheckpointError, InputError
from changeseg.hardware import cpu_supports_bf16
from changeseg.inference.predictor import ChangeDetector
from changeseg.io.images import write_png
from tests.conftest import require_real_data, splitting_copy, touching_discs


@pytest.fixture
def pair(rng):
    reference = rng.integers(0, 256, (48, 72, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[10:30, 20:50] = 255 - comparison[10:30, 20:50]
    return reference, comparison


def test_save_load_round_trip_gives_identical_outputs(tiny_checkpoint, tmp_path, pair):
    first = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    first.save_pretrained(tmp_path / "again")
    second = ChangeDetector.from_pretrained(tmp_path / "again", precision="fp32")
    a = first.predict_proba(*pair)
    b = second.predict_proba(*pair)
    assert np.array_equal(a, b)


def test_every_input_type_gives_the_same_answer(tiny_checkpoint, tmp_path, pair):
    detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    reference, comparison = pair
    write_png(tmp_path / "r.png", reference)
    write_png(tmp_path / "c.png", comparison)
    expected = detector.predict(reference, comparison).probability
    as_paths = detector.predict(tmp_path / "r.png", str(tmp_path / "c.png")).probability
    as_pil = detector.predict(Image.fromarray(reference), Image.fromarray(comparison)).probability
    assert np.array_equal(expected, as_paths) and np.array_equal(expected, as_pil)
    rgba = np.dstack([comparison, np.full(comparison.shape[:2], 255, np.uint8)])
    assert np.array_equal(detector.predict(reference, rgba).probability, expected)
    sixteen = detector.predict(reference.astype(np.uint16) * 257, comparison.astype(np.uint16) * 257)
    assert np.allclose(sixteen.probability, expected, atol=1e-5)
    grey = detector.predict(reference[:, :, 0], comparison[:, :, 0])
    assert grey.probability.shape == (48, 72)


def test_bf16_channels_last_agrees_with_fp32(tiny_checkpoint, pair):
    fp32 = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32").predict(*pair)
    bf16_detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="bf16")
    assert bf16_detector.precision == "bf16"
    bf16 = bf16_detector.predict(*pair)
    assert 0.05 < fp32.changed_fraction < 0.95  # the check is meaningless on an all-same mask
    assert (fp32.mask == bf16.mask).mean() > 0.99
    assert np.abs(fp32.probability - bf16.probability).mean() < 0.02


def test_auto_precision_follows_the_cpu(tiny_checkpoint):
    detector = ChangeDetector.from_pretrained(tiny_checkpoint)
    assert detector.precision == ("bf16" if cpu_supports_bf16() else "fp32")


def test_result_contents_regions_and_overlay(tiny_checkpoint, pair, tmp_path):
    detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    result = detector.predict(*pair, min_area=5)
    assert result.probability.dtype == np.float32 and result.probability.shape == (48, 72)
    assert np.array_equal(result.mask, result.mask & (result.probability > 0.5))
    assert sum(r.area for r in result.regions) == int(result.mask.sum())
    assert all(r.area >= 5 for r in result.regions)
    overlay = result.overlay()
    assert overlay.shape == (48, 72, 3) and overlay.dtype == np.uint8
    if result.mask.any():
        assert not np.array_equal(overlay[result.mask], pair[1][result.mask])
    assert np.array_equal(overlay[~result.mask & (overlay != [255, 255, 0]).any(-1)],
                          pair[1][~result.mask & (overlay != [255, 255, 0]).any(-1)])
    written = result.save(tmp_path / "out", save_probability=True)
    assert sorted(p.name for p in written) == ["mask.png", "overlay.png", "probability.png",
                                                "regions.json"]
    summary = json.loads((tmp_path / "out" / "regions.json").read_text())
    assert summary["region_count"] == len(result.regions)


def test_threshold_controls_the_mask(tiny_checkpoint, pair):
    detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    low = detector.predict(*pair, threshold=0.01).mask.sum()
    high = detector.predict(*pair, threshold=0.99).mask.sum()
    assert low >= high
    with pytest.raises(InputError, match="threshold"):
        detector.predict(*pair, threshold=1.5)


def test_mismatched_sizes_name_both_sizes_unless_resized(tiny_checkpoint, pair):
    detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    small = pair[1][:40, :60]
    with pytest.raises(InputError, match="72×48.*60×40"):
        detector.predict(pair[0], small)
    assert detector.predict(pair[0], small, resize=True).mask.shape == (48, 72)


def test_unknown_models_and_presets(tmp_path):
    with pytest.raises(CheckpointError, match="unknown model 'nope'"):
        ChangeDetector.from_pretrained("nope")
    with pytest.raises(CheckpointError, match="not found"):
        ChangeDetector.from_pretrained(tmp_path / "missing")
    untrained = ChangeDetector.from_pretrained("c3po-mobilenetv2-fcn")
    assert not untrained.trained and untrained.config.metadata["preset"] == "c3po-mobilenetv2-fcn"
    assert "ImageNet" in untrained.config.metadata["init"]


def test_predicts_on_a_real_pair(tiny_checkpoint):
    root = require_real_data("tsunami")
    detector = ChangeDetector.from_pretrained(tiny_checkpoint)
    result = detector.predict(root / "t0" / "00000000.jpg", root / "t1" / "00000000.jpg")
    assert result.mask.shape == (224, 1024)
    assert torch.isfinite(torch.from_numpy(result.probability)).all()


def test_the_models_own_min_area_is_the_default(tiny_checkpoint, pair, tmp_path):
    import shutil

    folder = tmp_path / "with-min-area"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    plain = ChangeDetector.from_pretrained(folder, precision="fp32").predict(*pair)
    areas = sorted(r.area for r in plain.regions)
    assert areas, "the tiny model should find the inverted block"
    config["metadata"]["min_area"] = areas[-1] + 1  # larger than every region
    (folder / "config.json").write_text(json.dumps(config))
    detector = ChangeDetector.from_pretrained(folder, precision="fp32")
    assert detector.predict(*pair).regions == []
    assert not detector.predict(*pair).mask.any()
    assert len(detector.predict(*pair, min_area=0).regions) == len(plain.regions)


def test_the_models_own_split_is_the_default(tiny_checkpoint, tmp_path, monkeypatch):
    discs = touching_discs()
    change = np.where(discs, 0.9, 0.05).astype(np.float32)
    # the network's map depends on its weights; the discs' probabilities are fixed here
    monkeypatch.setattr(ChangeDetector, "predict_proba", lambda self, r, c: np.stack([1 - change, change]))
    image = np.zeros((*discs.shape, 3), np.uint8)
    plain = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32").predict(image, image)
    assert len(plain.regions) == 1 and np.array_equal(plain.mask, discs)
    folder = splitting_copy(tiny_checkpoint, tmp_path / "with-split")
    detector = ChangeDetector.from_pretrained(folder, precision="fp32")
    result = detector.predict(image, image)
    assert sorted(r.box for r in result.regions) == [(4, 4, 25, 25), (15, 15, 36, 36)]
    assert np.array_equal(result.mask, discs)
    assert len(detector.predict(image, image, split_depth=0).regions) == 1  # 0 turns it off
    assert len(detector.predict(image, image, split_cover=0.5).regions) == 1  # the boxes must fit better
    assert len(ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32").predict(
        image, image, split_depth=1, split_cover=0.95).regions) == 2
    with pytest.raises(InputError, match="split depth must be"):
        detector.predict(image, image, split_depth=-1)


def test_the_models_own_box_grow_scales_the_region_boxes(tiny_checkpoint, tmp_path, monkeypatch):
    import shutil

    core = np.zeros((40, 40), bool)
    core[16:24, 12:20] = True  # an 8×8 core: box (12, 16, 20, 24)
    change = np.where(core, 0.9, 0.05).astype(np.float32)
    monkeypatch.setattr(ChangeDetector, "predict_proba", lambda self, r, c: np.stack([1 - change, change]))
    image = np.zeros((40, 40, 3), np.uint8)
    plain = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32").predict(image, image)
    assert [r.box for r in plain.regions] == [(12, 16, 20, 24)]
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "grown")
    config = json.loads((folder / "config.json").read_text())
    config["metadata"]["box_grow"] = 1.5
    (folder / "config.json").write_text(json.dumps(config))
    result = ChangeDetector.from_pretrained(folder, precision="fp32").predict(image, image)
    assert [r.box for r in result.regions] == [(10, 14, 22, 26)]  # 12×12 about the same centre
    assert np.array_equal(result.mask, plain.mask) and result.regions[0].area == 64
