"""Joint transforms: the same geometry for both images, the mask and the boxes; tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from changeseg.data.pairs import PairSample, make_sample
from changeseg.data.transforms import (
    ColorJitter,
    Compose,
    HorizontalFlip,
    RandomCrop,
    RandomRotate90,
    RandomRotation,
    RandomScale,
    ScaledPairs,
    ToneCurve,
    TransformedDataset,
    VerticalFlip,
    affine,
    hflip,
    resize,
    rot90,
    rotate,
    to_tensors,
    tone_curve_image,
    vflip,
)
from changeseg.errors import InputError
from changeseg.labels import IGNORE_INDEX

H, W = 20, 30
MARK = (5, 7)  # y, x of the marker pixel


def marked(channels: int = 3, dtype=np.uint8, rng=None) -> PairSample:
    """Dark seeded noise with one bright marker pixel at MARK in both images and the mask."""
    rng = rng or np.random.default_rng(0)
    top = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(np.dtype(dtype), 1.0)
    ref = (rng.random((H, W, channels)) * 0.2 * top).astype(dtype)
    cmp = (rng.random((H, W, channels)) * 0.2 * top).astype(dtype)
    ref[MARK] = top
    cmp[MARK] = top
    mask = np.zeros((H, W), np.uint8)
    mask[MARK] = 1
    box = [[MARK[1] - 1, MARK[0] - 2, MARK[1] + 3, MARK[0] + 1, 4]]  # x1 y1 x2 y2 type
    return make_sample(ref, cmp, mask, "m", boxes=box)


def marker_positions(sample: PairSample) -> list[tuple[int, int]]:
    """Where the marker is in the reference, the comparison and the mask."""
    out = []
    for key in ("reference", "comparison"):
        plane = sample[key][:, :, 0].astype(np.float64)
        out.append(tuple(int(v) for v in np.unravel_index(plane.argmax(), plane.shape)))
    mask = np.where(sample["mask"] == 1, 1, 0)
    out.append(tuple(int(v) for v in np.unravel_index(mask.argmax(), mask.shape)))
    return out


def box_contains(sample: PairSample, y: int, x: int) -> bool:
    x1, y1, x2, y2, kind = sample["boxes"][0]
    return x1 <= x <= x2 and y1 <= y <= y2 and kind == 4


@pytest.mark.parametrize(
    ("op", "expected", "shape"),
    [
        (hflip, (MARK[0], W - 1 - MARK[1]), (H, W)),
        (vflip, (H - 1 - MARK[0], MARK[1]), (H, W)),
        (lambda s: rot90(s, 1), (W - 1 - MARK[1], MARK[0]), (W, H)),
        (lambda s: rot90(s, 2), (H - 1 - MARK[0], W - 1 - MARK[1]), (H, W)),
        (lambda s: rot90(s, 3), (MARK[1], H - 1 - MARK[0]), (W, H)),
    ],
)
def test_exact_geometry_moves_everything_together(op, expected, shape):
    sample = marked()
    out = op(sample)
    assert out["mask"].shape == shape and out["reference"].shape == (*shape, 3)
    assert marker_positions(out) == [expected] * 3
    assert out["mask"].sum() == 1
    assert box_contains(out, *expected)
    # the box still covers the same number of pixels (exact maps keep box sizes)
    x1, y1, x2, y2, _ = out["boxes"][0]
    assert (x2 - x1 + 1) * (y2 - y1 + 1) == 5 * 4
    np.testing.assert_array_equal(sample["mask"], marked()["mask"])  # input untouched


def test_rot90_matches_numpy():
    sample = marked()
    out = rot90(sample, 1)
    np.testing.assert_array_equal(out["reference"], np.rot90(sample["reference"]))
    np.testing.assert_array_equal(out["mask"], np.rot90(sample["mask"]))


def test_small_rotation_moves_marker_identically_and_pads_with_ignore():
    sample = marked()
    sample["mask"][:, :] = 0
    sample["mask"][3:8, 5:10] = 1  # a block, so the nearest-neighbour mask keeps it
    out = rotate(sample, 10.0)
    ref_pos, cmp_pos, _ = marker_positions(out)
    assert ref_pos == cmp_pos
    cy, cx = (H - 1) / 2, (W - 1) / 2
    angle = np.deg2rad(10.0)  # counter-clockwise on screen (y down)
    dy, dx = MARK[0] - cy, MARK[1] - cx
    want = (
        cy - np.sin(angle) * dx + np.cos(angle) * dy,
        cx + np.cos(angle) * dx + np.sin(angle) * dy,
    )
    assert abs(ref_pos[0] - want[0]) <= 1 and abs(ref_pos[1] - want[1]) <= 1
    assert out["mask"][ref_pos] == 1 and box_contains(out, *ref_pos)
    # corners come from outside the image: ignore in the mask, 0 in the images
    assert out["mask"][0, 0] == IGNORE_INDEX and out["mask"][H - 1, W - 1] == IGNORE_INDEX
    assert (out["reference"][0, 0] == 0).all()
    assert set(np.unique(out["mask"])) == {0, 1, IGNORE_INDEX}


def test_resize_keeps_mask_labels_and_marker():
    sample = marked()
    sample["mask"][MARK[0] - 1 : MARK[0] + 2, MARK[1] - 1 : MARK[1] + 2] = 1
    out = resize(sample, W * 2, H * 2)
    assert out["mask"].shape == (2 * H, 2 * W)
    assert set(np.unique(out["mask"])) == {0, 1}
    assert out["mask"].sum() == 9 * 4
    y, x = marker_positions(out)[0]
    assert abs(y - (2 * MARK[0] + 0.5)) <= 1 and abs(x - (2 * MARK[1] + 0.5)) <= 1
    assert out["mask"][y, x] == 1 and box_contains(out, y, x)


@pytest.mark.parametrize(("dtype", "channels"), [(np.uint8, 1), (np.uint16, 13), (np.float32, 5)])
def test_every_transform_keeps_dtype_and_channels(dtype, channels):
    pipeline = Compose(
        [
            RandomScale(0.8, 1.2, p=1.0),
            RandomRotation(15, p=1.0),
            RandomRotate90(p=1.0),
            HorizontalFlip(p=1.0),
            VerticalFlip(p=1.0),
            RandomCrop(16),
            ColorJitter(0.3, 0.3, 0.3, 0.05, p=1.0),
        ]
    )
    out = pipeline(marked(channels, dtype), np.random.default_rng(5))
    for key in ("reference", "comparison"):
        assert out[key].dtype == dtype and out[key].shape == (16, 16, channels)
    assert out["mask"].dtype == np.uint8 and out["mask"].shape == (16, 16)


def test_geometry_of_random_pipeline_is_joint_and_reproducible():
    pipeline = Compose([RandomRotate90(p=1.0), HorizontalFlip(), VerticalFlip(), RandomCrop(18)])
    results = []
    for seed in range(8):
        sample = marked()
        sample["comparison"] = sample["reference"].copy()
        out = pipeline(sample, np.random.default_rng(seed))
        # identical inputs stay identical, and the mask follows the image marker
        np.testing.assert_array_equal(out["reference"], out["comparison"])
        if out["mask"].max() == 1 and (out["mask"] == 1).sum() == 1:
            pos = marker_positions(out)
            assert pos[0] == pos[2]
        results.append(out)
    again = pipeline(marked(), np.random.default_rng(3))
    np.testing.assert_array_equal(again["mask"], results[3]["mask"])
    assert len({r["mask"].tobytes() for r in results}) > 1


def test_random_crop_pads_with_ignore():
    out = RandomCrop((24, 40))(marked(), np.random.default_rng(1))
    assert out["mask"].shape == (24, 40)
    assert (out["mask"] == IGNORE_INDEX).sum() == 24 * 40 - H * W
    assert out["mask"].sum() - IGNORE_INDEX * (24 * 40 - H * W) == 1
    pos = marker_positions(out)
    assert pos[0] == pos[1] == pos[2]
    assert box_contains(out, *pos[0])


def test_affine_translation_moves_boxes():
    out = affine(marked(), np.array([[1.0, 0, 3], [0, 1, -2]]), W, H)
    assert marker_positions(out) == [(MARK[0] - 2, MARK[1] + 3)] * 3
    assert out["boxes"].tolist() == [[MARK[1] + 2, MARK[0] - 4, MARK[1] + 6, MARK[0] - 1, 4]]


def test_color_jitter_targets_and_leaves_geometry_alone():
    sample = marked()
    rng = np.random.default_rng(2)
    only_ref = ColorJitter(0.5, 0.5, 0.5, 0.1, apply_to="reference")(sample, rng)
    assert not np.array_equal(only_ref["reference"], sample["reference"])
    np.testing.assert_array_equal(only_ref["comparison"], sample["comparison"])
    np.testing.assert_array_equal(only_ref["mask"], sample["mask"])
    one = ColorJitter(0.5, 0.5, 0.5, 0.1, apply_to="one")(sample, rng)
    changed = [not np.array_equal(one[k], sample[k]) for k in ("reference", "comparison")]
    assert sum(changed) == 1
    same = dict(sample)
    same["comparison"] = sample["reference"].copy()
    shared = ColorJitter(0.5, 0.5, 0.5, 0.1, independent=False)(same, rng)
    np.testing.assert_array_equal(shared["reference"], shared["comparison"])
    grey = marked(rng=np.random.default_rng(9))
    grey["reference"] = np.repeat(grey["reference"][:, :, :1], 3, axis=2)
    turned = ColorJitter(0, 0, 0, 0.5, apply_to="reference")(grey, rng)["reference"]
    assert np.abs(turned.astype(int) - grey["reference"].astype(int)).max() <= 1  # grey has no hue
    with pytest.raises(InputError):
        ColorJitter(apply_to="neither")


def test_tone_curve_changes_one_image_per_channel_and_nothing_else():
    sample = marked()
    rng = np.random.default_rng(4)
    out = ToneCurve(0.4, p=1.0)(sample, rng)
    changed = [not np.array_equal(out[k], sample[k]) for k in ("reference", "comparison")]
    assert sum(changed) == 1  # one image of the pair, as a real second season
    np.testing.assert_array_equal(out["mask"], sample["mask"])
    key = "reference" if changed[0] else "comparison"
    assert out[key].dtype == sample[key].dtype and out[key].shape == sample[key].shape
    # the curve is monotone per channel: the order of a channel's values is kept
    before, after = sample[key][..., 0].ravel().astype(int), out[key][..., 0].ravel().astype(int)
    order = np.argsort(before, kind="stable")
    assert np.all(np.diff(after[order]) >= 0)
    assert ToneCurve(0.4, p=0.0)(sample, rng) is sample
    with pytest.raises(InputError, match="strength"):
        ToneCurve(1.5)


def test_tone_curve_image_is_a_gain_and_a_gamma_per_channel():
    ramp = np.linspace(0, 255, 256, dtype=np.float32)
    image = np.stack([ramp, ramp, ramp], axis=1)[None].round().astype(np.uint8)  # 1×256×3
    gain = np.array([1.0, 0.5, 1.2], np.float32)
    gamma = np.array([1.0, 1.0, 2.0], np.float32)
    out = tone_curve_image(image, gain, gamma).astype(int)[0]
    np.testing.assert_array_equal(out[:, 0], image[0, :, 0])  # identity
    assert abs(out[255, 1] - 128) <= 1 and abs(out[128, 1] - 64) <= 1  # half the gain
    assert abs(out[128, 2] - round(1.2 * 255 * (128 / 255) ** 2)) <= 1  # gamma 2 darkens mid-tones
    assert out[255, 2] == 255  # clipped to the dtype's range
    floats = tone_curve_image(image.astype(np.float32) / 255, gain, gamma)
    assert floats.dtype == np.float32 and abs(floats[0, 255, 1] - 0.5) < 1e-5  # own maximum as top


def test_to_tensors_scales_by_dtype_and_normalises():
    sample = marked()
    sample["mask"][0, 0] = IGNORE_INDEX
    t = to_tensors(sample, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert t["reference"].dtype == torch.float32 and t["reference"].shape == (3, H, W)
    assert t["mask"].dtype == torch.int64 and t["mask"][0, 0] == IGNORE_INDEX
    assert torch.isclose(t["reference"][0, MARK[0], MARK[1]], torch.tensor(2.0))  # (1 - .5) / .25
    assert t["name"] == "m" and t["boxes"].dtype == torch.int64
    wide = to_tensors(marked(13, np.uint16), mean=0.0, std=1.0)
    assert wide["comparison"].shape == (13, H, W) and wide["comparison"].max() == 1.0
    with pytest.raises(InputError, match="2 values but the image has 3"):
        to_tensors(marked(), mean=(0.1, 0.2), std=1.0)


def test_transformed_dataset_is_reproducible():
    samples = [marked(rng=np.random.default_rng(i)) for i in range(3)]
    pipeline = Compose([RandomRotate90(p=1.0), ColorJitter()])
    a = TransformedDataset(samples, pipeline, seed=1, mean=0.5, std=0.5)
    b = TransformedDataset(samples, pipeline, seed=1, mean=0.5, std=0.5)
    assert torch.equal(a[2]["reference"], b[2]["reference"])
    a.set_epoch(1)
    assert not torch.equal(a[2]["reference"], b[2]["reference"])


def test_scaled_pairs_enlarge_every_pair_and_keep_ignore_labels() -> None:
    sample = marked()
    sample["mask"][0:4, :] = IGNORE_INDEX  # e.g. SBI2015's 170 (shadow / unsure), read as ignore
    scaled = ScaledPairs([sample], 2)
    assert len(scaled) == 1
    big = scaled[0]
    assert big["reference"].shape == (2 * H, 2 * W, 3) and big["mask"].shape == (2 * H, 2 * W)
    assert set(np.unique(big["mask"])) == {0, 1, IGNORE_INDEX}  # nearest: no blended label values
    assert (big["mask"] == IGNORE_INDEX).sum() == 4 * (sample["mask"] == IGNORE_INDEX).sum()
    assert (big["mask"] == 1).sum() == 4  # the one marked pixel, four times over
    assert big["name"] == "m"
    assert np.abs(big["boxes"][0, :4] - 2 * sample["boxes"][0, :4]).max() <= 1  # boxes follow
    assert ScaledPairs([sample], 0.5)[0]["mask"].shape == (H // 2, W // 2)
    with pytest.raises(InputError, match="factor"):
        ScaledPairs([sample], 0)
