"""SBI2015Dataset: frame pairs of fixed-camera scenes, on generated scenes and the real copy."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from changeseg.data.datasets import open_dataset
from changeseg.data.datasets.sbi2015 import (
    SBI2015Dataset,
    draw_pairs,
    list_scenes,
    pair_label,
    static_aware_label,
)
from changeseg.data.pairs import carve_split
from changeseg.errors import InputError
from changeseg.io.images import read_image
from tests.conftest import require_real_data

SCENES = {"Alpha": (6, (24, 32), ".jpg", "P"), "Beta": (5, (20, 20), ".png", "L")}
"""Scene name: (frames, (height, width), frame file type, mask PNG mode)."""

# the label rule written out for every pair of mask values (a, b): 1 change, 255 ignore
TRUTH = {(0, 0): 0, (0, 170): 255, (0, 255): 1,
         (170, 0): 255, (170, 170): 255, (170, 255): 1,
         (255, 0): 1, (255, 170): 1, (255, 255): 1}


def _save_mask(path: Path, mask: np.ndarray, mode: str) -> None:
    if mode == "P":  # a palette PNG with grey entries, as most of the real masks are stored
        image = Image.fromarray(mask, mode="L").convert("P")
        image.putpalette([v for i in range(256) for v in (i, i, i)])
        image.save(path)
    else:
        Image.fromarray(mask).save(path)


def write_scenes(root: Path, seed: int = 0, scenes: dict | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Write seeded scenes in the sbi2015 layout; return the masks written, by scene and frame stem.

    Frames are numbered every third (in000000, in000003, ...); masks draw 0, 170 and 255 per
    pixel so every combination of two masks occurs.
    """
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, np.ndarray]] = {}
    for scene, (count, (height, width), suffix, mode) in (scenes or SCENES).items():
        (root / scene / "input").mkdir(parents=True)
        (root / scene / "groundtruth").mkdir(parents=True)
        written[scene] = {}
        for k in range(count):
            number = f"{3 * k:06d}"
            frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(frame).save(root / scene / "input" / f"in{number}{suffix}")
            mask = rng.choice(np.array([0, 170, 255], np.uint8), size=(height, width), p=[0.5, 0.2, 0.3])
            _save_mask(root / scene / "groundtruth" / f"gt{number}.png", mask, mode)
            written[scene][f"in{number}"] = mask
    return written


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    root = tmp_path_factory.mktemp("sbi2015")
    return root, write_scenes(root, seed=7)


def test_pair_label_truth_table() -> None:
    a = np.array([[a for (a, _b) in TRUTH]], np.uint8)
    b = np.array([[b for (_a, b) in TRUTH]], np.uint8)
    assert pair_label(a, b).tolist() == [list(TRUTH.values())]
    assert pair_label(np.full((2, 2), 85, np.uint8), np.zeros((2, 2), np.uint8)).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(InputError, match="differ"):
        pair_label(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


def test_static_aware_label_relabels_only_pixels_foreground_in_both_frames() -> None:
    # columns: foreground in A only, in both (same pixels), in both (slightly different),
    # in both (clearly different), in neither; each column 8 px wide so the 5×5 blur stays inside
    mask_a = np.repeat(np.array([[255, 255, 255, 255, 0]], np.uint8), 8, axis=1).repeat(8, axis=0)
    mask_b = np.repeat(np.array([[0, 255, 255, 255, 0]], np.uint8), 8, axis=1).repeat(8, axis=0)
    frame_a = np.full((8, 40, 3), 100, np.uint8)
    frame_b = frame_a.copy()
    frame_b[:, 16:24] = 117  # 17 apart: neither the same nor clearly different
    frame_b[:, 24:32] = 200
    plain = pair_label(mask_a, mask_b)
    assert (plain[:, :32] == 1).all() and (plain[:, 32:] == 0).all()
    inner = np.s_[3:5, [3, 11, 19, 27, 35]]  # column centres, away from the blur's reach
    label = static_aware_label(plain, mask_a, mask_b, frame_a, frame_b, "differs")
    assert label[inner].tolist() == [[1, 0, 255, 1, 0]] * 2
    ignored = static_aware_label(plain, mask_a, mask_b, frame_a, frame_b, "ignore")
    assert ignored[inner].tolist() == [[1, 255, 255, 255, 0]] * 2
    assert static_aware_label(plain, mask_a, mask_b, frame_a, frame_b, "change") is plain
    with pytest.raises(InputError, match="both_foreground"):
        static_aware_label(plain, mask_a, mask_b, frame_a, frame_b, "maybe")


def test_names_images_and_labels(scenes) -> None:
    root, masks = scenes
    assert list_scenes(root) == ["Alpha", "Beta"]
    data = SBI2015Dataset(root, pairs_per_scene=8)
    assert len(data) == 16 and data.class_names == ["unchanged", "changed"] and not data.skipped
    assert data.frames == {s: list(m) for s, m in masks.items()}
    for name in data.names:
        scene, first, second = re.fullmatch(r"(\w+)/(in\d{6})-(in\d{6})", name).groups()
        assert first != second and first in masks[scene] and second in masks[scene]
    assert data.names[:8] == [n for n in data.names if n.startswith("Alpha/")]
    lookup = np.zeros((256, 256), np.uint8)
    for (a, b), value in TRUTH.items():
        lookup[a, b] = value
    for index in range(len(data)):
        sample = data[index]
        scene, pair = sample["name"].split("/")
        first, second = pair.split("-")
        suffix = SCENES[scene][2]
        reference = read_image(root / scene / "input" / f"{first}{suffix}")
        comparison = read_image(root / scene / "input" / f"{second}{suffix}")
        assert np.array_equal(sample["reference"], reference)  # reference = frame A
        assert np.array_equal(sample["comparison"], comparison)
        expected = lookup[masks[scene][first], masks[scene][second]]
        assert sample["mask"].dtype == np.uint8 and np.array_equal(sample["mask"], expected)
        assert set(np.unique(sample["mask"])) == {0, 1, 255}


def test_pairs_are_seeded_nested_and_per_scene(scenes) -> None:
    root, _ = scenes
    data = SBI2015Dataset(root, pairs_per_scene=10, seed=3)
    assert SBI2015Dataset(root, pairs_per_scene=10, seed=3).names == data.names
    assert SBI2015Dataset(root, pairs_per_scene=10, seed=4).names != data.names
    smaller = SBI2015Dataset(root, pairs_per_scene=4, seed=3).names
    assert len(smaller) == 8 and set(smaller) <= set(data.names)
    beta = SBI2015Dataset(root, scenes=["Beta"], pairs_per_scene=10, seed=3)
    assert beta.scenes == ["Beta"] and beta.names == [n for n in data.names if n.startswith("Beta/")]
    assert SBI2015Dataset(root, scenes="Beta", pairs_per_scene=10, seed=3).names == beta.names
    # all ordered pairs when more are asked for than exist: 6·5 + 5·4
    everything = SBI2015Dataset(root, pairs_per_scene=1000)
    assert len(everything) == 30 + 20 and len(set(everything.names)) == 50
    # min_gap counts positions in the scene's frame list: gap ≥ 3 leaves 2·(3+2+1) + 2·(2+1)
    spaced = SBI2015Dataset(root, pairs_per_scene=1000, min_gap=3)
    assert len(spaced) == 12 + 6
    for name in spaced.names:
        scene, pair = name.split("/")
        first, second = (spaced.frames[scene].index(stem) for stem in pair.split("-"))
        assert abs(first - second) >= 3


def test_draw_pairs_mixes_near_and_far_gaps() -> None:
    pairs = draw_pairs(120, 300, 1, np.random.default_rng(0))
    assert len(pairs) == len(set(pairs)) == 300 and pairs == sorted(pairs)
    gaps = np.array([abs(i - j) for i, j in pairs])
    assert gaps.min() >= 1 and (gaps <= 3).sum() >= 30 and (gaps >= 40).sum() >= 30
    assert sum(i < j for i, j in pairs) not in (0, 300)  # both orders
    again = draw_pairs(120, 300, 1, np.random.default_rng(0))
    assert again == pairs and draw_pairs(120, 300, 1, np.random.default_rng(1)) != pairs
    assert draw_pairs(3, 10, 3, np.random.default_rng(0)) == []  # no two frames 3 apart
    assert draw_pairs(1, 10, 1, np.random.default_rng(0)) == []


def test_scene_holdout_by_name_prefix(scenes) -> None:
    root, _ = scenes
    data = SBI2015Dataset(root, pairs_per_scene=8)
    held_out = [n for n in data.names if n.startswith("Beta/")]
    training = SBI2015Dataset(root, scenes=["Alpha"], pairs_per_scene=8).names
    assert held_out and training and set(training).isdisjoint(held_out)
    # a random carve of pairs, by contrast, validates on scenes it trains on
    train, val = carve_split(data.names, 0.25, seed=0)
    assert {n.split("/")[0] for n in train} & {n.split("/")[0] for n in val}


def test_open_dataset_passes_options(scenes) -> None:
    root, _ = scenes
    data = open_dataset(f"sbi2015:{root}", scenes=["Alpha"], pairs_per_scene=3, min_gap=2, seed=1)
    assert isinstance(data, SBI2015Dataset) and len(data) == 3
    assert all(n.startswith("Alpha/") for n in data.names)
    with pytest.raises(InputError, match="pairs_per_scene"):
        open_dataset(f"sbi2015:{root}", pairs=3)


def test_skipped_frames(tmp_path: Path) -> None:
    masks = write_scenes(tmp_path, scenes={"Alpha": (5, (16, 16), ".png", "L"),
                                           "Gamma": (1, (8, 8), ".png", "L")})
    frames, truths = tmp_path / "Alpha" / "input", tmp_path / "Alpha" / "groundtruth"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(frames / "in000099.png")  # no mask
    (truths / "gt000003.png").unlink()
    Image.fromarray(np.zeros((10, 16), np.uint8)).save(truths / "gt000006.png")  # mask of another size
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(frames / "in000102.png")  # frame of another size
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(truths / "gt000102.png")
    (frames / "notes.txt").write_text("not a frame")
    (frames / "thumb.png").write_bytes(b"")  # an image name without a frame number is not a frame
    data = SBI2015Dataset(tmp_path, pairs_per_scene=100)
    assert data.frames["Alpha"] == ["in000000", "in000009", "in000012"]
    assert len(data) == 6 and all(n.startswith("Alpha/") for n in data.names)
    assert data.skipped["Alpha/in000003"] == "no mask" and data.skipped["Alpha/in000099"] == "no mask"
    assert data.skipped["Alpha/in000006"].startswith("mask 16×10")
    assert "not the scene's 16×16" in data.skipped["Alpha/in000102"]
    assert "Gamma" in data.skipped and set(masks) == {"Alpha", "Gamma"}
    for index in range(len(data)):
        assert data[index]["mask"].shape == (16, 16)
    with pytest.raises(InputError, match="scene Gamma gives no pairs"):
        SBI2015Dataset(tmp_path, scenes=["Gamma"])


def test_bad_roots_and_options(tmp_path: Path, scenes) -> None:
    root, _ = scenes
    with pytest.raises(InputError, match="is not a folder"):
        SBI2015Dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "Alpha" / "input").mkdir(parents=True)  # no groundtruth/: not a scene
    with pytest.raises(InputError, match="no scene folders"):
        SBI2015Dataset(tmp_path / "empty")
    with pytest.raises(InputError, match="no scene Nope in .*scenes: Alpha, Beta"):
        SBI2015Dataset(root, scenes=["Alpha", "Nope"])
    with pytest.raises(InputError, match="scenes is empty"):
        SBI2015Dataset(root, scenes=[])
    with pytest.raises(InputError, match="pairs_per_scene"):
        SBI2015Dataset(root, pairs_per_scene=0)
    with pytest.raises(InputError, match="min_gap"):
        SBI2015Dataset(root, min_gap=0)
    with pytest.raises(InputError, match="both_foreground must be one of change, ignore, differs"):
        SBI2015Dataset(root, both_foreground="static")
    (tmp_path / "blank" / "Alpha" / "input").mkdir(parents=True)
    (tmp_path / "blank" / "Alpha" / "groundtruth").mkdir()
    with pytest.raises(InputError, match="no frame pairs"):
        SBI2015Dataset(tmp_path / "blank")


def test_real_sbi2015() -> None:
    root = require_real_data("surveillance", "sbi2015")
    scenes = ["Board", "Candela_m1.10", "CAVIAR1", "CaVignal", "Foliage", "HallAndMonitor", "HighwayI",
              "IBMtest2", "Snellen", "Toscana"]
    assert list_scenes(root) == scenes
    data = SBI2015Dataset(root, pairs_per_scene=3)
    assert not data.skipped
    assert [len(data.frames[s]) for s in scenes] == [76, 117, 204, 86, 130, 99, 147, 30, 107, 2]
    assert len(data) == 9 * 3 + 2  # Toscana has two frames: both orders
    sizes = {"Board": (164, 200), "HighwayI": (240, 320), "Toscana": (600, 800)}
    values: set[int] = set()
    for index in range(len(data)):
        sample = data[index]
        scene = sample["name"].split("/")[0]
        assert re.fullmatch(re.escape(scene) + r"/in\d{6}-in\d{6}", sample["name"])
        assert sample["reference"].dtype == np.uint8 and sample["reference"].shape[2] == 3
        if scene in sizes:
            assert sample["mask"].shape == sizes[scene]
        values |= set(np.unique(sample["mask"]).tolist())
    assert values == {0, 1, 255}  # the palette masks' 170 and 255 come through


def test_real_person_standing_still_is_no_change_with_both_foreground_differs() -> None:
    """CaVignal frames 3 and 9: the same person stands in the same place (foreground in both)."""
    root = require_real_data("surveillance", "sbi2015")
    plain = SBI2015Dataset(root, scenes=["CaVignal"], pairs_per_scene=16)
    aware = SBI2015Dataset(root, scenes=["CaVignal"], pairs_per_scene=16, both_foreground="differs")
    index = plain.names.index("CaVignal/in000009-in000003")
    before, after = plain[index]["mask"], aware[index]["mask"]
    assert (before == 1).sum() > 3000  # "either frame's foreground": the standing person is change
    assert (after == 1).sum() < 0.1 * (before == 1).sum()  # the same pixels in both frames
    assert ((before == 1) | (after == 0) | (after == 255)).all() and (after[before == 0] == 0).all()
