"""Tests of the synthetic change-pair generator (changeseg.data.synthetic)."""

from __future__ import annotations

import ast
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from torch.utils.data import DataLoader

import changeseg.data.synthetic as synthetic
from changeseg.data.synthetic import (
    APPEAR,
    DISAPPEAR,
    EXCHANGE,
    SynthConfig,
    SyntheticPairDataset,
    SyntheticPairGenerator,
    SyntheticPairStream,
    write_synthetic_set,
)
from changeseg.errors import ConfigError, InputError
from changeseg.io.images import read_image, write_png

SIZE = 96
NO_PHOTOMETRY = {
    "p_shadow": 0.0,
    "p_illumination": 0.0,
    "p_blur": 0.0,
    "p_noise": 0.0,
    "p_jpeg": 0.0,
    "p_season": 0.0,
}
ONLY = {APPEAR: (1.0, 0.0, 0.0), DISAPPEAR: (0.0, 1.0, 0.0), EXCHANGE: (0.0, 0.0, 1.0)}


def make_photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random colour image with a little texture: a stand-in for a photo."""
    low = rng.uniform(0, 255, (5, 7, 3)).astype(np.float32)
    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0.0, 12.0, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def photos(rng: np.random.Generator) -> list[np.ndarray]:
    return [make_photo(rng, 150, 200), make_photo(rng, 180, 140), make_photo(rng, 160, 160)]


def generator(
    photos: list[np.ndarray], seed: int = 0, **overrides: object
) -> SyntheticPairGenerator:
    return SyntheticPairGenerator(photos, size=SIZE, seed=seed, **overrides)


def assert_same_sample(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key]


def mean_abs_diff(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16))[where].mean())


# -- reproducibility ---------------------------------------------------------------------------


def test_same_seed_and_index_give_identical_pairs_in_any_order(photos):
    first = generator(photos, seed=3)
    second = generator(photos, seed=3)
    later = second.sample(17)  # drawn first: order must not matter
    for index in (0, 5):
        assert_same_sample(first.sample(index), second.sample(index))
    assert_same_sample(first.sample(17), later)
    assert_same_sample(first.sample(17), first.sample(17))


def test_different_seed_or_index_gives_different_pairs(photos):
    a = generator(photos, seed=0).sample(4)
    b = generator(photos, seed=1).sample(4)
    c = generator(photos, seed=0).sample(5)
    assert not np.array_equal(a["reference"], b["reference"])
    assert not np.array_equal(a["reference"], c["reference"])
    assert a["name"] == b["name"] == "synth_000004"
    assert c["name"] == "synth_000005"


def test_sample_format(photos):
    gen = generator(photos)
    for index in range(6):
        sample = gen.sample(index)
        assert set(sample) == {"reference", "comparison", "mask", "typed_mask", "name"}
        for key in ("reference", "comparison"):
            assert sample[key].shape == (SIZE, SIZE, 3) and sample[key].dtype == np.uint8
        for key in ("mask", "typed_mask"):
            assert sample[key].shape == (SIZE, SIZE) and sample[key].dtype == np.uint8
        assert set(np.unique(sample["mask"])) <= {0, 1}
        assert set(np.unique(sample["typed_mask"])) <= {0, 1, 2, 3}
        np.testing.assert_array_equal(sample["mask"], sample["typed_mask"] > 0)


# -- labels --------------------------------------------------------------------------------------


def test_clean_pairs_differ_exactly_where_the_mask_is(photos):
    gen = generator(photos, nuisance=False, p_no_change=0.0)
    kernel = np.ones((15, 15), np.uint8)  # soft object edges reach at most 7 px past the label
    for index in range(10):
        pair = gen.generate(index)
        assert pair.changes and pair.mask.any()
        near = cv2.dilate(pair.mask, kernel).astype(bool)
        np.testing.assert_array_equal(pair.reference[~near], pair.comparison[~near])
        assert mean_abs_diff(pair.reference, pair.comparison, pair.mask.astype(bool)) > 10
        for change in pair.changes:  # every recorded change is labelled inside its box
            x0, y0, x1, y1 = change["box"]
            assert (pair.typed_mask[y0:y1, x0:x1] == change["code"]).any()


@pytest.mark.parametrize("code", [APPEAR, DISAPPEAR, EXCHANGE])
def test_change_types_put_objects_in_the_right_image_with_the_right_code(photos, code):
    gen = generator(photos, nuisance=False, p_no_change=0.0, change_weights=ONLY[code])
    # the background crop is drawn before any change, so it is the same with changes turned off
    empty = generator(photos, nuisance=False, p_no_change=1.0)
    for index in range(6):
        pair = gen.generate(index)
        background = empty.sample(index)["reference"]
        inside = pair.typed_mask == code
        assert set(np.unique(pair.typed_mask)) == {0, code}
        assert {change["type"] for change in pair.changes} == {synthetic.CHANGE_TYPES[code - 1]}
        if code == APPEAR:  # only the comparison holds the object
            np.testing.assert_array_equal(pair.reference, background)
            assert mean_abs_diff(pair.comparison, background, inside) > 10
        elif code == DISAPPEAR:  # only the reference holds the object
            np.testing.assert_array_equal(pair.comparison, background)
            assert mean_abs_diff(pair.reference, background, inside) > 10
        else:  # both hold an object, and they are different objects
            assert mean_abs_diff(pair.reference, background, inside) > 5
            assert mean_abs_diff(pair.comparison, background, inside) > 5
            assert mean_abs_diff(pair.reference, pair.comparison, inside) > 10


def test_nuisance_only_pairs_have_an_all_zero_mask(photos):
    gen = generator(photos, p_no_change=1.0, p_illumination=1.0, p_misregistration=1.0)
    for index in range(6):
        pair = gen.generate(index)
        assert not pair.changes
        assert not pair.mask.any() and not pair.typed_mask.any()
        assert mean_abs_diff(pair.reference, pair.comparison, np.ones((SIZE, SIZE), bool)) > 1


def test_no_change_and_no_nuisance_gives_identical_images(photos):
    sample = generator(photos, p_no_change=1.0, nuisance=False).sample(2)
    np.testing.assert_array_equal(sample["reference"], sample["comparison"])
    assert not sample["mask"].any()


def test_nuisance_leaves_the_scene_and_its_labels_unchanged_without_misregistration(photos):
    clean = generator(photos, nuisance=False).generate(3)
    noisy = generator(photos, p_misregistration=0.0, p_noise=1.0, p_jpeg=1.0).generate(3)
    np.testing.assert_array_equal(clean.typed_mask, noisy.typed_mask)
    np.testing.assert_array_equal(clean.reference, noisy.clean_reference)
    assert not np.array_equal(noisy.reference, noisy.clean_reference)
    assert not np.array_equal(noisy.comparison, noisy.clean_comparison)


def test_misregistration_moves_comparison_objects_and_their_labels_together(photos):
    settings = dict(
        photos=photos,
        size=SIZE,
        seed=5,
        p_no_change=0.0,
        max_rotation=0.0,
        max_scale=0.0,
        max_shift=6.0,
        max_corner_shift=0.0,
    )
    moved = 0
    for code in (APPEAR, DISAPPEAR):
        warped = SyntheticPairGenerator(
            **settings, p_misregistration=1.0, **NO_PHOTOMETRY, change_weights=ONLY[code]
        )
        clean = SyntheticPairGenerator(**settings, nuisance=False, change_weights=ONLY[code])
        for index in range(5):
            pair, reference_pair = warped.generate(index), clean.generate(index)
            matrix = np.array(pair.nuisance["warp"], np.float64)
            np.testing.assert_array_equal(pair.reference, reference_pair.reference)
            # the whole comparison moved by `warp` (reference pixel -> comparison pixel) ...
            expected = cv2.warpAffine(reference_pair.comparison, matrix, (SIZE, SIZE))
            interior = (slice(8, -8), slice(8, -8))
            assert (
                mean_abs_diff(
                    pair.comparison[interior],
                    expected[interior],
                    np.ones((SIZE - 16, SIZE - 16), bool),
                )
                < 1.0
            )
            if code == APPEAR:  # ... and so did the label of the object that is only in it
                expected_mask = cv2.warpAffine(
                    reference_pair.mask, matrix, (SIZE, SIZE), flags=cv2.INTER_NEAREST
                )
                union = (expected_mask | pair.mask).sum()
                assert (expected_mask & pair.mask).sum() / union > 0.85
                shift = np.hypot(matrix[0, 2], matrix[1, 2])
                if shift > 3 and not np.array_equal(pair.mask, reference_pair.mask):
                    moved += 1
            else:  # a disappeared object is labelled where it was, in the reference
                np.testing.assert_array_equal(pair.mask, reference_pair.mask)
    assert moved >= 1


# -- photo sources and settings -------------------------------------------------------------------


def test_photo_folder_is_searched_recursively_and_skips_non_images(tmp_path, photos):
    folder = tmp_path / "photos"
    write_png(folder / "a.png", photos[0])
    write_png(folder / "sub" / "b.png", photos[1])
    cv2.imwrite(str(folder / "c.jpg"), photos[2][:, :, ::-1])
    (folder / "notes.txt").write_text("not a photo")
    write_png(folder / ".hidden" / "d.png", photos[0])
    gen = SyntheticPairGenerator(folder, size=64, seed=1)
    assert gen.photos.names == ["a.png", "c.jpg", "sub/b.png"]
    assert gen.settings()["photos"]["count"] == 3
    sample = gen.sample(0)
    assert sample["reference"].shape == (64, 64, 3)
    assert_same_sample(sample, SyntheticPairGenerator(str(folder), size=64, seed=1).sample(0))


def test_missing_or_empty_photo_sources_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        SyntheticPairGenerator(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        SyntheticPairGenerator(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match="no images"):
        SyntheticPairGenerator(tmp_path / "text")
    with pytest.raises(InputError, match="empty"):
        SyntheticPairGenerator([])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="x.png"):
        SyntheticPairGenerator(tmp_path / "broken", size=64).sample(0)


def test_greyscale_and_float_photos_are_accepted(rng):
    grey = make_photo(rng, 120, 120)[:, :, 0]
    floats = make_photo(rng, 120, 120).astype(np.float32) / 255.0
    sample = SyntheticPairGenerator([grey, floats], size=64).sample(1)
    assert sample["reference"].shape == (64, 64, 3)


def test_default_photos_come_from_scikit_image():
    pytest.importorskip("skimage")
    gen = SyntheticPairGenerator(size=64, seed=0)
    assert gen.settings()["photos"]["source"] == "scikit-image"
    assert len(gen.photos) >= 2
    sample = gen.sample(0)
    assert sample["reference"].shape == (64, 64, 3)
    assert sample["reference"].std() > 5  # a real photo, not a blank


def test_config_validation_and_round_trip(photos):
    config = SynthConfig(max_shift=2.0, change_weights=(1.0, 0.0, 2.0))
    assert SynthConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError):
        SynthConfig(min_changes=3, max_changes=1)
    with pytest.raises(ConfigError):
        SynthConfig(p_noise=1.5)
    with pytest.raises(ConfigError):
        SynthConfig(change_weights=(0.0, 0.0, 0.0))
    with pytest.raises(ConfigError):
        SynthConfig.from_dict({"not_a_setting": 1})
    with pytest.raises(ConfigError):
        generator(photos, not_a_setting=1)
    with pytest.raises(ConfigError):
        SyntheticPairGenerator(photos, size=8)
    with pytest.raises(InputError):
        generator(photos).sample(-1)


# -- datasets -------------------------------------------------------------------------------------


def test_map_style_dataset_is_fixed_and_matches_the_generator(photos):
    gen = generator(photos, seed=2)
    dataset = SyntheticPairDataset(gen, length=4, start=10)
    assert len(dataset) == 4
    assert_same_sample(dataset[0], gen.sample(10))
    assert dataset[-1]["name"] == "synth_000013"
    with pytest.raises(IndexError):
        dataset[4]
    wrapped = SyntheticPairDataset(gen, length=2, transform=lambda s: s["name"])
    assert list(wrapped) == ["synth_000000", "synth_000001"]


def test_stream_is_endless_deterministic_and_split_between_ranks(photos):
    gen = SyntheticPairGenerator(photos, size=32, seed=0)
    names = [s["name"] for s in itertools.islice(iter(SyntheticPairStream(gen, start=5)), 3)]
    assert names == ["synth_000005", "synth_000006", "synth_000007"]
    stream = SyntheticPairStream(gen, rank=1, world_size=2)
    names = [s["name"] for s in itertools.islice(iter(stream), 3)]
    assert names == ["synth_000001", "synth_000003", "synth_000005"]


def test_stream_workers_get_distinct_pairs_and_runs_repeat(photos):
    gen = SyntheticPairGenerator(photos, size=32, seed=0)

    def first_batches() -> list[tuple[str, np.ndarray]]:
        loader = DataLoader(SyntheticPairStream(gen), batch_size=None, num_workers=2)
        return [(s["name"], s["comparison"].numpy()) for s in itertools.islice(loader, 6)]

    run_a, run_b = first_batches(), first_batches()
    assert sorted(name for name, _ in run_a) == [f"synth_{i:06d}" for i in range(6)]
    for (name_a, image_a), (name_b, image_b) in zip(run_a, run_b):
        assert name_a == name_b
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(image_a, gen.sample(int(name_a[-6:]))["comparison"])


# -- writing a set ------------------------------------------------------------------------------


def test_written_set_has_the_folder_layout_and_round_trips(tmp_path, photos):
    gen = generator(photos, seed=4)
    calls: list[int] = []
    out = write_synthetic_set(tmp_path / "set", 3, gen, start=2, progress=calls.append)
    assert calls == [1, 2, 3]
    names = [f"synth_{i:06d}" for i in (2, 3, 4)]
    for folder in ("A", "B", "label", "label_typed"):
        assert sorted(p.stem for p in (out / folder).iterdir()) == names
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 4 and meta["count"] == 3 and meta["start"] == 2
    assert meta["size"] == SIZE and meta["photos"]["source"] == "list"
    assert SynthConfig.from_dict(meta["config"]) == gen.config
    for name in names:
        sample = gen.sample(int(name[-6:]))
        np.testing.assert_array_equal(read_image(out / "A" / f"{name}.png"), sample["reference"])
        np.testing.assert_array_equal(read_image(out / "B" / f"{name}.png"), sample["comparison"])
        label = read_image(out / "label" / f"{name}.png")[:, :, 0]
        typed = read_image(out / "label_typed" / f"{name}.png")[:, :, 0]
        assert set(np.unique(label)) <= {0, 255}
        np.testing.assert_array_equal(label, sample["mask"] * 255)
        np.testing.assert_array_equal(typed, sample["typed_mask"])


def test_writing_refuses_an_existing_set_unless_overwriting(tmp_path, photos):
    gen = SyntheticPairGenerator(photos, size=32)
    write_synthetic_set(tmp_path, 1, gen)
    with pytest.raises(InputError, match="already holds"):
        write_synthetic_set(tmp_path, 1, gen)
    write_synthetic_set(tmp_path, 2, gen, overwrite=True)
    assert len(list((tmp_path / "A").iterdir())) == 2
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        write_synthetic_set(tmp_path / "file", 1, gen)
    with pytest.raises(ConfigError):
        write_synthetic_set(tmp_path / "new", 1, gen, size=64)


def test_data_package_never_imports_models():
    source = Path(synthetic.__file__).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("changeseg.models")
        elif isinstance(node, ast.Import):
            assert not any(alias.name.startswith("changeseg.models") for alias in node.names)


def test_small_homography_moves_the_whole_comparison(rng):
    photos = [make_photo(rng, 160, 200) for _ in range(3)]
    settings = dict(photos=photos, size=SIZE, seed=9, p_no_change=0.0, max_rotation=1.0,
                    max_scale=0.02, max_shift=3.0, max_corner_shift=4.0)
    warped = SyntheticPairGenerator(**settings, p_misregistration=1.0, **NO_PHOTOMETRY,
                                    change_weights=ONLY[DISAPPEAR])
    clean = SyntheticPairGenerator(**settings, nuisance=False, change_weights=ONLY[DISAPPEAR])
    for index in range(3):
        pair, still = warped.generate(index), clean.generate(index)
        homography = np.array(pair.nuisance["homography"], np.float64)
        assert homography.shape == (3, 3) and abs(homography[2, :2]).max() > 0  # not affine
        expected = cv2.warpPerspective(still.comparison, homography, (SIZE, SIZE))
        interior = (slice(8, -8), slice(8, -8))
        assert np.abs(pair.comparison[interior].astype(float)
                      - expected[interior].astype(float)).mean() < 1.0
        affine = cv2.warpAffine(still.comparison, np.array(pair.nuisance["warp"]), (SIZE, SIZE))
        assert np.abs(pair.comparison[interior].astype(float)
                      - affine[interior].astype(float)).mean() > 1.0  # the corners moved too


def test_season_shift_turns_green_but_not_grey():
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :32] = (60, 160, 50)  # foliage green
    image[:, 32:] = (128, 128, 128)  # grey road
    changed = 0
    for seed in range(6):
        out, params = synthetic._season(image, np.random.default_rng(seed), 20.0)
        green_shift = np.abs(out[:, :32].astype(int) - image[:, :32]).mean()
        grey = out[:, 32:].astype(int)
        # grey keeps its hue: channels move together by the small warmth gain only
        assert np.abs(grey - 128).max() <= 128 * 0.05 + 2
        changed += green_shift > 3
        assert set(params) == {"hue", "saturation", "warmth"}
    assert changed >= 4
