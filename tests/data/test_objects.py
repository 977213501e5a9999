"""Tests of the object bank (changeseg.data.objects) and copy-paste change in the generator."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from changeseg.data.copy_paste import match_colour, remove_object, shadow_of
from changeseg.data.objects import ObjectBank, scene_layout
from changeseg.data.synthetic.generator import SyntheticPairGenerator
from changeseg.data.synthetic.photos import find_photos
from changeseg.errors import InputError
from changeseg.labels import APPEAR, DISAPPEAR, EXCHANGE
from tests.conftest import require_real_data

CLEAN = {"p_shadow": 0.0, "p_illumination": 0.0, "p_blur": 0.0, "p_noise": 0.0, "p_jpeg": 0.0,
         "p_season": 0.0,
         "p_misregistration": 0.0, "p_no_change": 0.0}


def write_alpha_object(path: Path, rng: np.random.Generator, size: int = 60) -> np.ndarray:
    """An RGBA PNG: a random-coloured disc on a transparent square; returns its alpha."""
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[:, :, :3] = rng.integers(0, 256, 3)
    disc = np.zeros((size, size), np.uint8)
    cv2.circle(disc, (size // 2, size // 2), size // 3, 255, -1)
    rgba[:, :, 3] = disc
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)
    return rgba[:, :, 3]


def write_yolo_set(root: Path, rng: np.random.Generator) -> None:
    """images/train/a.jpg (160×120) with two polygons: a large square and a tiny one."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    image = rng.integers(0, 256, (120, 160, 3)).astype(np.uint8)
    Image.fromarray(image).save(root / "images" / "train" / "a.jpg")
    big = "0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75"  # 80×60 px
    tiny = "1 0.0 0.0 0.05 0.0 0.05 0.05"  # under the size limits
    box = "2 0.5 0.5 0.2 0.2"  # a detection box line, not a polygon
    (root / "labels" / "train" / "a.txt").write_text(f"{big}\n{tiny}\n{box}\n")
    (root / "data.yaml").write_text("names: [square, speck, boxed]\n")


def write_camvid_split(root: Path) -> None:
    """train/f.png (96×128) with train annot/f.png: road below row 60, one car (class 8)."""
    (root / "train").mkdir(parents=True)
    (root / "trainannot").mkdir(parents=True)
    frame = np.full((96, 128, 3), 90, np.uint8)
    labels = np.zeros((96, 128), np.uint8)
    labels[60:] = 3
    labels[50:80, 20:60] = 8
    frame[50:80, 20:60] = (200, 30, 30)
    Image.fromarray(frame).save(root / "train" / "f.png")
    Image.fromarray(labels).save(root / "trainannot" / "f.png")


def test_bank_reads_all_three_layouts(tmp_path: Path, rng: np.random.Generator) -> None:
    alpha = write_alpha_object(tmp_path / "stamps" / "toy.png", rng)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "stamps" / "opaque.png")
    write_yolo_set(tmp_path / "coco", rng)
    write_camvid_split(tmp_path / "camvid")
    bank = ObjectBank([tmp_path / "stamps", tmp_path / "coco", tmp_path / "camvid"])
    assert len(bank) == 3  # the opaque PNG, the tiny polygon and the box line are no objects
    categories = sorted(bank.get(i).category for i in range(len(bank)))
    assert categories == ["car", "square", "stamps"]
    by_category = {bank.get(i).category: bank.get(i) for i in range(len(bank))}
    # the alpha cut-out is cropped to the disc and keeps its alpha exactly
    stamp = by_category["stamps"]
    ys, xs = np.nonzero(alpha)
    assert stamp.alpha.shape == (ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    assert np.allclose(stamp.alpha, alpha[ys.min():ys.max() + 1, xs.min():xs.max() + 1] / 255.0)
    # the polygon's box is 80×60 (+ the half-pixel soft edge)
    square = by_category["square"]
    assert abs(square.alpha.shape[1] - 81) <= 2 and abs(square.alpha.shape[0] - 61) <= 2
    # the car component keeps its colour
    car = by_category["car"]
    assert np.allclose(car.rgb[car.alpha > 0.9].mean(0), (200, 30, 30), atol=2)


def test_bank_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        ObjectBank(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="hold no objects"):
        ObjectBank(tmp_path / "empty")


def test_photos_skip_label_folders(tmp_path: Path) -> None:
    write_camvid_split(tmp_path / "camvid")
    photos = find_photos(tmp_path / "camvid")
    assert [p.relative_to(tmp_path / "camvid").as_posix() for p in photos] == ["train/f.png"]


def test_scene_layout_reads_ground_and_objects(tmp_path: Path) -> None:
    write_camvid_split(tmp_path / "camvid")
    layout = scene_layout(tmp_path / "camvid" / "train" / "f.png", (48, 64))
    assert layout is not None
    assert layout.ground.shape == (48, 64) and layout.ground[40:, :].mean() > 0.6
    assert layout.ground[:25].sum() == 0
    assert layout.objects[30, 20] > 0 and layout.objects[5, 50] == 0
    assert scene_layout(tmp_path / "camvid" / "train" / "none.png", (48, 64)) is None


def test_match_colour_strength() -> None:
    patch = np.full((10, 10, 3), 100, np.float32)
    under = np.full((10, 10, 3), (50, 150, 200), np.float32)
    alpha = np.ones((10, 10), np.float32)
    assert np.array_equal(match_colour(patch, alpha, under, 0.0), patch)
    full = match_colour(patch, alpha, under, 1.0)
    assert np.allclose(full[0, 0], (60, 150, 160), atol=1.5)  # gains clipped to [0.6, 1.6]


def test_shadow_lies_at_the_foot_and_shifts() -> None:
    alpha = np.zeros((40, 40), np.float32)
    alpha[5:35, 15:25] = 1.0
    flat = shadow_of(alpha, (8.0, 0.0), squash=0.8, blur=0.0)
    rows = np.nonzero(flat.max(1) > 0.5)[0]
    cols = np.nonzero(flat.max(0) > 0.5)[0]
    assert rows.min() >= 28  # squashed towards the bottom edge
    assert cols.min() >= 22  # shifted right by 8 px


def test_remove_object_fills_from_surroundings() -> None:
    image = np.full((64, 64, 3), 80, np.float32)
    image[20:40, 20:40] = 250
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    filled = remove_object(image, mask, 2)
    assert np.abs(filled[20:40, 20:40] - 80).mean() < 10
    assert np.array_equal(filled[:10], image[:10])


def photos(rng: np.random.Generator, count: int = 3) -> list[np.ndarray]:
    return [cv2.GaussianBlur(rng.integers(0, 256, (160, 160, 3)).astype(np.uint8), (0, 0), 3)
            for _ in range(count)]


@pytest.mark.parametrize("code", [APPEAR, DISAPPEAR, EXCHANGE])
def test_copy_paste_labels_where_the_object_is(tmp_path: Path, rng: np.random.Generator,
                                               code: int) -> None:
    write_alpha_object(tmp_path / "objects" / "a.png", rng)
    write_alpha_object(tmp_path / "objects" / "b.png", rng)
    weights = tuple(float(code == c) for c in (APPEAR, DISAPPEAR, EXCHANGE))
    generator = SyntheticPairGenerator(photos(rng), size=96, seed=3, objects=tmp_path / "objects",
                                       p_real_object=1.0, change_weights=weights, min_changes=1,
                                       max_changes=1, p_cast_shadow=0.0, **CLEAN)
    for index in range(4):
        pair = generator.generate(index)
        assert [c["type"] for c in pair.changes] == [["appear", "disappear", "exchange"][code - 1]]
        assert pair.changes[0]["objects"][0] == "objects"
        changed = pair.typed_mask == code
        assert changed.sum() > 50 and set(np.unique(pair.typed_mask)) <= {0, code}
        difference = np.abs(pair.reference.astype(int) - pair.comparison.astype(int)).max(2)
        # clean pairs: outside the label (and its soft edge) the images are identical
        edge = cv2.dilate(changed.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        assert difference[~edge].max() == 0
        assert (difference[changed] > 0).mean() > 0.5
    again = generator.generate(2)
    assert np.array_equal(again.reference, generator.generate(2).reference)


def test_copy_paste_shadow_is_not_labelled(tmp_path: Path, rng: np.random.Generator) -> None:
    write_alpha_object(tmp_path / "objects" / "a.png", rng)
    flat = [np.full((160, 160, 3), 180, np.uint8)]
    generator = SyntheticPairGenerator(flat, size=96, seed=5, objects=tmp_path / "objects",
                                       p_real_object=1.0, change_weights=(1.0, 0.0, 0.0),
                                       min_changes=1, max_changes=1, p_cast_shadow=1.0,
                                       colour_match=(0.0, 0.0), **CLEAN)
    darker = 0
    for index in range(4):
        pair = generator.generate(index)
        grey = pair.comparison.astype(int).mean(2)
        outside = cv2.dilate((pair.mask > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        darker += int((grey[outside] < 170).sum())
    assert darker > 20  # a shadow darkened the flat scene outside the labelled object


def test_inpainted_scene_object_is_a_change(tmp_path: Path, rng: np.random.Generator) -> None:
    write_camvid_split(tmp_path / "camvid")
    write_alpha_object(tmp_path / "objects" / "a.png", rng)
    generator = SyntheticPairGenerator([tmp_path / "camvid"], size=64, seed=0,
                                       objects=tmp_path / "objects", p_inpaint=1.0,
                                       min_changes=1, max_changes=1,
                                       change_weights=(0.0, 1.0, 0.0), **CLEAN)
    found = False
    for index in range(6):
        pair = generator.generate(index)
        if pair.changes and pair.changes[0]["sources"] == ["scene (inpainted)"]:
            found = True
            region = pair.typed_mask == DISAPPEAR
            assert region.sum() > 20
            red = pair.reference[region].astype(int)
            assert (red[:, 0] - red[:, 2]).mean() > 100  # the red car is in the reference
            assert np.abs(pair.comparison[region].astype(int) - 90).mean() < 30  # gone
    assert found


def test_bank_on_the_real_object_sets() -> None:
    coco = require_real_data("objects", "coco128")
    tux = require_real_data("objects", "tuxpaint")
    bank = ObjectBank([coco, tux])
    assert bank.counts[str(coco)] > 500 and bank.counts[str(tux)] > 700
    categories = {bank.get(i).category for i in range(0, len(bank), 97)}
    assert "person" in categories or "car" in categories
    cut = bank.get(len(bank) - 1)
    assert cut.rgb.shape[:2] == cut.alpha.shape and cut.alpha.max() > 0.9


def test_generator_on_real_photos_and_objects() -> None:
    camvid = require_real_data("photos", "camvid")
    coco = require_real_data("objects", "coco128")
    generator = SyntheticPairGenerator([camvid], size=128, seed=0, objects=[coco, camvid])
    kinds = set()
    for index in range(12):
        pair = generator.generate(index)
        assert pair.reference.shape == (128, 128, 3) and pair.typed_mask.shape == (128, 128)
        kinds.update(c["sources"][0] == "scene (inpainted)" for c in pair.changes)
        for change in pair.changes:
            code = change["code"]
            assert (pair.typed_mask == code).any()
    assert kinds == {True, False}  # both pasted real objects and removed scene objects


def test_change_sets_give_aerial_footprints_without_their_validation_pairs(
        tmp_path: Path) -> None:
    from changeseg.data.pairs import carve_split

    root = tmp_path / "pairs"
    for folder in ("A", "B", "label"):
        (root / folder).mkdir(parents=True)
    names = [f"p{i}" for i in range(5)]
    for number, name in enumerate(names):
        before = np.full((64, 64, 3), 60, np.uint8)
        after = before.copy()
        label = np.zeros((64, 64), np.uint8)
        label[10:30, 10:20 + number] = 255  # one new "building" per pair, widths differ
        after[label > 0] = (220, 220, 200)
        for folder, image in (("A", before), ("B", after), ("label", label)):
            Image.fromarray(image).save(root / folder / f"{name}.png")
    everything = ObjectBank(f"folder:{root}")
    assert len(everything) == 5
    bank = ObjectBank([f"folder:{root}"], holdout=(0.4, 0))
    _, held_out = carve_split(names, 0.4, 0)
    assert len(bank) == 5 - len(held_out) == 3
    widths = sorted(int((bank.get(i).alpha > 0.5).any(0).sum()) for i in range(len(bank)))
    for number in range(len(bank)):
        cut = bank.get(number)
        assert np.allclose(cut.rgb[cut.alpha > 0.9].mean(0), (220, 220, 200), atol=1)
    # each footprint's width (10 + pair number) names its pair
    kept = {w - 10 for w in widths}
    assert kept == {int(n[1:]) for n in names} - {int(n[1:]) for n in held_out}
