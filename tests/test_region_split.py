"""Splitting merged regions: touching blobs come apart, single blobs and depth 0 stay as they are."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.region_split import component_stats, split_components


def discs(shape: tuple[int, int], centres: list[tuple[float, float]], radius: float) -> np.ndarray:
    """A bool mask of filled discs (x, y centres) of one radius."""
    ys, xs = np.indices(shape)
    return np.any([(xs - x) ** 2 + (ys - y) ** 2 <= radius ** 2 for x, y in centres], axis=0)


def touching_pair(rng: np.random.Generator, diagonal: bool) -> np.ndarray:
    """Two overlapping discs of a seeded radius, 1.1 radii apart along x and (diagonal) y."""
    radius = float(rng.uniform(8, 13))
    x0, y0 = 20 + rng.uniform(0, 3), 20 + rng.uniform(0, 3)
    step = (1.1 * radius, 1.1 * radius) if diagonal else (1.6 * radius, 0.0)
    return discs((64, 72), [(x0, y0), (x0 + step[0], y0 + step[1])], radius)


@pytest.mark.parametrize("seed", range(5))
def test_two_touching_discs_split_into_two(seed: int) -> None:
    mask = touching_pair(np.random.default_rng(seed), diagonal=True)
    assert cv2.connectedComponents(mask.astype(np.uint8))[0] == 2  # one component
    count, labels = split_components(mask, depth=2)
    assert count == 3  # background + two pieces
    assert np.array_equal(labels > 0, mask)  # every mask pixel in a piece, nothing else
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.min() > 0.35 * mask.sum()  # cut near the neck, not a sliver


@pytest.mark.parametrize("seed", range(5))
def test_one_disc_stays_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = discs((48, 48), [(24 + rng.uniform(-2, 2), 24 + rng.uniform(-2, 2))], rng.uniform(6, 15))
    count, labels = split_components(mask, depth=1, max_cover=math.inf)
    assert count == 2 and np.array_equal(labels > 0, mask)


def test_depth_zero_is_plain_connected_components() -> None:
    rng = np.random.default_rng(0)
    mask = touching_pair(rng, diagonal=True) | (rng.random((64, 72)) > 0.97)
    count, labels = split_components(mask)
    expected_count, expected = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    assert count == expected_count and np.array_equal(labels, expected)


def test_cover_keeps_only_splits_whose_boxes_fit_better() -> None:
    # side by side, the two pieces' boxes tile the whole box (cover ≈ 1): kept only with inf
    mask = touching_pair(np.random.default_rng(1), diagonal=False)
    assert split_components(mask, depth=2, max_cover=math.inf)[0] == 3
    assert split_components(mask, depth=2, max_cover=0.9)[0] == 2
    # offset diagonally, the pieces' boxes cover far less than the whole box: kept at 0.9 too
    assert split_components(touching_pair(np.random.default_rng(1), diagonal=True), 2, 0.9)[0] == 3


def test_a_shallow_component_keeps_its_pixels_and_labels_are_consecutive() -> None:
    mask = touching_pair(np.random.default_rng(2), diagonal=True)
    mask[60, 2:30] = True  # a 1-px line: shallower than the depth, no marker of its own
    mask[0, 70] = True  # a single pixel
    count, labels = split_components(mask, depth=2)
    assert count == 5 and np.array_equal(labels > 0, mask)
    assert sorted(np.unique(labels).tolist()) == list(range(5))
    assert len(np.unique(labels[60, 2:30])) == 1


def test_edge_cases_and_bad_arguments() -> None:
    assert split_components(np.zeros((5, 5), bool), depth=2)[0] == 1
    count, labels = split_components(np.ones((5, 5), bool), depth=1)  # no background at all
    assert count == 2 and (labels == 1).all()
    for depth, cover in ((-1, 1.0), (math.nan, 1.0), (math.inf, 1.0), (1, 0.0), (1, math.nan)):
        with pytest.raises(InputError):
            split_components(np.ones((3, 3), bool), depth, cover)
    with pytest.raises(InputError, match="connectivity"):
        split_components(np.ones((3, 3), bool), 1, connectivity=6)


def test_component_stats_match_opencv() -> None:
    rng = np.random.default_rng(3)
    mask = (rng.random((30, 40)) > 0.8).astype(np.uint8)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    ours, our_centroids = component_stats(labels, count)
    assert np.array_equal(ours[1:], stats[1:])
    assert np.allclose(our_centroids[1:], centroids[1:])


def test_each_component_splits_as_it_would_alone() -> None:
    # pairs of touching discs scattered with noise specks: the split of the whole mask is the
    # union of each component's split on its own (components do not influence one another)
    rng = np.random.default_rng(7)
    mask = np.zeros((160, 200), bool)
    for x, y in ((40, 40), (130, 40), (60, 120), (150, 115)):
        mask[y - 30:y + 30, x - 30:x + 36] |= touching_pair(rng, diagonal=bool(rng.integers(2)))[:60, :66]
    mask |= rng.random(mask.shape) > 0.995
    count, labels = split_components(mask, depth=1, max_cover=0.95)
    assert np.array_equal(labels > 0, mask)
    plain_count, plain = cv2.connectedComponents(mask.astype(np.uint8))
    assert count > plain_count  # some pairs were cut
    for component in range(1, plain_count):
        alone = np.where(plain == component, 1, 0).astype(bool)
        alone_count, alone_labels = split_components(alone, depth=1, max_cover=0.95)
        ours = labels[alone]
        assert len(np.unique(ours)) == alone_count - 1
        # the same partition of the component's pixels
        pairs = {(int(a), int(b)) for a, b in zip(ours, alone_labels[alone], strict=True)}
        assert len(pairs) == alone_count - 1


def test_a_component_no_deeper_than_the_depth_is_never_split() -> None:
    # two 3-px-thick bars crossing at an offset: two blobs of inscribed radius ~2 joined by a neck
    mask = np.zeros((40, 40), bool)
    mask[5:9, 5:25] = True
    mask[8:30, 20:24] = True
    assert split_components(mask, depth=4, max_cover=math.inf)[0] == 2
    # a pair that splits at depth 1 stays whole once the depth reaches its deepest radius
    pair = touching_pair(np.random.default_rng(3), diagonal=True)
    deepest = float(cv2.distanceTransform(pair.astype(np.uint8), cv2.DIST_L2, 5).max())
    assert split_components(pair, depth=1)[0] == 3
    assert split_components(pair, depth=deepest)[0] == 2
