"""Regions are the connected components of the mask, with correct geometry and scores."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.inference.regions import find_regions


def test_components_boxes_areas_centroids_and_scores():
    mask = np.zeros((10, 12), bool)
    mask[1:4, 2:6] = True  # 3×4 = 12 px, centroid (3.5, 2)
    mask[7, 9] = True  # 1 px
    probability = np.zeros((10, 12), np.float32)
    probability[1:4, 2:6] = 0.6
    probability[2, 3] = 0.9
    probability[7, 9] = 0.7
    regions, kept = find_regions(mask, probability)
    assert [r.area for r in regions] == [12, 1]
    big = regions[0]
    assert big.id == 1 and big.box == (2, 1, 6, 4)
    assert big.centroid == pytest.approx((3.5, 2.0))
    assert big.max_score == pytest.approx(0.9)
    assert big.mean_score == pytest.approx((11 * 0.6 + 0.9) / 12)
    assert np.array_equal(kept, mask)


def test_min_area_drops_regions_from_list_and_mask():
    mask = np.zeros((10, 12), bool)
    mask[1:4, 2:6] = True
    mask[7, 9] = True
    regions, kept = find_regions(mask, mask.astype(np.float32), min_area=2)
    assert len(regions) == 1 and not kept[7, 9] and kept[2, 3]


def test_typed_regions_take_their_majority_class():
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:3] = True
    labels = np.zeros((6, 6), np.uint8)
    labels[0:2, 0:3] = 2
    labels[0, 0] = 1
    regions, _ = find_regions(mask, mask.astype(np.float32), labels=labels,
                              class_names=["unchanged", "appear", "disappear", "exchange"])
    assert regions[0].label == "disappear"
    assert regions[0].to_dict()["box"] == [0, 0, 3, 2]


def test_many_regions_match_their_own_pixels(rng):
    import cv2

    size = (180, 230)
    probability = rng.random(size).astype(np.float32)
    mask = cv2.GaussianBlur(rng.random(size).astype(np.float32), (0, 0), 2) > 0.52  # hundreds of blobs
    labels = rng.integers(0, 4, size).astype(np.uint8)
    names = ["unchanged", "appear", "disappear", "exchange"]
    regions, kept = find_regions(mask, probability, min_area=3, labels=labels, class_names=names)
    count, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    expected = {}
    for index in range(1, count):
        inside = components == index
        if inside.sum() >= 3:
            ys, xs = np.nonzero(inside)
            votes = np.bincount(labels[inside], minlength=4)
            expected[(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)] = (
                int(inside.sum()), float(probability[inside].mean()), float(probability[inside].max()),
                names[int(votes.argmax())])
    assert len(regions) == len(expected) > 100
    for region in regions:
        area, mean, peak, label = expected[region.box]
        assert (region.area, region.label) == (area, label)
        assert region.mean_score == pytest.approx(mean, abs=1e-6) and region.max_score == peak
    assert [r.area for r in regions] == sorted((r.area for r in regions), reverse=True)
    assert kept.sum() == sum(r.area for r in regions) and not kept[~mask].any()


def test_region_dicts_name_every_field_in_order():
    from dataclasses import asdict

    region = find_regions(np.eye(4, dtype=bool), np.full((4, 4), 0.73125, np.float32))[0][0]
    data = region.to_dict()
    assert list(data) == list(asdict(region))  # every field, in the dataclass's order
    assert data["box"] == [0, 0, 4, 4] and data["mean_score"] == 0.7312 and data["label"] == "changed"


def test_split_depth_splits_a_merged_region_and_default_does_not():
    mask = np.zeros((40, 40), bool)
    mask[2:22, 2:22] = True  # two 20×20 squares overlapping by 8×8, offset diagonally
    mask[14:34, 14:34] = True
    probability = mask.astype(np.float32)
    probability[14:34, 14:34] = 0.5
    regions, kept = find_regions(mask, probability)
    assert [r.box for r in regions] == [(2, 2, 34, 34)]
    regions, kept = find_regions(mask, probability, split_depth=2)
    assert sorted(r.box for r in regions) == [(2, 2, 22, 22), (14, 14, 34, 34)]
    assert sum(r.area for r in regions) == mask.sum() and np.array_equal(kept, mask)
    assert sorted(r.max_score for r in regions) == pytest.approx([0.5, 1.0])
    # min_area applies to the pieces (372 and 364 px)
    regions, kept = find_regions(mask, probability, min_area=370, split_depth=2)
    assert [(r.box, r.area) for r in regions] == [((2, 2, 22, 22), 372)] and kept.sum() == 372


def test_box_grow_scales_each_box_about_its_centre_and_clips():
    mask = np.zeros((30, 40), bool)
    mask[10:16, 20:24] = True  # a 4×6 core: box (20, 10, 24, 16), exclusive ends
    mask[0:3, 0:3] = True  # a 3×3 core at the corner
    probability = mask.astype(np.float32)
    plain, kept = find_regions(mask, probability)
    grown, grown_kept = find_regions(mask, probability, box_grow=2.0)
    assert [r.box for r in plain] == [(20, 10, 24, 16), (0, 0, 3, 3)]
    # 8×12 about the centre (22, 13); the corner box is clipped at 0 and rounded outwards
    assert [r.box for r in grown] == [(18, 7, 26, 19), (0, 0, 5, 5)]
    # only the boxes change: areas, centroids, scores and the mask are the cores'
    assert [(r.area, r.centroid, r.mean_score) for r in grown] == [
        (r.area, r.centroid, r.mean_score) for r in plain]
    assert np.array_equal(kept, grown_kept)
    edge = np.zeros((10, 10), bool)
    edge[6:10, 6:10] = True
    assert find_regions(edge, edge.astype(np.float32), box_grow=3.0)[0][0].box == (2, 2, 10, 10)
