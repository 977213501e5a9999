"""The windowed path for large image files: same outputs as the in-memory path, chosen automatically
for large pairs, and no full-size float array (tracemalloc)."""

from __future__ import annotations

import json
import tracemalloc

import cv2
import numpy as np
import pytest

from changeseg.errors import InputError, PixelLimitError
from changeseg.inference import pipeline
from changeseg.inference.pipeline import DetectOptions, detect_to_folder, load_pair
from changeseg.inference.tiling import TilingOptions
from changeseg.io.header import ImageHeader, check_pixel_limit
from changeseg.io.images import DEFAULT_MAX_PIXELS, read_image, to_model_channels, write_png
from tests.conftest import touching_discs

TYPED = ["unchanged", "appear", "disappear", "exchange"]


class Difference:
    """A fast stand-in model: change where the images differ; typed by the reference's red channel."""

    name = "difference"
    trained = True

    def __init__(self, class_names=TYPED, on_first_call=None):
        self.class_names = class_names
        self.on_first_call = on_first_call

    def prepare(self, image, name):
        return to_model_channels(read_image(image, name), 3)

    def predict_proba(self, reference, comparison):
        if self.on_first_call is not None:
            self.on_first_call()
            self.on_first_call = None
        reference = reference.astype(np.float32) / (255.0 if reference.dtype == np.uint8 else 1.0)
        comparison = comparison.astype(np.float32) / (255.0 if comparison.dtype == np.uint8 else 1.0)
        change = np.abs(reference - comparison).mean(axis=2)
        if len(self.class_names) == 2:
            return np.stack([1.0 - change, change])
        red = reference[:, :, 0] > 0.5
        return np.stack([1.0 - change, change * red, change * ~red * 0.7, change * ~red * 0.3])


def smooth_pair(rng, height, width):
    """A smooth textured reference and a comparison with flat patches of many sizes pasted in."""
    reference = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    comparison = reference.copy()
    for _ in range(max(8, height * width // 4000)):
        y, x = int(rng.integers(0, height - 30)), int(rng.integers(0, width - 30))
        h, w = (int(v) for v in rng.integers(2, 30, 2))
        comparison[y:y + h, x:x + w] = rng.integers(0, 256, 3)
    return reference, comparison


def outputs(folder):
    images = {p.name: read_image(p) for p in sorted(folder.glob("*.png"))}
    return images, json.loads((folder / "regions.json").read_text())


@pytest.mark.parametrize("class_names", [TYPED, ["unchanged", "changed"]], ids=["typed", "binary"])
def test_windowed_images_match_the_in_memory_path(tmp_path, rng, class_names):
    reference, comparison = smooth_pair(rng, 610, 433)
    paths = write_png(tmp_path / "a.png", reference), write_png(tmp_path / "b.png", comparison)
    results = {}
    for windowed in (True, False):
        options = DetectOptions(tiling=TilingOptions(96, 24, 2), min_area=30, threshold=0.2,
                                save_probability=True, windowed=windowed)
        pair = load_pair(*paths, options)
        assert pair.windowed == windowed and (pair.reference is None) == windowed
        summary = detect_to_folder(Difference(class_names), pair, tmp_path / str(windowed), options)
        results[windowed] = outputs(tmp_path / str(windowed))
        assert summary == results[windowed][1]
    (images, summary), (expected_images, expected) = results[True], results[False]
    assert sorted(p.name for p in (tmp_path / "True").iterdir()) == sorted(
        ["mask.png", "overlay.png", "probability.png", "regions.json"]
        + (["types.png"] if class_names == TYPED else []))  # no spooled image left behind
    assert images.keys() == expected_images.keys()
    for name, image in images.items():
        assert np.array_equal(image, expected_images[name]), name
    assert summary["windowed"] == {"tile_size": 96, "tile_overlap": 24, "tile_batch": 2}
    for key in ("width", "height", "threshold", "changed_fraction", "changed_pixels", "region_count"):
        assert summary[key] == expected[key], key
    assert summary["region_count"] > 5 and summary.get("class_names") == expected.get("class_names")
    for got, want in zip(summary["regions"], expected["regions"]):
        assert {k: got[k] for k in ("id", "box", "area", "centroid", "label")} == \
            {k: want[k] for k in ("id", "box", "area", "centroid", "label")}
        assert got["mean_score"] == pytest.approx(want["mean_score"], abs=2e-4)
        assert got["max_score"] == pytest.approx(want["max_score"], abs=2e-4)
    unfiltered = detect_to_folder(Difference(class_names), load_pair(*paths, DetectOptions(windowed=True)),
                                  tmp_path / "all", DetectOptions(tiling=TilingOptions(96, 24, 2), min_area=0,
                                                                  threshold=0.2, windowed=True))
    assert unfiltered["region_count"] > summary["region_count"]  # min_area dropped regions strip by strip


def test_mixed_bit_depths_and_scaling_match_the_in_memory_path(tmp_path, rng):
    reference, comparison = smooth_pair(rng, 300, 260)
    deep = comparison.astype(np.uint16) * 257 + rng.integers(0, 200, comparison.shape).astype(np.uint16)
    paths = write_png(tmp_path / "a.png", reference), write_png(tmp_path / "b.png", deep)
    for scale in ("auto", "percentile:1,99"):
        found = []
        for windowed in (True, False):
            options = DetectOptions(tiling=TilingOptions(64, 16), threshold=0.15, windowed=windowed,
                                    scale=scale)
            out = tmp_path / f"{scale}{windowed}"
            detect_to_folder(Difference(), load_pair(*paths, options), out, options)
            found.append(outputs(out))
        (images, summary), (expected_images, expected) = found
        assert summary["changed_pixels"] == expected["changed_pixels"] > 0
        for name, image in images.items():
            if name == "overlay.png":  # percentile-scaled images are shown as the model saw them
                assert np.abs(image.astype(int) - expected_images[name]).max() <= 1, scale
            else:
                assert np.array_equal(image, expected_images[name]), (scale, name)


def test_large_image_pairs_take_the_windowed_path(tmp_path, rng, monkeypatch):
    reference, comparison = smooth_pair(rng, 120, 100)
    paths = write_png(tmp_path / "a.png", reference), write_png(tmp_path / "b.jpg", comparison)
    assert not load_pair(*paths).windowed  # small: in memory
    monkeypatch.setattr(pipeline, "WINDOWED_MIN_PIXELS", 10_000)  # now the pair counts as large
    assert load_pair(*paths).windowed
    assert not load_pair(*paths, DetectOptions(resize=True)).windowed  # only in memory
    assert not load_pair(*paths, DetectOptions(windowed=False)).windowed
    with pytest.raises(InputError, match="not available on the windowed path"):
        load_pair(*paths, DetectOptions(resize=True, windowed=True))
    other = write_png(tmp_path / "c.png", reference[:90])
    with pytest.raises(InputError, match="reference is 100×120 but comparison is 100×90"):
        load_pair(paths[0], other)  # refused from the headers, before decoding
    with pytest.raises(PixelLimitError):
        load_pair(*paths, DetectOptions(max_pixels=11_999))
    assert load_pair(*paths, DetectOptions(max_pixels=12_000)).windowed  # the limit itself is allowed
    check_pixel_limit(ImageHeader("PNG", 10_000, 10_000, 1), DEFAULT_MAX_PIXELS)  # 10 000² passes by default


def _traced_peak_per_pixel(folder, reference, comparison, windowed):
    """tracemalloc's peak from the first forward pass on (decoding aside), per pixel of the pair;
    `print`ed so that a run with -s shows the numbers."""
    paths = write_png(folder / "a.png", reference), write_png(folder / "b.png", comparison)
    options = DetectOptions(tiling=TilingOptions(128, 32), save_probability=True, windowed=windowed)
    pair = load_pair(*paths, options)
    tracemalloc.start()
    try:
        detect_to_folder(Difference(on_first_call=tracemalloc.reset_peak), pair, folder / "out", options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_pixel = peak / reference.shape[0] / reference.shape[1]
    print(f"windowed={windowed}: traced peak {per_pixel:.2f} bytes per pixel")
    return per_pixel


def test_the_windowed_path_allocates_no_full_size_float_array(tmp_path, rng):
    """Numpy's allocations, traced from the first tile on, per pixel: the windowed path keeps three
    uint8 maps (change codes, probability.png, the overlay's outlines: 3 bytes) besides bands of
    rows, so a single H×W float32 array (4 bytes) would take it past 5; the in-memory path holds
    the K×H×W float32 class probabilities alone (16 bytes for 4 classes). The image is tall and
    narrow so that bands of rows and tiles are small beside it."""
    reference, comparison = smooth_pair(rng, 16384, 256)
    (tmp_path / "windowed").mkdir()
    (tmp_path / "memory").mkdir()
    windowed = _traced_peak_per_pixel(tmp_path / "windowed", reference, comparison, windowed=True)
    in_memory = _traced_peak_per_pixel(tmp_path / "memory", reference, comparison, windowed=False)
    assert windowed < 5.0, f"{windowed:.2f} bytes per pixel"
    assert in_memory > 16.0, f"{in_memory:.2f} bytes per pixel"  # the bound above means something


def test_the_windowed_path_does_not_split_and_a_splitting_model_still_runs(tmp_path):
    """A model whose config.json asks for split regions (`pcb`): the in-memory path splits two
    touching discs, the windowed path (strip-by-strip regions) keeps them whole."""
    from types import SimpleNamespace

    model = Difference(["unchanged", "changed"])
    model.config = SimpleNamespace(threshold=0.5, metadata={"split_depth": 1, "split_cover": 0.95})
    discs = touching_discs()
    reference = np.zeros((48, 48, 3), np.uint8)
    paths = (write_png(tmp_path / "a.png", reference),
             write_png(tmp_path / "b.png", np.where(discs[:, :, None], 255, reference).astype(np.uint8)))
    counts = {}
    for windowed in (True, False):
        options = DetectOptions(tiling=TilingOptions(32, 8, 1), windowed=windowed)
        summary = detect_to_folder(model, load_pair(*paths, options), tmp_path / str(windowed), options)
        counts[windowed] = summary["region_count"]
    assert counts == {True: 1, False: 2}
