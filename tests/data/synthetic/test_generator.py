"""The synthetic pair generator: reproducibility, sample format, labels, nuisance geometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from changeseg.data.synthetic.generator import SyntheticPairGenerator
from changeseg.labels import APPEAR, CHANGE_TYPES, DISAPPEAR, EXCHANGE
from tests.data.synthetic.helpers import (
    NO_PHOTOMETRY,
    ONLY,
    SIZE,
    assert_same_sample,
    generator,
    make_photo,
    mean_abs_diff,
)

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
        assert {change["type"] for change in pair.changes} == {CHANGE_TYPES[code - 1]}
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
