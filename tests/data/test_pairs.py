"""Tests for the sample type, splits and large-image serving in changeseg.data.pairs."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.data.pairs import (
    PairDataset,
    PairSample,
    PairSubset,
    RandomCropDataset,
    TileDataset,
    binarize_mask,
    carve_split,
    crop_sample,
    make_sample,
    natural_key,
    tile_starts,
)
from changeseg.errors import InputError
from changeseg.labels import IGNORE_INDEX


class ArrayPairs(PairDataset):
    """A dataset of seeded random pairs of given sizes, counting how often each is read."""

    def __init__(self, sizes: list[tuple[int, int]], channels: int = 3, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.samples = []
        for i, (h, w) in enumerate(sizes):
            ref = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
            cmp = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
            mask = rng.integers(0, 2, (h, w), dtype=np.uint8)
            self.samples.append(make_sample(ref, cmp, mask, f"pair{i}"))
        self.names = [s["name"] for s in self.samples]
        self.class_names = ["unchanged", "changed"]
        self.reads = [0] * len(sizes)

    def load(self, index: int) -> PairSample:
        self.reads[index] += 1
        return dict(self.samples[index])  # type: ignore[return-value]


def test_make_sample_rejects_mismatched_sizes_naming_the_sample(rng):
    a = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(InputError, match="pairX.*same size"):
        make_sample(a, np.zeros((4, 6, 3), np.uint8), np.zeros((4, 5), np.uint8), "pairX")
    with pytest.raises(InputError, match="pairY.*channels"):
        make_sample(a, np.zeros((4, 5, 1), np.uint8), np.zeros((4, 5), np.uint8), "pairY")
    with pytest.raises(InputError, match="pairZ.*mask"):
        make_sample(a, a, np.zeros((5, 4), np.uint8), "pairZ")
    sample = make_sample(a, a, np.zeros((4, 5), bool), "ok", boxes=[[0, 0, 1, 1, 2]])
    assert sample["mask"].dtype == np.uint8 and sample["boxes"].shape == (1, 5)


def test_binarize_mask_handles_0_255_and_0_1():
    assert binarize_mask(np.array([[0, 255, 128, 127]], np.uint8)).tolist() == [[0, 1, 1, 0]]
    assert binarize_mask(np.array([[0, 1]], np.uint8)).tolist() == [[0, 1]]
    # typed class indices (0 none, 1 appear, 2 disappear, 3 exchange) read as binary: any type
    assert binarize_mask(np.array([[0, 1, 2, 3]], np.uint8)).tolist() == [[0, 1, 1, 1]]


def test_natural_key_orders_numbers():
    assert sorted(["x_10", "x_2", "x_1"], key=natural_key) == ["x_1", "x_2", "x_10"]


def test_carve_split_is_deterministic_disjoint_and_complete():
    names = [f"n{i}" for i in range(20)]
    train, val = carve_split(names, 0.25, seed=3)
    assert (train, val) == carve_split(names, 0.25, seed=3)
    assert len(val) == 5 and len(train) == 15
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(names)
    assert carve_split(names, 0.25, seed=4) != (train, val)
    assert train == [n for n in names if n in train]  # input order kept
    # at least one validation name for a tiny set, never all of them
    assert [len(p) for p in carve_split(["a", "b"], 0.1, 0)] == [1, 1]
    assert carve_split(["a"], 0.5, 0) == (["a"], [])
    assert carve_split(names, 0.0, 0) == (names, [])
    with pytest.raises(InputError):
        carve_split(names, 1.0, 0)


def test_pair_subset_by_name_and_index():
    data = ArrayPairs([(8, 8)] * 4)
    subset = PairSubset(data, ["pair2", 0])
    assert subset.names == ["pair2", "pair0"] and len(subset) == 2
    assert subset[0]["name"] == "pair2" and subset.class_names == data.class_names
    with pytest.raises(InputError, match="nope"):
        PairSubset(data, ["nope"])
    with pytest.raises(IndexError):
        subset[2]


def test_crop_sample_pads_images_with_zero_and_mask_with_ignore():
    data = ArrayPairs([(4, 6)])
    sample = data[0]
    sample["boxes"] = np.array([[1, 1, 4, 2, 3]])
    crop = crop_sample(sample, -2, 3, 8, 5)
    assert crop["reference"].shape == (8, 5, 3) and crop["mask"].shape == (8, 5)
    np.testing.assert_array_equal(crop["reference"][2:6, :3], sample["reference"][:, 3:6])
    np.testing.assert_array_equal(crop["mask"][2:6, :3], sample["mask"][:, 3:6])
    assert (crop["mask"][:2] == IGNORE_INDEX).all() and (crop["mask"][:, 3:] == IGNORE_INDEX).all()
    assert (crop["reference"][:2] == 0).all() and (crop["comparison"][6:] == 0).all()
    assert crop["boxes"].tolist() == [[0, 3, 1, 4, 3]]  # shifted and clipped


def test_random_crop_dataset_reads_each_pair_once_and_is_reproducible():
    data = ArrayPairs([(40, 50), (30, 30)])
    crops = RandomCropDataset(data, 16, samples_per_epoch=25, seed=7)
    assert len(crops) == 25
    first = [crops[i] for i in range(25)]
    assert data.reads == [1, 1]
    for crop in first:
        assert crop["reference"].shape == (16, 16, 3) and crop["mask"].shape == (16, 16)
        source = data.samples[data.names.index(crop["name"])]
        y, x = crop["offset"]
        np.testing.assert_array_equal(
            crop["comparison"], source["comparison"][y : y + 16, x : x + 16]
        )
        np.testing.assert_array_equal(crop["mask"], source["mask"][y : y + 16, x : x + 16])
    again = RandomCropDataset(data, 16, samples_per_epoch=25, seed=7)
    assert [c["offset"] for c in first] == [again[i]["offset"] for i in range(25)]
    crops.set_epoch(1)
    assert [c["offset"] for c in first] != [crops[i]["offset"] for i in range(25)]


def test_random_crop_dataset_pads_small_images_with_ignore():
    data = ArrayPairs([(10, 12)])
    crop = RandomCropDataset(data, (16, 20), samples_per_epoch=1)[0]
    assert crop["mask"].shape == (16, 20) and crop["offset"] == (0, 0)
    np.testing.assert_array_equal(crop["mask"][:10, :12], data.samples[0]["mask"])
    assert (crop["mask"][10:] == IGNORE_INDEX).all() and (
        crop["mask"][:, 12:] == IGNORE_INDEX
    ).all()
    assert (crop["reference"][10:] == 0).all()


def test_tile_starts_cover_with_overlap():
    assert tile_starts(100, 40, 0) == [0, 40, 60]
    assert tile_starts(100, 40, 10) == [0, 30, 60]
    assert tile_starts(30, 40, 0) == [0]
    with pytest.raises(InputError):
        tile_starts(100, 40, 40)


def test_tile_dataset_covers_every_pixel_and_reassembles():
    data = ArrayPairs([(50, 70), (20, 20)])
    tiles = TileDataset(data, 32, overlap=8)
    assert len(tiles) == 2 * 3 + 1
    rebuilt = np.zeros((50, 70), np.int32) - 1
    for item in tiles.tiles_of(0):
        tile = tiles[item]
        y, x = tile["offset"]
        assert tile["image_size"] == (50, 70) and tile["index"] == 0
        assert tile["reference"].shape == (32, 32, 3)
        np.testing.assert_array_equal(
            tile["reference"], data.samples[0]["reference"][y : y + 32, x : x + 32]
        )
        rebuilt[y : y + 32, x : x + 32] = tile["mask"]
    np.testing.assert_array_equal(rebuilt, data.samples[0]["mask"])
    small = tiles[tiles.tiles_of(1)[0]]
    assert small["mask"].shape == (32, 32) and (small["mask"][20:] == IGNORE_INDEX).all()
    reads_before = list(data.reads)
    for item in range(len(tiles)):
        tiles[item]
    assert sum(data.reads) - sum(reads_before) <= 2  # in-order reading: each pair at most once
